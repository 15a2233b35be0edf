"""The one module that talks to Kafka: a kafka-python producer per worker, and Kafka errors as API errors."""

from __future__ import annotations

import functools
import logging
import os
import random
import select
import selectors
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import kafka.errors as kafka_errors
from flask import current_app
from kafka import KafkaProducer, TopicPartition
from kafka.net.transport import KafkaTCPTransport
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import encode_varint

from producer_api import green, metrics
from producer_api.config import Settings
from producer_api.errors import (
    APIError,
    DeliveryTimeout,
    KafkaNotReached,
    KafkaRejected,
    KafkaUnavailable,
    PayloadTooLarge,
    ProducerNotInitialized,
    TooManyPending,
    TopicNotAuthorized,
    TopicNotFound,
    UnknownPartition,
)
from producer_api.logs import ThrottledLog
from producer_api.messages import OutgoingMessage

log = logging.getLogger(__name__)
# kafka-python builds a TLS context, and so asks for the key's pass phrase, at every connection attempt.
_KEY_PASSWORD_LOG = ThrottledLog(log, interval_s=60.0)


def _io_selector() -> type:
    """The selector class for kafka-python's I/O loop, chosen when a producer is built: after gevent's patching
    (producer_api/green.py) epoll is gone and gevent's own selector is the one that lets other greenlets run."""
    if hasattr(select, "epoll") and hasattr(selectors, "EpollSelector"):
        from producer_api.selector import DeferredUnregisterSelector  # defined on epoll, so only where it exists

        return DeferredUnregisterSelector
    return selectors.DefaultSelector  # gevent's; on macOS and the BSDs kafka-python's default


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 0.7 us more to build, once per message
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


MAX_CACHED_KEY_BYTES = 256  # keys are cached with their hash: at most 4,096 x 256 bytes


@functools.lru_cache(maxsize=4096)
def _cached_key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


class KeyHashCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner, with the murmur2 hash of recent keys remembered.

    The hash is pure Python, 3 us for an 8-byte key, and the default partitioner also builds two partition lists
    per message: together about a quarter of send()'s cost here. Keys go to the same partitions as with the
    default (and the Java client); messages without a key are placed exactly as the default does.
    """

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        """The partition for a message: its key's hash modulo the topic's partitions, as kafka-python does."""
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        return _partition_for_key(bytes(serialized_key), sorted(partitions))


def _partition_for_key(key: bytes, partitions: list[int]) -> int:
    """The partition the default partitioner (kafka-python's and the Java client's) gives a key: murmur2 modulo."""
    key_hash = _cached_key_hash(key) if len(key) <= MAX_CACHED_KEY_BYTES else murmur2(key) & 0x7FFFFFFF
    return partitions[key_hash % len(partitions)]


class _Placement:
    """Where a request's messages go: each topic's partitions, and a TopicPartition made once per partition."""

    __slots__ = ("_sorted", "_available", "_topic_partitions")

    def __init__(self, partitions_by_topic: dict[str, set[int]]):
        self._sorted = {topic: sorted(partitions) for topic, partitions in partitions_by_topic.items()}
        self._available: dict[str, list[int]] = {}
        self._topic_partitions: dict[tuple[str, int], TopicPartition] = {}

    def partition(self, producer: KafkaProducer, message: OutgoingMessage) -> int:
        """The partition asked for, else as kafka-python's default partitioner (and our key-hash cache) picks."""
        if message.partition is not None:
            return message.partition
        partitions = self._sorted[message.topic]
        if message.key is not None:
            return _partition_for_key(message.key, partitions)
        available = self._available.get(message.topic)
        if available is None:
            available = self._available[message.topic] = sorted(
                producer._metadata.available_partitions_for_topic(message.topic) or partitions)
        return random.choice(available)

    def topic_partition(self, topic: str, partition: int) -> TopicPartition:
        """The TopicPartition of a destination, made once per request."""
        destination = self._topic_partitions.get((topic, partition))
        if destination is None:
            destination = self._topic_partitions[(topic, partition)] = TopicPartition(topic, partition)
        return destination


