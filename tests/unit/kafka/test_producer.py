"""The producer wrapper: pending limits, fire-and-forget failures, transactions and their deadlines."""

import dataclasses
import threading
import time
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future
from kafka.producer.future import FutureProduceResult, FutureRecordMetadata
from kafka.record.default_records import DefaultRecordBatchBuilder

from producer_api.core.errors import DeliveryTimeout, KafkaUnavailable, TooManyPending
from producer_api.core.messages import OutgoingMessage
from producer_api.kafka import producer as kafka_producer
from producer_api.kafka.producer import _MOST_RECORD_OVERHEAD, MessageProducer, _SentRecord, _TransactionBudget
from producer_api.kafka.tuning import batch_append
from tests.unit.kafka.test_internals import CoordinatorThatNeverAnswers
from tests.unit.kafka.tuning.test_batch_append import FakeProducer, FakeSender


def new_unconnected_producer(make_settings, **overrides) -> MessageProducer:
    """A real MessageProducer whose broker address answers nothing; tests reach its paths without Kafka."""
    producer = MessageProducer(make_settings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=100,
                                             delivery_timeout_ms=200, max_pending_messages=10,
                                             max_batch_messages=10, **overrides))
    producer._check_destinations = lambda messages, kafka_producer: {"t": {0}}  # no metadata to ask for
    return producer


@pytest.fixture
def unconnected_producer(make_settings):
    """A real MessageProducer whose broker address answers nothing; tests reach its paths without Kafka."""
    producer = new_unconnected_producer(make_settings)
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
    [line] = [record for record in caplog.records if record.name == "producer_api.kafka.producer"]
    assert line.getMessage() == f"queued message for topic t was not delivered: {error}"
    unconnected_producer._replace_if_stuck()  # what the next request does first
    # A batch that expired leaves kafka-python's idempotent producer without a producer id for good.
    assert (unconnected_producer._producer is not sent_to) is expired
    assert unconnected_producer._unreachable is expired


@pytest.mark.parametrize("appends_batches", [True, False])  # batch_append, or kafka-python's own send()
@pytest.mark.parametrize("wait", [True, False])
def test_an_unexpected_error_while_appending_is_raised_and_releases_what_it_reserved(
        make_settings, monkeypatch, wait, appends_batches):
    def broken(*_args):
        raise RuntimeError("a bug, not a Kafka error")

    monkeypatch.setattr(batch_append, "append_waited", broken)
    monkeypatch.setattr(batch_append, "append_queued", broken)
    monkeypatch.setattr(kafka_producer, "_send", broken)
    producer = new_unconnected_producer(make_settings, tuning=True,
                                        tuning_skip=() if appends_batches else ("batch_append",))
    try:
        assert producer._appends_batches is appends_batches
        with pytest.raises(RuntimeError):
            producer.send_all([one_message(n) for n in range(4)], wait=wait)
        assert producer.pending == 0
    finally:
        producer.close(0)


def test_batches_are_appended_to_only_while_the_tuning_is_on(make_settings):
    for overrides, appends in (({"tuning": True}, True), ({"tuning": False}, False),
                               ({"tuning": True, "tuning_skip": ("batch_append",)}, False)):
        producer = new_unconnected_producer(make_settings, **overrides)
        try:
            assert producer._appends_batches is appends, overrides
        finally:
            producer.close(0)


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
    monkeypatch.setattr(kafka_producer, "close_quietly", lambda producer, timeout: closed.set())
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


@pytest.mark.parametrize(("sent", "expired"), [(False, True), (True, True), (False, False)])
def test_only_a_record_expired_unsent_is_certainly_not_written(unconnected_producer, sent, expired):
    from producer_api.core.errors import KafkaNotReached

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


def sent_records(partition: int, count: int) -> tuple[FutureProduceResult, list]:
    """Records sent with kafka-python's own send() (batch_append off): one batch's future, a record future each."""
    batch_future = FutureProduceResult(TopicPartition("t", partition))
    return batch_future, [_SentRecord(FutureRecordMetadata(batch_future, index, 1_700_000_000_000, None, 0, 1, 0))
                          for index in range(count)]


def test_a_record_sent_with_kafka_pythons_send_reads_as_a_batch_appended_one():
    batch_future, records = sent_records(3, 2)
    assert not any(record.is_done for record in records) and not any(record.never_sent for record in records)
    started = time.monotonic()
    assert records[0].wait(started + 0.05) is False and 0.04 <= time.monotonic() - started < 1
    settled = []
    records[1].settle_later(settled.append)
    batch_future.success((100, -1, None))  # as kafka-python's I/O thread completes the batch
    assert all(record.wait(time.monotonic() + 5) and record.is_done for record in records)
    assert [record.result() for record in records] == [(3, 100), (3, 101)]
    assert len(settled) == 1


def test_each_record_sent_with_kafka_pythons_send_gets_its_own_error():
    batch_future, records = sent_records(0, 2)
    batch_future.success((-1, -1, lambda index: MessageSizeTooLargeError(f"record {index}")))
    assert [str(record.result()) for record in records] == [str(MessageSizeTooLargeError(f"record {n}"))
                                                           for n in (0, 1)]
    failed_future, [failed] = sent_records(0, 1)
    failed_future.failure(KafkaTimeoutError("Expiring 1 record(s)"))
    assert isinstance(failed.result(), KafkaTimeoutError)


@pytest.mark.parametrize("appended", ["batch_append", "send()"])
def test_a_delivery_says_where_kafka_stored_the_message_however_it_was_appended(unconnected_producer, appended):
    if appended == "batch_append":
        producer = FakeProducer()
        [record] = producer.append(1)
        [batch] = producer.batches()
        batch.complete(41, -1)
    else:
        batch_future, [record] = sent_records(0, 1)
        batch_future.success((41, -1, None))
    delivery = unconnected_producer._await(one_message(), record, deadline=time.monotonic() + 5)
    assert (delivery.partition, delivery.offset, delivery.error) == (0, 41, None)


class Sized:
    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


@pytest.mark.parametrize("key", [None, b"", b"k", b"k" * 127, b"k" * 128, b"k" * 20_000])
@pytest.mark.parametrize("value_size", [0, 1, 63, 64, 8191, 8192, 1_048_576, 268_435_456])
def test_the_quick_size_bound_is_never_below_kafka_pythons_estimate(key, value_size):
    # Requests skip the exact estimate when key + value + the bound fit; the bound must never be the smaller.
    value = Sized(value_size)  # the estimate reads only the lengths (a 5-byte varint needs 256 MiB)
    payload = value_size + (0 if key is None else len(key))
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) <= payload + _MOST_RECORD_OVERHEAD
