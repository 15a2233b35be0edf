"""The one module that talks to Kafka: a kafka-python producer per worker, and Kafka errors as API errors."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import kafka.errors as kafka_errors
from flask import current_app
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder

from producer_api.config import Settings
from producer_api.errors import (
    APIError,
    DeliveryTimeout,
    KafkaRejected,
    KafkaUnavailable,
    PayloadTooLarge,
    ProducerNotInitialized,
    TopicNotAuthorized,
    TopicNotFound,
    UnknownPartition,
)
from producer_api.messages import OutgoingMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What became of one message: where Kafka stored it, or the error that kept it out."""

    message: OutgoingMessage
    partition: int | None = None
    offset: int | None = None
    error: APIError | None = None

    @property
    def succeeded(self) -> bool:
        """True when the broker acknowledged the message."""
        return self.error is None


def _producer_config(settings: Settings) -> dict:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        # An explicit version keeps the constructor from contacting Kafka, so a worker starts even while the
        # broker is down; each connection still negotiates down to what its broker supports.
        "api_version": settings.api_version,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "batch_size": settings.batch_size,
        "compression_type": None if settings.compression_type == "none" else settings.compression_type,
        "max_request_size": settings.max_request_size,
        "max_block_ms": settings.max_block_ms,
        "request_timeout_ms": settings.request_timeout_ms,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "reconnect_backoff_max_ms": 1000,
    }


def _as_api_error(error: Exception, topic: str) -> APIError:
    """Translate an exception raised by kafka-python for one message into the API error a client sees."""
    text = str(error) or type(error).__name__
    if isinstance(error, kafka_errors.MessageSizeTooLargeError):
        return PayloadTooLarge(f"Failed to produce message: Message too large for topic '{topic}': {text}")
    if isinstance(error, kafka_errors.UnknownTopicOrPartitionError):
        return TopicNotFound(f"Failed to produce message: Topic '{topic}' does not exist")
    if isinstance(error, kafka_errors.TopicAuthorizationFailedError):
        return TopicNotAuthorized(f"Failed to produce message: Not authorized to write to topic '{topic}'")
    if isinstance(error, kafka_errors.KafkaTimeoutError):
        return DeliveryTimeout(
            f"Failed to produce message: Timed out waiting for Kafka to acknowledge the message ({text}); "
            "it may or may not have been written"
        )
    if isinstance(error, (kafka_errors.NotEnoughReplicasError, kafka_errors.NotEnoughReplicasAfterAppendError)):
        return KafkaUnavailable(f"Failed to produce message: Not enough in-sync replicas for topic '{topic}'")
    if isinstance(error, kafka_errors.RetriableError) or isinstance(error, kafka_errors.IllegalStateError):
        return KafkaUnavailable(f"Failed to produce message: Kafka is unavailable: {text}")
    return KafkaRejected(f"Failed to produce message: Kafka refused the message: {text}")