def _append(producer: KafkaProducer, message: OutgoingMessage, placement: _Placement, now: float):
    """producer.send() for a message _check_destinations accepted, without the checks it already made.

    send() costs 15 us a message here, a third of it re-checking per message what a request checks once: that the
    producer is open, the headers, serializers, topic metadata, the partition and the size; and formatting a
    debug line nobody logs. What is left is kafka-python's own: append the record to its partition's batch, and
    wake the I/O thread when the batch is new or full (pinned version).
    """
    if producer._closed:  # as send() refuses: a replaced producer being closed takes nothing new
        raise kafka_errors.IllegalStateError("KafkaProducer already closed!")
    partition = placement.partition(producer, message)
    future, batch_is_full, new_batch_created, _ = producer._accumulator.append(
        placement.topic_partition(message.topic, partition), message.timestamp_ms, message.key, message.value, [],
        now=now)
    if batch_is_full or new_batch_created:
        producer._sender.wakeup()
    return future


class _RecordSlot:
    """Where one waited-for record sits: the future of the batch kafka-python put it in, and its index there.

    Stands in for kafka-python's per-record FutureRecordMetadata when a request waits for its messages. That future
    costs the sending thread its creation and a callback on the batch's future, and the I/O thread a call per
    record when the batch completes; what a request needs from it, the offset, is the batch's base offset plus the
    record's index. kafka-python moves records into smaller batches when a broker refuses a batch as too large, and
    tells each record through rebind() (pinned version).
    """

    __slots__ = ("produce_future", "index", "on_settled", "first_batch")

    def __init__(self, batch: ProducerBatch, index: int):
        self.produce_future = batch.produce_future
        self.index = index
        self.on_settled = None  # called once the record's batch completes, if set (see settle_later)
        self.first_batch = batch  # kept through a split: the batch that went to a broker, if any did

    @property
    def never_sent(self) -> bool:
        """True while no produce request has carried the record (not yet: a queued batch may still be sent)."""
        return self.first_batch.drained is None  # set when kafka-python's sender takes the batch into a request

    def rebind(self, produce_future, index: int) -> None:
        """Follow the record into the smaller batch kafka-python split it into (called in its I/O thread)."""
        with _SLOT_CALLBACK_LOCK:
            previous, self.produce_future, self.index = self.produce_future, produce_future, index
            if self.on_settled is not None:
                produce_future.add_both(self.on_settled)  # the split-off batch's future never completes
        previous._latch.set()  # a request waiting on the old batch wakes and waits on the new one

    def settle_later(self, callback) -> None:
        """Call callback once the record's batch completes, wherever kafka-python moves the record meanwhile."""
        with _SLOT_CALLBACK_LOCK:
            self.on_settled = callback
            self.produce_future.add_both(callback)

    def wait(self, deadline: float) -> bool:
        """Wait until the record's batch completed or the deadline passed; True if it completed."""
        while not self.produce_future.is_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.produce_future.wait(remaining)
        return True

    def outcome(self):
        """The offset Kafka gave the record, or the exception that kept it out (once its batch completed)."""
        future = self.produce_future
        if future.exception is not None:
            return future.exception
        base_offset, _, record_errors = future.value
        if record_errors is not None:
            return record_errors(self.index)
        return base_offset + self.index


_SLOT_CALLBACK_LOCK = threading.Lock()  # a late callback and a batch split must not miss each other


def _append_all_waited(producer: KafkaProducer, messages: list[OutgoingMessage], placement: _Placement,
                       now: float) -> list:
    """Append a waiting request's records, each with a _RecordSlot; returns a slot or an exception per message.

    What RecordAccumulator.append does per record (pinned version), done per partition and batch: a record joins
    its partition's last batch, or a new batch once that one is full, and the I/O thread is woken when a batch is
    new or full. append() takes the partition's lock and twice the accumulator's count of appending threads for
    every record; under load the request threads queue on them (a twelfth of a worker's time in batches of 1000).
    The lock is let go after each batch, so that the I/O thread can send a full batch while the next one fills.
    """
    outcomes: list = [None] * len(messages)
    indexes_by_destination: dict[TopicPartition, list[int]] = {}
    for index, message in enumerate(messages):
        try:
            destination = placement.topic_partition(message.topic, placement.partition(producer, message))
        except kafka_errors.KafkaError as error:  # each message reports its own failure
            outcomes[index] = error
            continue
        indexes_by_destination.setdefault(destination, []).append(index)
    accumulator = producer._accumulator
    accumulator._appends_in_progress.increment()  # as append() does, so that aborting finds every batch
    try:
        for destination, indexes in indexes_by_destination.items():
            position = 0
            while position < len(indexes):
                position = _fill_batch(producer, destination, messages, indexes, position, outcomes, now)
                if len(messages) > green.YIELD_EVERY:
                    green.yield_to_other_connections()  # and to the I/O greenlet, to send the batch just filled
    finally:
        accumulator._appends_in_progress.decrement()
    return outcomes


