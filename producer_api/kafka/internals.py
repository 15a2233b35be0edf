"""The private parts of kafka-python the service calls because no public API does the job (pinned version).

Each reads or drives kafka-python's own objects; none replaces anything. tests/unit/kafka/test_internals.py checks
every one against the installed version, so an upgrade that moves them fails there first.
- producer._metadata.request_update() and producer._sender.wakeup(): ask for fresh metadata now (GET /health);
- producer._transaction_manager.begin_commit() / begin_abort() and their result's wait(timeout_ms): end a
  transaction within a timeout (commit_transaction() and abort_transaction() wait for good);
- producer._transaction_manager.has_fatal_error(): whether an idempotent producer can never send again;
- producer._sender.force_close(): stop the I/O thread when close() could not flush in time;
- producer.config["max_block_ms"]: how long init_transactions() and send() may block, set per atomic request.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import kafka.errors as kafka_errors
from kafka import KafkaProducer

log = logging.getLogger(__name__)


def metadata_answered(producer: KafkaProducer, timeout: float) -> bool:
    """Ask the cluster for fresh metadata and report whether a broker answered within the timeout."""
    answered = threading.Event()
    future = producer._metadata.request_update()
    future.add_both(lambda *_: answered.set())
    producer._sender.wakeup()
    if not answered.wait(timeout):
        return False
    # A broker that answers with an error about a topic is still an answering broker; a request that timed
    # out is kafka-python's own verdict, not an answer, whatever error class it uses for it.
    error = future.exception
    return future.succeeded() or (isinstance(error, kafka_errors.BrokerResponseError)
                                  and not isinstance(error, kafka_errors.RequestTimedOutError))


def end_transaction(producer: KafkaProducer, commit: bool, timeout_s: float) -> None:
    """commit_transaction() or abort_transaction(), but waiting at most timeout_s.

    kafka-python waits for the coordinator's answer to either with no timeout, so a coordinator that stops
    answering would hold the request, and the worker's transaction lock, for good.
    """
    manager = producer._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise kafka_errors.KafkaTimeoutError(f"Timeout after waiting for {timeout_s:g} secs.")


@contextmanager
def blocking_at_most(producer: KafkaProducer, seconds: float):
    """Within the block, let init_transactions() and send() wait for Kafka at most seconds.

    kafka-python reads max_block_ms from its config at each of those calls; an atomic batch shares one deadline
    among them. Only the thread holding the worker's transaction lock uses the transactional producer.
    """
    configured = producer.config["max_block_ms"]
    producer.config["max_block_ms"] = max(1, min(configured, round(seconds * 1000)))
    try:
        yield
    finally:
        producer.config["max_block_ms"] = configured


def has_fatal_error(producer: KafkaProducer) -> bool:
    """Whether kafka-python has put this idempotent producer in a state it never leaves."""
    manager = producer._transaction_manager
    return manager is not None and manager.has_fatal_error()


def close_quietly(producer: KafkaProducer, timeout: float) -> None:
    """Close a producer within the timeout; if its queue cannot be flushed in time, stop its I/O thread anyway."""
    try:
        producer.close(timeout=timeout)
    except kafka_errors.KafkaError as error:
        log.warning("Kafka producer could not flush within %.1f s (%s); closing it anyway", timeout, error)
        producer._sender.force_close()  # kafka-python's close() gives up before stopping its thread when flush fails