class MessageProducer:
    """A kafka-python KafkaProducer (acks=all, idempotent) that sends messages and waits for Kafka's answer."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._producer = KafkaProducer(**_producer_config(settings))
        self._replace_lock = threading.Lock()

    def send_all(self, messages: list[OutgoingMessage]) -> list[Delivery]:
        """Send messages and wait until Kafka acknowledged or refused each; nothing is sent if any is invalid."""
        self._check_destinations(messages)
        deadline = time.monotonic() + self._settings.delivery_timeout_ms / 1000 + 1.0
        producer = self._producer
        pending = []
        for message in messages:
            try:
                future = producer.send(
                    message.topic, value=message.value, key=message.key,
                    partition=message.partition, timestamp_ms=message.timestamp_ms,
                )
            except Exception as error:  # noqa: BLE001 - each message reports its own failure
                pending.append((message, None, error))
            else:
                pending.append((message, future, None))
        deliveries = [self._await(message, future, error, deadline) for message, future, error in pending]
        if any(isinstance(delivery.error, DeliveryTimeout) for delivery in deliveries):
            self._replace(producer)
        return deliveries

    def _replace(self, stuck: KafkaProducer) -> None:
        """Swap in a fresh KafkaProducer after a delivery timed out.

        kafka-python 3.0.12 resets the idempotent producer id when a batch it had sent expires, and then never
        obtains a new one: every later send hangs until it expires, even once the broker is back (seen against
        a broker paused with SIGSTOP). A new producer gets a new id. The old one's queued messages have timed out
        or will, and their requests already answer 504, so closing it loses nothing that was acknowledged.
        """
        with self._replace_lock:
            if self._producer is not stuck:
                return  # another request already replaced it
            self._producer = KafkaProducer(**_producer_config(self._settings))
        log.warning("replaced the Kafka producer after a delivery timeout")
        threading.Thread(target=_close_quietly, args=(stuck, 0.0), daemon=True).start()

    def _await(self, message, future, error, deadline) -> Delivery:
        if future is not None:
            try:
                metadata = future.get(timeout=max(deadline - time.monotonic(), 0.001))
            except Exception as raised:  # noqa: BLE001
                error = raised
            else:
                return Delivery(message, metadata.partition, metadata.offset)
        log.warning("delivery to topic %s failed: %s", message.topic, error)
        return Delivery(message, error=_as_api_error(error, message.topic))

    def _check_destinations(self, messages: list[OutgoingMessage]) -> None:
        """Refuse the whole request before anything is sent if any message cannot be written as asked."""
        partitions_by_topic: dict[str, set[int]] = {}
        for index, message in enumerate(messages):
            where = f" (message at index {index})" if len(messages) > 1 else ""
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(message.key, message.value, [])
            if size > self._settings.max_request_size:
                raise PayloadTooLarge(
                    f"Failed to produce message: Message is {size} bytes once encoded, more than the "
                    f"{self._settings.max_request_size} bytes allowed (KAFKA_MAX_REQUEST_SIZE){where}"
                )
            if message.topic not in partitions_by_topic:
                partitions_by_topic[message.topic] = self._partitions_for(message.topic)
            if message.partition is not None and message.partition not in partitions_by_topic[message.topic]:
                count = len(partitions_by_topic[message.topic])
                raise UnknownPartition(
                    f"Failed to produce message: Partition {message.partition} does not exist: topic "
                    f"'{message.topic}' has {count} partition(s), numbered 0 to {count - 1}{where}"
                )

    def _partitions_for(self, topic: str) -> set[int]:
        try:
            return self._producer.partitions_for(topic)
        except kafka_errors.TopicAuthorizationFailedError:
            raise TopicNotAuthorized(f"Failed to produce message: Not authorized to write to topic '{topic}'") from None
        except kafka_errors.KafkaTimeoutError:
            # Kafka gave no partitions in time: either nothing answers, or it answers that the topic is unknown.
            if self.is_connected(timeout=1.0):
                raise TopicNotFound(
                    f"Failed to produce message: Topic '{topic}' does not exist and the cluster does not "
                    "create topics automatically"
                ) from None
            raise KafkaUnavailable(
                f"Failed to produce message: Connection timeout: no Kafka broker at "
                f"{self._settings.bootstrap_servers} answered within {self._settings.max_block_ms} ms"
            ) from None
        except kafka_errors.KafkaError as error:
            raise _as_api_error(error, topic) from None

    def is_connected(self, timeout: float) -> bool:
        """Ask the cluster for fresh metadata and report whether a broker answered within the timeout."""
        metadata = self._producer._metadata  # kafka-python keeps its cluster view here (pinned version)
        answered = threading.Event()
        future = metadata.request_update()
        future.add_both(lambda *_: answered.set())
        self._producer._sender.wakeup()
        if not answered.wait(timeout):
            return False
        # A broker that answers with an error about a topic is still an answering broker.
        return future.succeeded() or isinstance(future.exception, kafka_errors.BrokerResponseError)

    def close(self, timeout: float) -> None:
        """Flush what is queued and close, waiting at most timeout seconds."""
        _close_quietly(self._producer, timeout)


def _close_quietly(producer: KafkaProducer, timeout: float) -> None:
    """Close a producer within the timeout; if its queue cannot be flushed in time, stop its I/O thread anyway."""
    try:
        producer.close(timeout=timeout)
    except kafka_errors.KafkaError as error:
        log.warning("Kafka producer could not flush within %.1f s (%s); closing it anyway", timeout, error)
        producer._sender.force_close()  # kafka-python's close() gives up before stopping its thread when flush fails


# The producer of this gunicorn worker: created after fork (a producer's threads do not survive fork).
_worker_producer: MessageProducer | None = None


def open_worker_producer(settings: Settings) -> MessageProducer:
    """Create this worker's producer; called from gunicorn's post_fork hook."""
    global _worker_producer
    _worker_producer = MessageProducer(settings)
    return _worker_producer


def worker_producer() -> MessageProducer | None:
    """This worker's producer, or None before post_fork or after worker_exit."""
    return _worker_producer


def init_app(app, producer: MessageProducer | None = None) -> None:
    """Give the app a producer; without one it uses the worker's producer opened in post_fork."""
    app.extensions["kafka_producer"] = producer


def current_producer() -> MessageProducer:
    """The producer serving this request, or ProducerNotInitialized (503) if there is none."""
    producer = current_app.extensions.get("kafka_producer") or _worker_producer
    if producer is None:
        raise ProducerNotInitialized()
    return producer


def close_worker_producer(timeout: float) -> None:
    """Flush and close this worker's producer; called from gunicorn's worker_exit hook."""
    global _worker_producer
    producer, _worker_producer = _worker_producer, None
    if producer is not None:
        producer.close(timeout)