def _fill_batch(producer: KafkaProducer, destination: TopicPartition, messages: list[OutgoingMessage],
                indexes: list[int], position: int, outcomes: list, now: float) -> int:
    """Append records from position on to the partition's last batch (or a new one) until it is full.

    Returns the position of the first record left for the next batch.
    """
    accumulator = producer._accumulator
    with accumulator._tp_lock(destination):
        if producer._closed or accumulator._closed:
            error = kafka_errors.IllegalStateError("KafkaProducer already closed!")
            for index in indexes[position:]:
                outcomes[index] = error
            return len(indexes)
        queue = accumulator._batches[destination]
        batch = queue[-1] if queue else None
        created = False
        while position < len(indexes):
            message = messages[indexes[position]]
            slot = _append_to_batch(batch, message, now) if batch is not None else None
            if slot is None:
                if created:  # the batch this call started is full: the next one after the lock is let go
                    break
                config = accumulator.config
                batch = ProducerBatch(destination, MemoryRecordsBuilder(
                    config["message_version"], config["compression_attrs"], config["batch_size"]), now=now)
                slot = _append_to_batch(batch, message, now)  # an empty batch takes any record
                queue.append(batch)
                accumulator._incomplete.add(batch)
                created = True
            outcomes[indexes[position]] = slot
            position += 1
        wake = created or len(queue) > 1 or queue[-1].records.is_full()
    if wake:
        producer._sender.wakeup()
    return position


def _append_to_batch(batch: ProducerBatch, message: OutgoingMessage, now: float) -> _RecordSlot | None:
    """ProducerBatch.try_append with a _RecordSlot for the record; None when the batch is full (pinned version)."""
    records = batch.records
    if records._magic >= 2:
        appended = _append_record(records, message.timestamp_ms, message.key, message.value)
        if appended is None:
            return None
        offset, size = appended
    else:
        metadata = records.append(message.timestamp_ms, message.key, message.value, [])
        if metadata is None:
            return None
        offset, size = metadata.offset, metadata.size
    if size > batch.max_record_size:
        batch.max_record_size = size
    batch.last_append = now
    slot = _RecordSlot(batch, offset)
    batch._record_futures.append(slot)  # where kafka-python finds the records to rebind when it splits the batch
    return slot


def _zigzag_varint(number: int) -> bytes:
    encoded = bytearray()
    encode_varint(number, encoded.append)
    return bytes(encoded)


# Lengths, offsets in a batch and timestamp deltas of a request's records are nearly always below 2 ** 13.
_SMALL_VARINTS = tuple(_zigzag_varint(number) for number in range(1 << 13))


def _append_record(records: MemoryRecordsBuilder, timestamp_ms: int, key: bytes | None,
                   value: bytes) -> tuple[int, int] | None:
    """MemoryRecordsBuilder.append of a record without headers to a v2 batch; (offset, size), None if full.

    kafka-python 3.0.12 encodes a record's six variable-length integers one byte-append call at a time and checks
    every argument's type: 1.9 us a record of the benchmark's, against 0.5 us for the same bytes built here in
    one formatting call with the integers looked up (pinned version; tests/unit/test_kafka_producer.py checks
    both build the same batches).
    """
    if records._closed:
        return None
    builder = records._builder
    offset = records._next_offset
    first_timestamp = builder._first_timestamp
    if first_timestamp is None:
        builder._first_timestamp = builder._max_timestamp = first_timestamp = timestamp_ms
    small = _SMALL_VARINTS
    delta = timestamp_ms - first_timestamp
    value_length = len(value)
    record = b"\x00%b%b%b%b%b%b\x00" % (  # attributes, ..., no headers
        small[delta] if 0 <= delta < 8192 else _zigzag_varint(delta),
        small[offset] if offset < 8192 else _zigzag_varint(offset),
        b"\x01" if key is None else small[len(key)] if len(key) < 8192 else _zigzag_varint(len(key)),
        b"" if key is None else key,
        small[value_length] if value_length < 8192 else _zigzag_varint(value_length),
        value,
    )
    record_length = len(record)
    length = small[record_length] if record_length < 8192 else _zigzag_varint(record_length)
    size = record_length + len(length)
    buffer = builder._buffer
    if size + len(buffer) > builder._batch_size and offset:  # the first record goes in whatever its size
        return None
    if builder._max_timestamp < timestamp_ms:
        builder._max_timestamp = timestamp_ms
    builder._num_records += 1
    builder._last_offset = offset
    buffer += length
    buffer += record
    records._next_offset = offset + 1
    return offset, size


