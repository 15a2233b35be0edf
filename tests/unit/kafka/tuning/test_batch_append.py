"""A request's records appended to kafka-python's batches: the bytes built, the slots, splits and failures."""

import threading
import time

import pytest
from kafka.errors import IllegalStateError, MessageSizeTooLargeError
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.record.memory_records import MemoryRecordsBuilder

from producer_api.core.messages import OutgoingMessage
from producer_api.kafka.tuning.batch_append import Placement, _append_record, append_waited


def records_built(append, records: list, batch_size: int = 16384, compression: int = 0) -> tuple[bytes, list]:
    """A v2 batch built by append from (timestamp, key, value) records, and what each append returned."""
    builder = MemoryRecordsBuilder(2, compression, batch_size)
    results = [append(builder, *record) for record in records]
    builder.close()
    return bytes(builder.buffer()), results


def kafka_pythons_append(builder, timestamp, key, value):
    metadata = builder.append(timestamp, key, value, [])
    return None if metadata is None else (metadata.offset, metadata.size)


@pytest.mark.parametrize("compression", [0, 1])  # none, gzip: a compressed batch appends the same records
def test_records_appended_directly_build_the_batch_kafka_python_builds(compression):
    now = 1_764_300_000_000
    records = [
        (now, b"user-1", b'{"a":1}'),
        (now, None, b"v" * 300),  # no key
        (now - 5, b"k", b"earlier than the first record"),  # a negative timestamp delta
        (now + 9_000, b"k" * 9_000, b"x"),  # a delta, a key length beyond the table of small varints
        (now + 1, b"", b""),  # empty key and value
        (now + 2, b"k", bytes(range(256)) * 40),  # a 10 KiB value: the batch is full
        (now + 3, b"k", b"fits"),
    ]
    ours, our_results = records_built(_append_record, records, compression=compression)
    theirs, their_results = records_built(kafka_pythons_append, records, compression=compression)
    assert our_results == their_results and None in our_results
    assert ours == theirs


def test_a_record_larger_than_the_batch_size_goes_into_an_empty_batch_alone():
    huge = (1_764_300_000_000, b"k", b"v" * 20_000)
    ours, our_results = records_built(_append_record, [huge, huge], batch_size=1024)
    theirs, their_results = records_built(kafka_pythons_append, [huge, huge], batch_size=1024)
    assert our_results == their_results and our_results[1] is None
    assert ours == theirs


def test_many_records_keep_offsets_past_the_table_of_small_varints():
    records = [(1_764_300_000_000 + index, b"k", b"v") for index in range(9_000)]
    ours, _ = records_built(_append_record, records, batch_size=1 << 20)
    theirs, _ = records_built(kafka_pythons_append, records, batch_size=1 << 20)
    assert ours == theirs


class FakeSender:
    def __init__(self):
        self.wakeups = 0

    def wakeup(self):
        self.wakeups += 1


class FakeProducer:
    """The parts of a KafkaProducer that a waited append touches: its accumulator and its sender's wake-up."""

    def __init__(self, batch_size: int = 16384):
        self._closed = False
        self._accumulator = RecordAccumulator(batch_size=batch_size)
        self._sender = FakeSender()

    def append(self, count: int, start: int = 0, size: int = 10) -> list:
        messages = [OutgoingMessage("t", None, b"%d" % n + b"x" * size, 0, 1_700_000_000_000, "")
                    for n in range(start, start + count)]
        return append_waited(self, messages, Placement({"t": {0}}), time.monotonic())

    def batches(self) -> list:
        return list(self._accumulator._batches[next(iter(self._accumulator._batches))])


def settled_in_time(slot, seconds: float = 5.0) -> bool:
    return slot.wait(time.monotonic() + seconds)


def test_a_waited_requests_records_share_a_batch_and_read_their_offsets_from_it():
    producer = FakeProducer()
    slots = producer.append(3)
    [batch] = producer.batches()
    assert producer._sender.wakeups == 1  # the new batch; records joining it do not wake the I/O thread
    assert batch.record_count == 3 and batch._record_futures == slots
    assert not any(slot.is_done for slot in slots)
    batch.complete(100, -1)
    assert all(settled_in_time(slot) for slot in slots) and all(slot.is_done for slot in slots)
    assert [slot.result() for slot in slots] == [(0, 100), (0, 101), (0, 102)]
    assert slots[0].produce_future.topic_partition.partition == 0


def test_a_full_batch_starts_the_next_and_wakes_the_io_thread():
    producer = FakeProducer(batch_size=200)
    slots = producer.append(20)
    first, *others = producer.batches()
    assert others and producer._sender.wakeups >= 1 + len(others)
    assert [slot.index for slot in slots[:first.record_count]] == list(range(first.record_count))
    assert slots[first.record_count].index == 0 and slots[first.record_count].produce_future is not first.produce_future


def test_records_for_several_partitions_keep_the_requests_order_in_each():
    producer = FakeProducer()
    messages = [OutgoingMessage("t", None, b"%d" % n, n % 2, 1_700_000_000_000, "") for n in range(6)]
    slots = append_waited(producer, messages, Placement({"t": {0, 1}}), time.monotonic())
    assert [(slot.produce_future.topic_partition.partition, slot.index) for slot in slots] == [
        (0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert producer._sender.wakeups == 2  # one new batch per partition


def test_a_closed_producer_takes_no_record():
    producer = FakeProducer()
    producer._closed = True
    outcomes = producer.append(3)
    assert all(isinstance(outcome, IllegalStateError) for outcome in outcomes)
    assert not producer._accumulator._batches or not producer.batches()


def test_each_record_of_a_failed_batch_gets_its_own_error():
    producer = FakeProducer()
    slots = producer.append(2)
    [batch] = producer.batches()
    batch.complete_exceptionally(MessageSizeTooLargeError(), lambda index: MessageSizeTooLargeError(f"record {index}"))
    assert [str(slot.result()) for slot in slots] == [str(MessageSizeTooLargeError(f"record {n}")) for n in (0, 1)]


def test_a_record_not_settled_by_the_deadline_is_reported_as_such():
    [slot] = FakeProducer().append(1)
    started = time.monotonic()
    assert slot.wait(started + 0.05) is False
    assert 0.04 <= time.monotonic() - started < 1


def test_a_record_moved_by_a_batch_split_is_followed_by_its_waiter_and_its_callback():
    producer = FakeProducer()
    slots = producer.append(4)
    [batch] = producer.batches()
    settled = []
    slots[3].settle_later(lambda *_: settled.append("late record"))
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(settled_in_time(slots[3]) and slots[3].result()))
    waiter.start()
    producer._accumulator._batches[batch.topic_partition].clear()  # drained and sent, as the I/O thread does
    batch.records.close()
    producer._accumulator.split_and_reenqueue(batch)  # what kafka-python does when the broker says too large
    first_half, second_half = producer.batches()
    assert slots[3].produce_future is second_half.produce_future and slots[3].index == 1
    first_half.complete(10, -1)
    second_half.complete(20, -1)
    waiter.join(5)
    assert outcome == [(0, 21)] and settled == ["late record"]
    assert [slot.result() for slot in slots] == [(0, 10), (0, 11), (0, 20), (0, 21)]
