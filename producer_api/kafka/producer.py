"""The per-worker producer: a kafka-python KafkaProducer that sends a request's messages and waits for Kafka's
answer, refusing before anything is sent what cannot be written, and replacing itself when kafka-python is stuck."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import kafka.errors as kafka_errors
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder

from producer_api.config import Settings
from producer_api.core import turns
from producer_api.core.errors import (
    APIError,
    DeliveryTimeout,
    KafkaNotReached,
    KafkaUnavailable,
    PayloadTooLarge,
    TooManyPending,
    TopicNotAuthorized,
    TopicNotFound,
    UnknownPartition,
)
from producer_api.core.messages import Delivery, OutgoingMessage
from producer_api.kafka import tuning
from producer_api.kafka.errors import as_api_error
from producer_api.kafka.internals import (
    blocking_at_most,
    close_quietly,
    end_transaction,
    has_fatal_error,
    metadata_answered,
)
from producer_api.kafka.options import new_kafka_producer
from producer_api.kafka.tuning import batch_append
from producer_api.observability import metrics
from producer_api.observability.logs import ThrottledLog

log = logging.getLogger(__name__)

# What DefaultRecordBatchBuilder.estimate_size_in_bytes adds at most to a record's key and value (no headers):
# the batch header, the record's overhead and both lengths as 5-byte varints.
_MOST_RECORD_OVERHEAD = (DefaultRecordBatchBuilder.HEADER_STRUCT.size + DefaultRecordBatchBuilder.MAX_RECORD_OVERHEAD
                         + 5 + 5 + 1)


class _SentRecord:
    """A record sent with KafkaProducer.send(), waited on through kafka-python's own FutureRecordMetadata."""

    __slots__ = ("future",)
    never_sent = False  # kafka-python's future cannot tell: a timed-out record may or may not have been written

    def __init__(self, future):
        self.future = future

    @property
    def is_done(self) -> bool:
        """True once Kafka answered for the record, or kafka-python gave up on it."""
        return self.future.is_done

    def wait(self, deadline: float) -> bool:
        """Wait until the record is done or the deadline passed; True if it is done."""
        try:
            self.future.get(timeout=max(deadline - time.monotonic(), 0.0))
        except kafka_errors.KafkaError:
            pass  # its own failure, or the wait's timeout: is_done tells which
        return self.future.is_done

    def result(self):
        """(partition, offset) Kafka gave the record, or the exception that kept it out."""
        if self.future.exception is not None:
            return self.future.exception
        return self.future.value.partition, self.future.value.offset

    def settle_later(self, callback) -> None:
        """Call callback once the record is done."""
        self.future.add_both(callback)


