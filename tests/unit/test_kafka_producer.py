"""The producer wrapper: pending limits, fire-and-forget failures, transactions and their deadlines."""

import dataclasses
import threading
import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from producer_api import kafka_producer
from producer_api.errors import DeliveryTimeout, KafkaUnavailable, TooManyPending
from producer_api.kafka_producer import MessageProducer, _TransactionBudget
from producer_api.kafka_producer.client import _end_transaction
from producer_api.messages import OutgoingMessage
from tests.unit.test_kafka_records import FakeProducer, FakeSender


@pytest.fixture
def unconnected_producer(make_settings):
    """A real MessageProducer whose broker address answers nothing; tests reach its paths without Kafka."""
    producer = MessageProducer(make_settings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=100,
                                             delivery_timeout_ms=200, max_pending_messages=10,
                                             max_batch_messages=10))
    producer._check_destinations = lambda messages, kafka_producer: {"t": {0}}  # no metadata to ask for
    yield producer
    producer.close(0)


def one_message(n: int = 0) -> OutgoingMessage:
    return OutgoingMessage("t", None, b"%d" % n, 0, 1_700_000_000_000, "")


@pytest.mark.parametrize("expired", [True, False])
def test_a_failed_fire_and_forget_message_is_counted_logged_and_a_stuck_producer_replaced(
        unconnected_producer, caplog, expired):
    sent_to = unconnected_producer._producer
    outcome = Future()
    unconnected_producer._reserve(1)
    unconnected_producer._queued(sent_to, one_message(), outcome)
    error = KafkaTimeoutError("Expiring 1 record(s) for t-0") if expired else MessageSizeTooLargeError("too big")
    outcome.failure(error)  # as kafka-python's I/O thread completes it
    assert unconnected_producer.queued_failures == 1 and unconnected_producer.pending == 0
    [line] = [record for record in caplog.records if record.name == "producer_api.kafka_producer"]
    assert line.getMessage() == f"queued message for topic t was not delivered: {error}"
    unconnected_producer._replace_if_stuck()  # what the next request does first
    # A batch that expired leaves kafka-python's idempotent producer without a producer id for good.
    assert (unconnected_producer._producer is not sent_to) is expired
    assert unconnected_producer._unreachable is expired


@pytest.mark.parametrize("wait", [True, False])
def test_an_unexpected_error_while_appending_is_raised_and_releases_what_it_reserved(
        unconnected_producer, monkeypatch, wait):
    def broken(*_args):
        raise RuntimeError("a bug, not a Kafka error")

    monkeypatch.setattr(kafka_producer, "_append_all_waited", broken)
    monkeypatch.setattr(kafka_producer, "_append", broken)
    with pytest.raises(RuntimeError):
        unconnected_producer.send_all([one_message(n) for n in range(4)], wait=wait)
    assert unconnected_producer.pending == 0


def test_an_atomic_batch_counts_against_the_pending_limit(unconnected_producer, monkeypatch):
    unconnected_producer._reserve(8)
    with pytest.raises(TooManyPending):
        unconnected_producer.send_atomic([one_message(n) for n in range(3)])
    unconnected_producer._release_count(8)
    ran = []
    monkeypatch.setattr(unconnected_producer, "_run_transaction",
                        lambda messages, budget: ran.append(len(messages)) or [])
    unconnected_producer.send_atomic([one_message(n) for n in range(3)])
    assert ran == [3] and unconnected_producer.pending == 0


class CoordinatorThatNeverAnswers:
    def __init__(self):
        from kafka.producer.transaction_manager import TransactionalRequestResult

        self.result = TransactionalRequestResult()

    def begin_commit(self):
        return self.result

    begin_abort = begin_commit


@pytest.mark.parametrize("commit", [True, False])
def test_ending_a_transaction_waits_no_longer_than_its_timeout(commit):
    producer = SimpleNamespace(_transaction_manager=CoordinatorThatNeverAnswers(), _sender=FakeSender())
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        _end_transaction(producer, commit=commit, timeout_s=0.1)
    assert 0.09 <= time.monotonic() - started < 2
    assert producer._sender.wakeups == 1


def budget_ending_in(start_s: float, whole_s: float) -> _TransactionBudget:
    now = time.monotonic()
    return _TransactionBudget(now + start_s, now + whole_s)


def test_a_commit_waits_only_for_what_is_left_of_the_atomic_batchs_time(unconnected_producer):
    # KAFKA_REQUEST_TIMEOUT_MS alone would let a commit after a slow delivery run past the request's deadline.
    unconnected_producer._settings = dataclasses.replace(unconnected_producer._settings, request_timeout_ms=5000)
    producer = SimpleNamespace(_transaction_manager=CoordinatorThatNeverAnswers(), _sender=FakeSender())
    started = time.monotonic()
    with pytest.raises(DeliveryTimeout, match="after (2\\d\\d|300) ms waiting for Kafka to commit"):
        unconnected_producer._commit(producer, budget_ending_in(0, 0.3))
    assert 0.2 <= time.monotonic() - started < 1.5


