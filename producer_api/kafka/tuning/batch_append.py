"""A request's records appended straight into kafka-python's batches, and the slots a waiting request waits on.

Replaces, for the service's own sends, kafka.KafkaProducer.send, kafka.producer.record_accumulator.
RecordAccumulator.append, kafka.producer.producer_batch.ProducerBatch.try_append and kafka.record.
memory_records.MemoryRecordsBuilder.append (kafka-python 3.0.12): what they do per record, done once per request
and batch. tests/unit/kafka/tuning/test_batch_append.py builds batches both ways and compares them.
"""

from __future__ import annotations

import random
import threading
import time

import kafka.errors as kafka_errors
from kafka import KafkaProducer, TopicPartition
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import encode_varint

from producer_api.core import turns
from producer_api.core.messages import OutgoingMessage
from producer_api.kafka.partitioner import partition_for_key


class Placement:
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
            return partition_for_key(message.key, partitions)
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


def append_queued(producer: KafkaProducer, message: OutgoingMessage, placement: Placement, now: float):
    """producer.send() for a message the request's checks accepted, without the checks it already made.

    A third of send()'s cost is re-checking per message what a request checks once: that the producer is open,
    the headers, serializers, topic metadata, the partition and the size; and formatting a debug line nobody
    logs. What is left is kafka-python's own: append the record to its partition's batch, and wake the I/O thread
    when the batch is new or full. Returns kafka-python's FutureRecordMetadata, as send() does.
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


class RecordSlot:
    """Where one waited-for record sits: the future of the batch kafka-python put it in, and its index there.

    Stands in for kafka-python's per-record FutureRecordMetadata when a request waits for its messages. That future
    costs the sending thread its creation and a callback on the batch's future, and the I/O thread a call per
    record when the batch completes; what a request needs from it, the offset, is the batch's base offset plus the
    record's index. kafka-python moves records into smaller batches when a broker refuses a batch as too large, and
    tells each record through rebind().
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

    @property
    def is_done(self) -> bool:
        """True once the record's batch completed."""
        return self.produce_future.is_done

    def wait(self, deadline: float) -> bool:
        """Wait until the record's batch completed or the deadline passed; True if it completed."""
        while not self.produce_future.is_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.produce_future.wait(remaining)
        return True

    def result(self):
        """(partition, offset) Kafka gave the record, or the exception that kept it out (once its batch completed)."""
        future = self.produce_future
        if future.exception is not None:
            return future.exception
        base_offset, _, record_errors = future.value
        if record_errors is not None:
            return record_errors(self.index)
        return future.topic_partition.partition, base_offset + self.index


_SLOT_CALLBACK_LOCK = threading.Lock()  # a late callback and a batch split must not miss each other


def append_waited(producer: KafkaProducer, messages: list[OutgoingMessage], placement: Placement,
                  now: float) -> list:
    """Append a waiting request's records, each with a RecordSlot; returns a slot or an exception per message.

    What RecordAccumulator.append does per record, done per partition and batch: a record joins its partition's
    last batch, or a new batch once that one is full, and the I/O thread is woken when a batch is new or full.
    append() takes the partition's lock and twice the accumulator's count of appending threads for every record;
    under load the request threads queue on them. The lock is let go after each batch, so that the I/O thread
    can send a full batch while the next one fills.
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
                if len(messages) > turns.YIELD_EVERY:
                    turns.give_turn()  # and to the I/O greenlet, to send the batch just filled
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


def _append_to_batch(batch: ProducerBatch, message: OutgoingMessage, now: float) -> RecordSlot | None:
    """ProducerBatch.try_append with a RecordSlot for the record; None when the batch is full."""
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
    slot = RecordSlot(batch, offset)
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

    kafka-python encodes a record's six variable-length integers one byte-append call at a time and checks every
    argument's type; here the same bytes are built in one formatting call with the integers looked up
    (tests/unit/kafka/tuning/test_batch_append.py checks both build the same batches).
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