class MessageProducer:
    """A kafka-python KafkaProducer (acks=all, idempotent) that sends messages and waits for Kafka's answer."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._producer = new_kafka_producer(settings)
        self._appends_batches = tuning.appends_batches(settings)
        self._replace_lock = threading.Lock()
        self._transactional: KafkaProducer | None = None
        self._transaction_lock = threading.Lock()
        self._pending = 0  # messages handed to Kafka whose outcome is not known yet
        self._pending_lock = threading.Lock()
        self._queued_failures = 0  # fire-and-forget messages Kafka did not take
        # An outage fails every queued message, each in its own callback: one line a second says so, with a count.
        self._queued_failure_log = ThrottledLog(log)
        self._unreachable = False  # a request just found no broker; the next ones check before queueing
        self._stuck_producer: KafkaProducer | None = None  # left unusable by a fire-and-forget failure

    @property
    def pending(self) -> int:
        """How many messages this producer is still waiting on Kafka for."""
        return self._pending

    @property
    def queued_failures(self) -> int:
        """How many fire-and-forget messages Kafka did not take since the worker started."""
        return self._queued_failures

    def send_all(self, messages: list[OutgoingMessage], wait: bool = True) -> list[Delivery]:
        """Send messages and, if wait, until Kafka acknowledged or refused each; nothing is sent if any is invalid."""
        self._replace_if_stuck()
        self._refuse_while_unreachable()
        producer = self._producer  # checked and sent to alike, even if another request replaces it meanwhile
        partitions = self._check_destinations(messages, producer)
        self._reserve(len(messages))
        now = time.monotonic()
        deadline = now + self._settings.delivery_timeout_ms / 1000 + 0.25
        if not wait:
            outcomes: list = []  # a future per message, or the exception sending it raised
            try:
                queue = self._queuer(producer, partitions)
                for message in messages:
                    try:
                        outcomes.append(queue(message, now))
                    except kafka_errors.KafkaError as error:  # each message reports its own failure
                        outcomes.append(error)
            except BaseException:
                self._release_count(len(messages))  # none of them has a callback that would release it
                raise
            deliveries = [self._queued(producer, message, outcome)
                          for message, outcome in zip(messages, outcomes, strict=True)]
            _log_failures(deliveries)
            return deliveries
        try:
            outcomes = self._append_waited(producer, messages, partitions, now)  # a record or an exception each
        except BaseException:
            # Not counted as pending any more, or the worker would answer 429 for good; what was appended
            # before the failure is still delivered or fails on its own.
            self._release_count(len(messages))
            raise
        try:
            # Last first: a partition's batches complete in order, so waiting for the request's last batch first
            # usually finds the others done, instead of waking once for each of them.
            deliveries = [self._await(message, outcome, deadline)
                          for message, outcome in zip(reversed(messages), reversed(outcomes), strict=True)]
            deliveries.reverse()
        finally:
            self._release_when_settled(outcomes)
        _log_failures(deliveries)
        self._note_outcome(producer, deliveries)
        return deliveries

    def _queuer(self, producer: KafkaProducer, partitions: dict[str, set[int]]):
        """How a fire-and-forget message is handed to kafka-python: a function of (message, now) -> its future."""
        if self._appends_batches:
            placement = batch_append.Placement(partitions)
            return lambda message, now: batch_append.append_queued(producer, message, placement, now)
        return lambda message, now: _send(producer, message)

    def _append_waited(self, producer: KafkaProducer, messages: list[OutgoingMessage],
                       partitions: dict[str, set[int]], now: float) -> list:
        """Hand a waiting request's messages to kafka-python; a record to wait on, or an exception, per message."""
        if self._appends_batches:
            return batch_append.append_waited(producer, messages, batch_append.Placement(partitions), now)
        outcomes: list = []
        for index, message in enumerate(messages):
            try:
                outcomes.append(_SentRecord(_send(producer, message)))
            except kafka_errors.KafkaError as error:  # each message reports its own failure
                outcomes.append(error)
            if index % turns.YIELD_EVERY == turns.YIELD_EVERY - 1:
                turns.give_turn()  # and to the I/O greenlet, to send what is queued
        return outcomes

    def send_atomic(self, messages: list[OutgoingMessage]) -> list[Delivery]:
        """Write all messages in one Kafka transaction: read_committed consumers see all of them or none."""
        # One deadline for the whole request, as long as a single message's longest wait (Settings.produce_wait_s),
        # so that a stopping worker's flush keeps its time: waiting for the worker's previous transaction, starting
        # this one and fetching its metadata share what the check for metadata left of Settings.metadata_wait_s.
        started = time.monotonic()
        self._replace_if_stuck()
        self._refuse_while_unreachable()
        self._check_destinations(messages, self._producer)
        self._reserve(len(messages))
        try:
            budget = _TransactionBudget(started + self._settings.metadata_wait_s,
                                        started + self._settings.produce_wait_s)
            # Waiting for another transaction to end is bounded like waiting for a topic's metadata.
            waited_s = min(budget.left_to_start(), self._settings.max_block_ms / 1000)
            if not self._transaction_lock.acquire(timeout=waited_s):
                raise KafkaUnavailable("Failed to produce batch: another transaction of this worker is still running")
            try:
                return self._run_transaction(messages, budget)
            finally:
                self._transaction_lock.release()
        finally:
            self._release_count(len(messages))  # a transaction's outcome is known when it returns

    def _run_transaction(self, messages: list[OutgoingMessage], budget: _TransactionBudget) -> list[Delivery]:
        producer = self._transactional_producer(budget)
        try:
            producer.begin_transaction()
            with blocking_at_most(producer, budget.left_to_start()):  # a topic's metadata, if not known yet
                futures = [_send(producer, message) for message in messages]
            acknowledged_by = min(time.monotonic() + self._settings.delivery_timeout_ms / 1000, budget.deadline)
            for index, (message, future) in enumerate(zip(messages, futures, strict=True)):
                try:
                    future.get(timeout=max(acknowledged_by - time.monotonic(), 0.001))
                except kafka_errors.KafkaTimeoutError:
                    # Unlike a lone message, a timed-out one of a transaction that is never committed stays invisible.
                    raise KafkaUnavailable(
                        f"Failed to produce batch: Timed out waiting for Kafka to acknowledge the message at index "
                        f"{index} (KAFKA_DELIVERY_TIMEOUT_MS); the transaction was aborted, nothing was written"
                    ) from None
                except kafka_errors.KafkaError as failure:
                    error = as_api_error(failure, message.topic)
                    error.detail += f" (message at index {index}); the transaction was aborted, nothing was written"
                    raise error from None
            self._commit(producer, budget)
        except (APIError, kafka_errors.KafkaError) as error:
            self._discard_transactional(producer)
            if isinstance(error, APIError):
                raise
            if isinstance(error, kafka_errors.KafkaTimeoutError):  # before the commit: never committed, so invisible
                raise KafkaUnavailable(f"Failed to produce batch: Timed out waiting for Kafka ({error}); the "
                                       "transaction was not committed, nothing was written") from None
            api_error = as_api_error(error, messages[0].topic)
            api_error.detail += "; the transaction was not committed, nothing was written"
            raise api_error from None
        return [Delivery(message, future.value.partition, future.value.offset)
                for message, future in zip(messages, futures, strict=True)]

    def _commit(self, producer: KafkaProducer, budget: _TransactionBudget) -> None:
        """Commit the open transaction, waiting at most KAFKA_REQUEST_TIMEOUT_MS or what is left of the budget."""
        timeout_s = min(self._settings.request_timeout_ms / 1000, budget.left())
        if timeout_s <= 0:  # nothing asked of the coordinator yet, so the transaction is certainly not committed
            raise kafka_errors.KafkaTimeoutError("no time left to commit the transaction")
        try:
            end_transaction(producer, commit=True, timeout_s=timeout_s)
        except kafka_errors.KafkaTimeoutError:
            # The commit request may have reached the coordinator: the transaction may still be committed.
            raise DeliveryTimeout(
                f"Failed to produce batch: Timed out after {round(timeout_s * 1000)} ms waiting for Kafka to commit "
                "the transaction; it may or may not have been committed (all messages or none)"
            ) from None

    def _discard_transactional(self, producer: KafkaProducer) -> None:
        """Abort the open transaction in the background and start the next one from a fresh producer.

        kafka-python can leave a transactional producer in a state it cannot leave after an abort (seen:
        "Invalid transition from BUMPING_PRODUCER_EPOCH to ABORTING_TRANSACTION"). A fresh producer with the same
        transactional id fences the old one, and the broker aborts whatever the old one left open. The request does
        not wait for the abort: a transaction never committed is never seen by read_committed consumers, and its
        wait could take the time a stopping worker keeps for flushing.
        """
        self._transactional = None
        threading.Thread(target=_abort_and_close, args=(producer, self._settings.request_timeout_ms / 1000),
                         daemon=True).start()

    def _transactional_producer(self, budget: _TransactionBudget) -> KafkaProducer:
        if self._transactional is None:
            # One transactional id per worker process: transactions of one worker never fence another's.
            transactional_id = f"{self._settings.client_id}-{socket.gethostname()}-{os.getpid()}"
            producer = new_kafka_producer(self._settings, transactional_id=transactional_id)
            waited_ms = min(self._settings.max_block_ms, round(budget.left_to_start() * 1000))
            try:
                with blocking_at_most(producer, waited_ms / 1000):
                    producer.init_transactions()
            except kafka_errors.KafkaTimeoutError:
                close_quietly(producer, 0.0)
                # Nothing of the request was sent yet, so this is "unavailable", not "may or may not".
                raise KafkaUnavailable(
                    f"Failed to produce batch: Kafka's transaction coordinator did not answer within "
                    f"{waited_ms} ms (KAFKA_MAX_BLOCK_MS, or what the request had left of it); nothing was written"
                ) from None
            except kafka_errors.KafkaError as error:
                close_quietly(producer, 0.0)
                raise as_api_error(error, "transactions") from None
            self._transactional = producer
        return self._transactional

    def _reserve(self, count: int) -> None:
        with self._pending_lock:
            if self._pending + count > self._settings.max_pending_messages:
                raise TooManyPending(
                    f"Failed to produce message: {self._pending} messages are already waiting for Kafka in this "
                    f"worker (limit {self._settings.max_pending_messages}, PRODUCER_MAX_PENDING_MESSAGES); retry later"
                )
            self._pending += count

    def _release(self, *_outcome) -> None:
        with self._pending_lock:
            self._pending -= 1

    def _release_count(self, count: int) -> None:
        with self._pending_lock:
            self._pending -= count

    def _release_when_settled(self, outcomes: list) -> None:
        """Stop counting the messages whose outcome is known, at once; the others as each one settles."""
        # One lock round for the whole request instead of a callback per message in kafka-python's I/O thread.
        unsettled = [outcome for outcome in outcomes if not isinstance(outcome, Exception) and not outcome.is_done]
        with self._pending_lock:
            self._pending -= len(outcomes) - len(unsettled)
        for slot in unsettled:
            slot.settle_later(self._release)  # runs at once if it settled meanwhile

    def _queued(self, producer: KafkaProducer, message: OutgoingMessage, outcome) -> Delivery:
        if isinstance(outcome, Exception):
            self._release()
            return self._failed(message, outcome)
        outcome.add_both(self._release)
        outcome.add_errback(self._on_queued_failure, producer, message.topic)  # called (producer, topic, error)
        return Delivery(message)

    def _on_queued_failure(self, producer: KafkaProducer, topic: str, error: Exception) -> None:
        """Count and log a fire-and-forget message Kafka did not take; mark its producer if it is now stuck."""
        with self._pending_lock:
            self._queued_failures += 1
        # This runs in kafka-python's I/O thread, which must not build a producer or wait on one: the next request
        # replaces it (_replace_if_stuck), as a waiting request does after the same failure (_note_outcome).
        if isinstance(error, kafka_errors.KafkaTimeoutError):
            self._unreachable = True
            self._stuck_producer = producer
        elif has_fatal_error(producer):
            self._stuck_producer = producer
        self._queued_failure_log.error("queued message for topic %s was not delivered: %s", topic, error)

    def _replace_if_stuck(self) -> None:
        """Replace the producer a fire-and-forget failure left stuck, before this request uses it."""
        stuck = self._stuck_producer
        if stuck is not None:
            self._stuck_producer = None
            self._replace(stuck)

    def _refuse_while_unreachable(self) -> None:
        """Answer at once while Kafka is known to be unreachable, instead of queueing into a timeout."""
        if self._unreachable:
            if not self.is_connected(timeout=1.0):
                raise KafkaUnavailable(
                    f"Failed to produce message: Connection timeout: no Kafka broker at "
                    f"{self._settings.bootstrap_servers} answers (unreachable, or the connection was refused "
                    "by TLS or SASL: see the service log)"
                )
            self._unreachable = False

    def _note_outcome(self, producer: KafkaProducer, deliveries: list[Delivery]) -> None:
        if any(isinstance(delivery.error, (DeliveryTimeout, KafkaNotReached)) for delivery in deliveries):
            # The next request asks Kafka before queueing (_refuse_while_unreachable); asking here would keep
            # this request up to a second past its delivery timeout.
            self._unreachable = True
            self._replace(producer)
        elif any(delivery.error for delivery in deliveries) and has_fatal_error(producer):
            self._replace(producer)

    def _replace(self, stuck: KafkaProducer) -> None:
        """Swap in a fresh KafkaProducer after a delivery timed out or the producer failed for good.

        kafka-python leaves an idempotent producer unusable in two cases seen here: when a batch it had
        sent expires, it resets its producer id and never obtains a new one, so every later send hangs until it
        expires even once the broker is back (broker paused with SIGSTOP); and when the broker rejects a record
        as too large for its topic, it enters a fatal state and fails every later send to any topic at once.
        A new producer gets a new id. The old one keeps its queue for one more delivery timeout before it is
        closed; what it still holds then fails as it would have anyway.
        """
        with self._replace_lock:
            if self._producer is not stuck:
                return  # another request already replaced it
            self._producer = new_kafka_producer(self._settings)
        log.warning("replaced the Kafka producer after a delivery timeout or a fatal producer error")
        metrics.RECONNECTS.inc()
        grace = self._settings.delivery_timeout_ms / 1000
        threading.Thread(target=close_quietly, args=(stuck, grace), daemon=True).start()

    def _await(self, message: OutgoingMessage, outcome, deadline: float) -> Delivery:
        if isinstance(outcome, Exception):
            return self._failed(message, outcome)
        if not outcome.wait(deadline):
            # Still queued, so it may yet be sent (a producer waiting for its producer id holds batches unexpired).
            return self._failed(message, kafka_errors.KafkaTimeoutError(
                f"Timeout after waiting for {self._settings.delivery_timeout_ms / 1000 + 0.25:g} secs."))
        result = outcome.result()
        if isinstance(result, kafka_errors.KafkaTimeoutError) and outcome.never_sent:
            # kafka-python expired the batch, which takes it out of its queue, before any produce request carried
            # it (no broker connection the whole time, refused, say): not "may or may not", certainly not written.
            return Delivery(message, error=KafkaNotReached(
                f"Failed to produce message: No broker took the message within {self._settings.delivery_timeout_ms} "
                f"ms (KAFKA_DELIVERY_TIMEOUT_MS): Kafka is unreachable, nothing was written"))
        if isinstance(result, Exception):
            return self._failed(message, result)
        return Delivery(message, *result)

    @staticmethod
    def _failed(message: OutgoingMessage, error: Exception) -> Delivery:
        return Delivery(message, error=as_api_error(error, message.topic))

    def _check_destinations(self, messages: list[OutgoingMessage], producer: KafkaProducer) -> dict[str, set[int]]:
        """Refuse the whole request before anything is sent if any message cannot be written as asked.

        Returns each topic's partitions, as the cluster metadata had them.
        """
        partitions_by_topic: dict[str, set[int]] = {}
        limit = self._settings.max_request_size
        for index, message in enumerate(messages):
            payload = len(message.value) if message.key is None else len(message.value) + len(message.key)
            if payload + _MOST_RECORD_OVERHEAD > limit:  # only then is the exact size worth computing
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(message.key, message.value, [])
                if size > limit:
                    raise PayloadTooLarge(
                        f"Failed to produce message: Message is {size} bytes once encoded, more than the "
                        f"{limit} bytes allowed (KAFKA_MAX_REQUEST_SIZE){_where(index, messages)}"
                    )
            partitions = partitions_by_topic.get(message.topic)
            if partitions is None:
                partitions = partitions_by_topic[message.topic] = self._partitions_for(message.topic, producer)
            if message.partition is not None and message.partition not in partitions:
                raise UnknownPartition(
                    f"Failed to produce message: Partition {message.partition} does not exist: topic "
                    f"'{message.topic}' has {len(partitions)} partition(s), numbered 0 to {len(partitions) - 1}"
                    f"{_where(index, messages)}"
                )
        return partitions_by_topic

    def _partitions_for(self, topic: str, producer: KafkaProducer) -> set[int]:
        try:
            return producer.partitions_for(topic)
        except kafka_errors.TopicAuthorizationFailedError:
            raise TopicNotAuthorized(f"Failed to produce message: Not authorized to write to topic '{topic}'") from None
        except kafka_errors.KafkaTimeoutError:
            # Kafka gave no partitions in time: either nothing answers, or it answers that the topic is unknown.
            if self.is_connected(timeout=1.0):
                raise TopicNotFound(
                    f"Failed to produce message: Topic '{topic}' does not exist and the cluster does not "
                    "create topics automatically"
                ) from None
            self._unreachable = True  # the next requests check for a second instead of waiting for metadata
            raise KafkaUnavailable(
                f"Failed to produce message: Connection timeout: no Kafka broker at "
                f"{self._settings.bootstrap_servers} answered within {self._settings.max_block_ms / 1000 + 1:g} s "
                "(unreachable, or the connection was refused by TLS or SASL: see the service log)"
            ) from None
        except kafka_errors.KafkaError as error:
            raise as_api_error(error, topic) from None

    def is_connected(self, timeout: float) -> bool:
        """Ask the cluster for fresh metadata and report whether a broker answered within the timeout."""
        return metadata_answered(self._producer, timeout)

    def close(self, timeout: float) -> None:
        """Flush what is queued and close, waiting at most timeout seconds."""
        if self._transactional is not None:
            close_quietly(self._transactional, 0.0)
        close_quietly(self._producer, timeout)


