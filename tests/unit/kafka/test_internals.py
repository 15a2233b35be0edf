"""The private parts of kafka-python the service calls: each exists on the installed version, and each wrapper
bounds kafka-python's waits as it says."""

import inspect
import time
from types import SimpleNamespace

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.producer.sender import Sender
from kafka.producer.transaction_manager import TransactionalRequestResult, TransactionManager

from producer_api.kafka.internals import (
    blocking_at_most,
    close_quietly,
    end_transaction,
    has_fatal_error,
    metadata_answered,
)
from tests.unit.kafka.tuning.test_batch_append import FakeSender


class CoordinatorThatNeverAnswers:
    """A transaction manager whose commit and abort are asked for but never answered."""

    def __init__(self):
        self.result = TransactionalRequestResult()

    def begin_commit(self):
        return self.result

    begin_abort = begin_commit


@pytest.fixture(scope="module")
def unconnected_kafka_producer():
    """kafka-python's own idempotent KafkaProducer, built as the service builds it: an explicit api_version, so no
    broker is contacted (nothing listens on port 1)."""
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(4, 1), enable_idempotence=True,
                             acks="all", max_block_ms=5000, request_timeout_ms=100, metrics_enabled=False)
    yield producer
    close_quietly(producer, 0.0)


# --- every private name internals.py's docstring lists exists on the installed kafka-python ---


def test_the_producer_keeps_its_metadata_and_its_sender_where_the_service_reaches_for_them(unconnected_kafka_producer):
    producer = unconnected_kafka_producer
    assert callable(producer._metadata.request_update)
    assert isinstance(producer._sender, Sender)
    assert callable(producer._sender.wakeup) and callable(producer._sender.force_close)
    # What metadata_answered() reads of the future request_update() returns.
    assert all(callable(getattr(Future, name)) for name in ("add_both", "succeeded"))
    assert "exception" in Future.__slots__


def test_the_transaction_manager_ends_a_transaction_with_a_result_waited_on_in_milliseconds(
        unconnected_kafka_producer):
    manager = unconnected_kafka_producer._transaction_manager
    assert isinstance(manager, TransactionManager)  # an idempotent producer has one, transactional or not
    assert all(callable(getattr(manager, name)) for name in ("begin_commit", "begin_abort", "has_fatal_error"))
    assert "timeout_ms" in inspect.signature(TransactionalRequestResult.wait).parameters
    for begin in (TransactionManager.begin_commit, TransactionManager.begin_abort):
        assert list(inspect.signature(begin).parameters) == ["self"]


def test_max_block_ms_is_read_from_the_config_at_each_send(unconnected_kafka_producer):
    producer = unconnected_kafka_producer
    assert producer.config["max_block_ms"] == 5000
    started = time.monotonic()
    # No broker gives the topic's metadata: send() waits max_block_ms as the config says at the call, not 5 s.
    with blocking_at_most(producer, 0.2), pytest.raises(KafkaTimeoutError):
        producer.send("internals-topic", value=b"v")
    assert 0.15 <= time.monotonic() - started < 2
    assert producer.config["max_block_ms"] == 5000


def test_no_answer_for_fresh_metadata_is_reported_within_the_timeout(unconnected_kafka_producer):
    started = time.monotonic()
    assert metadata_answered(unconnected_kafka_producer, 0.2) is False
    assert 0.15 <= time.monotonic() - started < 2


def test_a_fresh_idempotent_producer_has_no_fatal_error(unconnected_kafka_producer):
    assert has_fatal_error(unconnected_kafka_producer) is False
    assert has_fatal_error(SimpleNamespace(_transaction_manager=None)) is False  # not idempotent: nothing to fail


# --- what the wrappers do with them ---


@pytest.mark.parametrize("commit", [True, False])
def test_ending_a_transaction_waits_no_longer_than_its_timeout(commit):
    producer = SimpleNamespace(_transaction_manager=CoordinatorThatNeverAnswers(), _sender=FakeSender())
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        end_transaction(producer, commit=commit, timeout_s=0.1)
    assert 0.09 <= time.monotonic() - started < 2
    assert producer._sender.wakeups == 1


def test_blocking_at_most_bounds_kafka_pythons_waits_only_within_the_block():
    producer = SimpleNamespace(config={"max_block_ms": 5000})
    with blocking_at_most(producer, 0.25):
        assert producer.config["max_block_ms"] == 250
    assert producer.config["max_block_ms"] == 5000
    with blocking_at_most(producer, 60):  # never longer than configured
        assert producer.config["max_block_ms"] == 5000
    with pytest.raises(RuntimeError), blocking_at_most(producer, 0):
        assert producer.config["max_block_ms"] == 1
        raise RuntimeError
    assert producer.config["max_block_ms"] == 5000


def test_a_producer_that_cannot_flush_in_time_has_its_io_thread_stopped_anyway():
    closed_with, forced = [], []

    def close(timeout):
        closed_with.append(timeout)
        raise KafkaTimeoutError("Timeout after waiting for 0.1 secs.")

    producer = SimpleNamespace(close=close, _sender=SimpleNamespace(force_close=lambda: forced.append(True)))
    close_quietly(producer, 0.1)
    assert closed_with == [0.1] and forced == [True]