def test_no_commit_is_asked_for_once_the_atomic_batchs_time_is_spent(unconnected_producer):
    producer = SimpleNamespace(_transaction_manager=CoordinatorThatNeverAnswers(), _sender=FakeSender())
    # A timeout before anything was asked of the coordinator: certainly not committed ("nothing was written").
    with pytest.raises(KafkaTimeoutError, match="no time left"):
        unconnected_producer._commit(producer, budget_ending_in(0, -0.1))
    assert producer._sender.wakeups == 0


def test_a_failed_transaction_is_aborted_without_holding_the_request(unconnected_producer, monkeypatch):
    closed = threading.Event()
    monkeypatch.setattr(kafka_producer, "_close_quietly", lambda producer, timeout: closed.set())
    unconnected_producer._settings = dataclasses.replace(unconnected_producer._settings, request_timeout_ms=300)
    coordinator = CoordinatorThatNeverAnswers()
    producer = SimpleNamespace(_transaction_manager=coordinator, _sender=FakeSender())
    unconnected_producer._transactional = producer
    started = time.monotonic()
    unconnected_producer._discard_transactional(producer)
    assert time.monotonic() - started < 0.1 and unconnected_producer._transactional is None
    assert closed.wait(5)  # after the abort had its request timeout, in the background
    assert producer._sender.wakeups == 1  # the abort was asked for


def test_a_transaction_starts_within_what_is_left_of_the_atomic_batchs_time(make_settings):
    # A real transactional KafkaProducer whose coordinator never answers: init_transactions() would wait the whole
    # KAFKA_MAX_BLOCK_MS (5 s) on its own.
    producer = MessageProducer(make_settings(bootstrap_servers="127.0.0.1:1", max_block_ms=5000))
    try:
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="did not answer within (3\\d\\d|400) ms"):
            producer._transactional_producer(budget_ending_in(0.4, 10))
        assert 0.3 <= time.monotonic() - started < 2
        assert producer._transactional is None
    finally:
        producer.close(0)


def test_an_atomic_batch_waits_for_the_previous_transaction_within_its_time(unconnected_producer, monkeypatch):
    unconnected_producer._settings = dataclasses.replace(unconnected_producer._settings, max_block_ms=300)
    monkeypatch.setattr(unconnected_producer, "_run_transaction", lambda messages, budget: [])
    unconnected_producer._transaction_lock.acquire()  # another request's transaction, still running
    try:
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="another transaction"):
            unconnected_producer.send_atomic([one_message()])
        assert 0.25 <= time.monotonic() - started < 1.5
    finally:
        unconnected_producer._transaction_lock.release()
    assert unconnected_producer.pending == 0


def test_blocking_at_most_bounds_kafka_pythons_waits_only_within_the_block():
    producer = SimpleNamespace(config={"max_block_ms": 5000})
    with kafka_producer._blocking_at_most(producer, 0.25):
        assert producer.config["max_block_ms"] == 250
    assert producer.config["max_block_ms"] == 5000
    with kafka_producer._blocking_at_most(producer, 60):  # never longer than configured
        assert producer.config["max_block_ms"] == 5000
    with pytest.raises(RuntimeError), kafka_producer._blocking_at_most(producer, 0):
        assert producer.config["max_block_ms"] == 1
        raise RuntimeError
    assert producer.config["max_block_ms"] == 5000


@pytest.mark.parametrize(("sent", "expired"), [(False, True), (True, True), (False, False)])
def test_only_a_record_expired_unsent_is_certainly_not_written(unconnected_producer, sent, expired):
    from producer_api.errors import DeliveryTimeout, KafkaNotReached

    producer = FakeProducer()
    [slot] = producer.append(1)
    [batch] = producer.batches()
    if sent:
        batch.drained = time.monotonic()  # what kafka-python's sender sets when a produce request takes the batch
    if expired:  # kafka-python's expiry, which also takes the batch out of its queue
        expiry = KafkaTimeoutError("Expiring 1 record(s)")
        batch.complete_exceptionally(expiry, lambda index: expiry)  # as the sender completes an expired batch
    delivery = unconnected_producer._await(one_message(), slot, deadline=time.monotonic() + 0.05)
    if expired and not sent:
        assert isinstance(delivery.error, KafkaNotReached) and delivery.error.status == 503
        assert "nothing was written" in delivery.error.detail
    else:  # sent, a broker may have written it; still queued, it may yet be sent
        assert isinstance(delivery.error, DeliveryTimeout) and "may or may not" in delivery.error.detail