def _producer_config(settings: Settings) -> dict:
    config = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        # An explicit version keeps the constructor from contacting Kafka, so a worker starts even while the
        # broker is down; each connection still negotiates down to what its broker supports.
        "api_version": settings.api_version,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "max_in_flight_requests_per_connection": settings.max_in_flight,
        "batch_size": settings.batch_size,
        "compression_type": None if settings.compression_type == "none" else settings.compression_type,
        "max_request_size": settings.max_request_size,
        "max_block_ms": settings.max_block_ms,
        "request_timeout_ms": settings.request_timeout_ms,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "reconnect_backoff_max_ms": 1000,
        # kafka-python's own metrics cost the I/O thread about 5 us a message and nothing here reads them.
        "metrics_enabled": False,
        "partitioner": KeyHashCachingPartitioner(),
        "selector": _io_selector(),
        "security_protocol": settings.security_protocol,
    }
    # Only the options the protocol uses (Settings.check() refuses the others).
    if settings.security_protocol.startswith("SASL_"):
        config.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_password)
    if settings.security_protocol.endswith("SSL"):
        config["ssl_check_hostname"] = settings.ssl_check_hostname
        # Without a CA file kafka-python trusts the system's default CAs.
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key) is not None:
                config[key] = getattr(settings, key)
        if settings.ssl_certfile is not None:
            # OpenSSL asks a terminal for the pass phrase of an encrypted key when given none: a worker started
            # from a shell would wait there for good. A callable answers instead (called only for such a key).
            config["ssl_password"] = (settings.ssl_key_password if settings.ssl_key_password is not None
                                      else _no_key_password)
    return config


def _no_key_password() -> bytes:
    """The pass phrase OpenSSL gets for an encrypted key when KAFKA_SSL_KEY_PASSWORD is unset: none."""
    _KEY_PASSWORD_LOG.error("KAFKA_SSL_KEYFILE (or KAFKA_SSL_CERTFILE) holds an encrypted private key: "
                            "set KAFKA_SSL_KEY_PASSWORD or KAFKA_SSL_KEY_PASSWORD_FILE")
    return b""


class _CoalescedWakeup:
    """Wakes kafka-python's I/O thread with one byte however many threads ask before it next looks.

    kafka-python 3.0.12 wakes its I/O thread (a byte on a socketpair) after every send() that finds more than one
    batch queued for its partition, which under load is nearly every send(): a system call in the sending thread
    and a turn of the I/O loop for each message, about a third of the client's CPU per message here. A wake-up
    asked for while an earlier byte is still unread changes nothing the I/O thread would see, so it is skipped.
    The flag is cleared just after the I/O thread read the byte; whatever a skipped wake-up was for was done
    before that, so the loop turn that follows the read sees it.
    """

    def __init__(self, selector):
        self._selector = selector
        self._unread = False
        self._process_events = selector._process_events
        selector.wakeup = self.wakeup
        selector._process_events = self.process_events

    def wakeup(self) -> None:
        """Write the wake-up byte unless one is already waiting to be read."""
        if self._unread:
            return
        self._unread = True
        try:
            self._selector._wakeup_w.send(b"\x00")
        except OSError:  # full (cannot happen with one byte at a time) or closed: ignored, as kafka-python does
            self._unread = False  # no byte went out, so the next wake-up must try again

    def process_events(self, events) -> None:
        """Let kafka-python handle the ready sockets; once it has read the wake-up byte, clear the flag."""
        wakeup_socket = self._selector._wakeup_r
        woken = any(key.fileobj is wakeup_socket for key, _ in events)
        self._process_events(events)
        if woken:
            # Only after the read: cleared before it, a byte written in between would be read with the flag
            # still set, and the wake-ups skipped after that read would wait for a byte nobody writes.
            self._unread = False