def _send(producer: KafkaProducer, message: OutgoingMessage):
    """KafkaProducer.send() of one record, as kafka-python ships it; its FutureRecordMetadata."""
    return producer.send(message.topic, value=message.value, key=message.key, partition=message.partition,
                         timestamp_ms=message.timestamp_ms)


def _where(index: int, messages: list) -> str:
    """Which message of a batch an error is about; nothing for a single message."""
    return f" (message at index {index})" if len(messages) > 1 else ""


def _log_failures(deliveries: list[Delivery]) -> None:
    """One log line for a request's failed messages, however many: a failing batch of 5000 must not write 5000."""
    failed = [delivery for delivery in deliveries if delivery.error is not None]
    if failed:
        topics = ",".join(sorted({delivery.message.topic for delivery in failed}))
        log.warning("%d of %d message(s) not delivered (topics %s); the first: %s",
                    len(failed), len(deliveries), topics, failed[0].error.detail)


class _TransactionBudget:
    """An atomic batch's deadlines: one to have started its transaction by, one for the whole request."""

    __slots__ = ("started_by", "deadline")

    def __init__(self, started_by: float, deadline: float):
        self.started_by = started_by
        self.deadline = deadline

    def left_to_start(self) -> float:
        """Seconds left to wait for the worker's previous transaction, the coordinator and metadata (at least 1 ms)."""
        return max(self.started_by - time.monotonic(), 0.001)

    def left(self) -> float:
        """Seconds left of the whole request; zero or less once it is spent."""
        return self.deadline - time.monotonic()


def _abort_and_close(producer: KafkaProducer, timeout_s: float) -> None:
    """Abort a transactional producer's open transaction, waiting at most timeout_s, then close the producer."""
    try:
        end_transaction(producer, commit=False, timeout_s=timeout_s)
    except kafka_errors.KafkaError as error:
        log.warning("could not abort the transaction (%s); the next producer's fencing aborts it", error)
    close_quietly(producer, 0.0)