async def _write_to_sock_sending_first(self) -> None:
    """kafka-python's KafkaTCPTransport._write_to_sock, trying the send before waiting for the socket.

    kafka-python 3.0.12 waits for the socket to be writable before every request it sends, although a connected
    socket almost always is: one more turn of its I/O loop (about 150 us of CPU here) and two epoll changes per
    produce request, a tenth of a single message's cost. This tries the send first and waits only for what the
    socket did not take. Writes start only once the connection (and its TLS handshake) is complete.
    """
    try:
        while self._write_buffer:
            total_bytes, err = self._sock_send()
            if err:
                return self.abort(error=err)
            if total_bytes:
                self.last_write = time.monotonic()
                if self._protocol and self._protocol._sensors:
                    self._protocol._sensors.bytes_sent.record(total_bytes)
            if self._write_buffer:
                await self._net.wait_write(self._sock)
    finally:
        self._writing = False
    if self._closed:
        self._close()
    elif not self._write:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


_RECEIVE_SIZE = 4096  # as kafka-python reads


def _sock_recv_until_short(self) -> tuple[bytes, Exception | None]:
    """kafka-python's KafkaTCPTransport._sock_recv, stopping at a read shorter than asked for.

    kafka-python 3.0.12 reads a readable socket until a read fails with EAGAIN: one more system call and one
    more raised exception for every response, and the system call lets go of the GIL, which the I/O thread then
    queues for behind the request threads before it can handle the response. A read that returns less than
    asked for has emptied the socket's buffer when it ran; what arrives after it makes the socket readable again,
    and the next select() reports it. (The TLS transport has its own reader, which must read on: the TLS layer can
    hold decrypted bytes the socket no longer shows.)
    """
    received = []
    while True:
        try:
            data = self._sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            break
        except Exception as error:  # noqa: BLE001 - kafka-python's reader turns this into closing the connection
            log.exception("%s: Error receiving network data closing socket", self)
            return b"".join(received), kafka_errors.KafkaConnectionError(error)
        if not data:
            log.error("%s: socket disconnected", self)
            return b"".join(received), kafka_errors.KafkaConnectionError("socket disconnected")
        received.append(data)
        if len(data) < _RECEIVE_SIZE:
            break
    return b"".join(received), None


# Every connection of kafka-python in this process (pinned version), the SSL transport's included.
_write_to_sock_as_shipped = KafkaTCPTransport._write_to_sock  # the benchmark's ceiling A0 puts it back
KafkaTCPTransport._write_to_sock = _write_to_sock_sending_first
# Plain-TCP connections only: KafkaSSLTransport overrides _sock_recv with its own.
_sock_recv_as_shipped = KafkaTCPTransport._sock_recv
KafkaTCPTransport._sock_recv = _sock_recv_until_short


def _new_kafka_producer(settings: Settings, **options) -> KafkaProducer:
    """A KafkaProducer with the service's settings, wake-ups coalesced and no spinning (pinned version)."""
    producer = KafkaProducer(**_producer_config(settings), **options)
    network = producer._sender._client._net
    _CoalescedWakeup(network)
    _wait_while_requests_fill_the_connection(producer._sender._client)
    return producer


def _wait_while_requests_fill_the_connection(client) -> None:
    """Make kafka-python's I/O thread wait for a response, not spin, while a broker has all the requests it may.

    kafka-python 3.0.12 stops sending to a connection that has max_in_flight_requests_per_connection requests
    unanswered, and then asks connection_delay() how long to wait before it tries again. For a connected broker
    that answers 0 (kafka-python 2 answered "as long as it takes"), so the I/O thread polls with no timeout and
    turns its loop without a pause until a response comes: under load, whenever data waits behind the requests
    in flight. The wait still ends at once when a response arrives, a batch expires or a timer is due.
    """
    manager, connection_delay = client._manager, client.connection_delay

    def connection_delay_not_zero_when_connected(node_id):
        connection = manager._conns.get(node_id)
        if connection is not None and connection.connected:
            return float("inf")
        return connection_delay(node_id)

    client.connection_delay = connection_delay_not_zero_when_connected


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
    # kafka-python fails a producer-id or transaction request it cannot classify, a request timeout included, with
    # a plain KafkaError and a fatal state; the service replaces such a producer, so a retry can succeed.
    if (isinstance(error, (kafka_errors.RetriableError, kafka_errors.IllegalStateError))
            or type(error) is kafka_errors.KafkaError):
        return KafkaUnavailable(f"Failed to produce message: Kafka is unavailable: {text}")
    return KafkaRejected(f"Failed to produce message: Kafka refused the message: {text}")


class MessageProducer:
    """A kafka-python KafkaProducer (acks=all, idempotent) that sends messages and waits for Kafka's answer."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._producer = _new_kafka_producer(settings)
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
        placement = _Placement(self._check_destinations(messages, producer))
        self._reserve(len(messages))
        now = time.monotonic()
        deadline = now + self._settings.delivery_timeout_ms / 1000 + 0.25
        if not wait:
            outcomes: list = []  # a future per message, or the exception sending it raised
            try:
                for message in messages:
                    try:
                        outcomes.append(_append(producer, message, placement, now))
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
            outcomes = _append_all_waited(producer, messages, placement, now)  # a slot or an exception per message
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
            with _blocking_at_most(producer, budget.left_to_start()):  # a topic's metadata, if not known yet
                futures = [
                    producer.send(message.topic, value=message.value, key=message.key,
                                  partition=message.partition, timestamp_ms=message.timestamp_ms)
                    for message in messages
                ]
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
                    error = _as_api_error(failure, message.topic)
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
            api_error = _as_api_error(error, messages[0].topic)
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
            _end_transaction(producer, commit=True, timeout_s=timeout_s)
        except kafka_errors.KafkaTimeoutError:
            # The commit request may have reached the coordinator: the transaction may still be committed.
            raise DeliveryTimeout(
                f"Failed to produce batch: Timed out after {round(timeout_s * 1000)} ms waiting for Kafka to commit "
                "the transaction; it may or may not have been committed (all messages or none)"
            ) from None

    def _discard_transactional(self, producer: KafkaProducer) -> None:
        """Abort the open transaction in the background and start the next one from a fresh producer.

        kafka-python 3.0.12 can leave a transactional producer in a state it cannot leave after an abort (seen:
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
            producer = _new_kafka_producer(self._settings, transactional_id=transactional_id)
            waited_ms = min(self._settings.max_block_ms, round(budget.left_to_start() * 1000))
            try:
                with _blocking_at_most(producer, waited_ms / 1000):
                    producer.init_transactions()
            except kafka_errors.KafkaTimeoutError:
                _close_quietly(producer, 0.0)
                # Nothing of the request was sent yet, so this is "unavailable", not "may or may not".
                raise KafkaUnavailable(
                    f"Failed to produce batch: Kafka's transaction coordinator did not answer within "
                    f"{waited_ms} ms (KAFKA_MAX_BLOCK_MS, or what the request had left of it); nothing was written"
                ) from None
            except kafka_errors.KafkaError as error:
                _close_quietly(producer, 0.0)
                raise _as_api_error(error, "transactions") from None
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
        unsettled = [outcome for outcome in outcomes
                     if not isinstance(outcome, Exception) and not outcome.produce_future.is_done]
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
        elif _has_fatal_error(producer):
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
        elif any(delivery.error for delivery in deliveries) and _has_fatal_error(producer):
            self._replace(producer)

    def _replace(self, stuck: KafkaProducer) -> None:
        """Swap in a fresh KafkaProducer after a delivery timed out or the producer failed for good.

        kafka-python 3.0.12 leaves an idempotent producer unusable in two cases seen here: when a batch it had
        sent expires, it resets its producer id and never obtains a new one, so every later send hangs until it
        expires even once the broker is back (broker paused with SIGSTOP); and when the broker rejects a record
        as too large for its topic, it enters a fatal state and fails every later send to any topic at once.
        A new producer gets a new id. The old one keeps its queue for one more delivery timeout before it is
        closed; what it still holds then fails as it would have anyway.
        """
        with self._replace_lock:
            if self._producer is not stuck:
                return  # another request already replaced it
            self._producer = _new_kafka_producer(self._settings)
        log.warning("replaced the Kafka producer after a delivery timeout or a fatal producer error")
        metrics.RECONNECTS.inc()
        grace = self._settings.delivery_timeout_ms / 1000
        threading.Thread(target=_close_quietly, args=(stuck, grace), daemon=True).start()

    def _await(self, message: OutgoingMessage, outcome, deadline: float) -> Delivery:
        if isinstance(outcome, Exception):
            return self._failed(message, outcome)
        if not outcome.wait(deadline):
            # Still queued, so it may yet be sent (a producer waiting for its producer id holds batches unexpired).
            return self._failed(message, kafka_errors.KafkaTimeoutError(
                f"Timeout after waiting for {self._settings.delivery_timeout_ms / 1000 + 0.25:g} secs."))
        offset = outcome.outcome()
        if isinstance(offset, kafka_errors.KafkaTimeoutError) and outcome.never_sent:
            # kafka-python expired the batch, which takes it out of its queue, before any produce request carried
            # it (no broker connection the whole time, refused, say): not "may or may not", certainly not written.
            return Delivery(message, error=KafkaNotReached(
                f"Failed to produce message: No broker took the message within {self._settings.delivery_timeout_ms} "
                f"ms (KAFKA_DELIVERY_TIMEOUT_MS): Kafka is unreachable, nothing was written"))
        if isinstance(offset, Exception):
            return self._failed(message, offset)
        return Delivery(message, outcome.produce_future.topic_partition.partition, offset)

    @staticmethod
    def _failed(message: OutgoingMessage, error: Exception) -> Delivery:
        return Delivery(message, error=_as_api_error(error, message.topic))

    def _check_destinations(self, messages: list[OutgoingMessage], producer: KafkaProducer) -> dict[str, set[int]]:
        """Refuse the whole request before anything is sent if any message cannot be written as asked.

        Returns each topic's partitions, as the cluster metadata had them.
        """
        partitions_by_topic: dict[str, set[int]] = {}
        limit = self._settings.max_request_size
        for index, message in enumerate(messages):
            payload = len(message.value) if message.key is None else len(message.value) + len(message.key)
            if payload + _MOST_RECORD_OVERHEAD > limit:  # only then is the exact size worth its 1 us a message
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
        # A broker that answers with an error about a topic is still an answering broker; a request that timed
        # out is kafka-python's own verdict, not an answer, whatever error class it uses for it.
        error = future.exception
        return future.succeeded() or (isinstance(error, kafka_errors.BrokerResponseError)
                                      and not isinstance(error, kafka_errors.RequestTimedOutError))

    def close(self, timeout: float) -> None:
        """Flush what is queued and close, waiting at most timeout seconds."""
        if self._transactional is not None:
            _close_quietly(self._transactional, 0.0)
        _close_quietly(self._producer, timeout)


# What DefaultRecordBatchBuilder.estimate_size_in_bytes adds at most to a record's key and value (no headers):
# the batch header, the record's overhead and both lengths as 5-byte varints.
_MOST_RECORD_OVERHEAD = (DefaultRecordBatchBuilder.HEADER_STRUCT.size + DefaultRecordBatchBuilder.MAX_RECORD_OVERHEAD
                         + 5 + 5 + 1)


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


def _end_transaction(producer: KafkaProducer, commit: bool, timeout_s: float) -> None:
    """commit_transaction() or abort_transaction(), but waiting at most timeout_s (pinned version).

    kafka-python 3.0.12 waits for the coordinator's answer to either with no timeout, so a coordinator that stops
    answering would hold the request thread, and the worker's transaction lock, for good.
    """
    manager = producer._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise kafka_errors.KafkaTimeoutError(f"Timeout after waiting for {timeout_s:g} secs.")


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


@contextmanager
def _blocking_at_most(producer: KafkaProducer, seconds: float):
    """Within the block, let init_transactions() and send() wait for Kafka at most seconds (pinned version).

    kafka-python reads max_block_ms from its config at each of those calls; an atomic batch shares one deadline
    among them. Only the thread holding the worker's transaction lock uses the transactional producer.
    """
    configured = producer.config["max_block_ms"]
    producer.config["max_block_ms"] = max(1, min(configured, round(seconds * 1000)))
    try:
        yield
    finally:
        producer.config["max_block_ms"] = configured


def _abort_and_close(producer: KafkaProducer, timeout_s: float) -> None:
    """Abort a transactional producer's open transaction, waiting at most timeout_s, then close the producer."""
    try:
        _end_transaction(producer, commit=False, timeout_s=timeout_s)
    except kafka_errors.KafkaError as error:
        log.warning("could not abort the transaction (%s); the next producer's fencing aborts it", error)
    _close_quietly(producer, 0.0)


def _has_fatal_error(producer: KafkaProducer) -> bool:
    """Whether kafka-python has put this idempotent producer in a state it never leaves (pinned version)."""
    manager = producer._transaction_manager
    return manager is not None and manager.has_fatal_error()


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
