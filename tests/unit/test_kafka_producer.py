"""The producer wrapper's changes to kafka-python: wake-ups, the key-hash cache, socket writes, slots."""

import dataclasses
import selectors
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from kafka.errors import IllegalStateError, KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future
from kafka.net.selector import KernelEvent
from kafka.net.transport import KafkaTCPTransport
from kafka.partitioner import DefaultPartitioner
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder

from producer_api import kafka_producer
from producer_api.errors import DeliveryTimeout, KafkaUnavailable, TooManyPending
from producer_api.kafka_producer import (
    _MOST_RECORD_OVERHEAD,
    KeyHashCachingPartitioner,
    MessageProducer,
    _append_all_waited,
    _append_record,
    _CoalescedWakeup,
    _end_transaction,
    _Placement,
    _TransactionBudget,
    _wait_while_requests_fill_the_connection,
)
from producer_api.messages import OutgoingMessage
from tests.unit.conftest import received


class FakeSelector:
    """The parts of kafka-python's NetworkSelector that _CoalescedWakeup touches: a wake-up socketpair."""

    def __init__(self):
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self.bytes_read_before_each_handling = []

    def wakeup(self):
        self._wakeup_w.send(b"\x00")

    def _process_events(self, events):
        read = 0
        for key, _ in events:
            if key.fileobj is self._wakeup_r:
                read += len(self._wakeup_r.recv(1024))
        self.bytes_read_before_each_handling.append(read)

    def ready_events(self):
        """What select() would return for the wake-up socket right now."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wakeup_r, selectors.EVENT_READ)
            return selector.select(0)

    def close(self):
        self._wakeup_r.close()
        self._wakeup_w.close()


@pytest.fixture
def selector():
    fake = FakeSelector()
    yield fake
    fake.close()


def unread_bytes(selector: FakeSelector) -> int:
    try:
        return len(selector._wakeup_r.recv(1024, socket.MSG_PEEK))
    except BlockingIOError:
        return 0


def test_wakeups_before_the_io_thread_reads_write_one_byte(selector):
    _CoalescedWakeup(selector)
    for _ in range(100):
        selector.wakeup()
    assert unread_bytes(selector) == 1


def test_a_wakeup_after_the_byte_was_read_writes_again(selector):
    _CoalescedWakeup(selector)
    selector.wakeup()
    selector._process_events(selector.ready_events())
    assert selector.bytes_read_before_each_handling == [1]
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_events_without_the_wakeup_socket_keep_later_wakeups_coalesced(selector):
    _CoalescedWakeup(selector)
    selector.wakeup()
    selector._process_events([])  # another socket was ready; the byte is still unread
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_a_wakeup_while_the_byte_is_being_read_is_not_lost(selector):
    """The race a flag cleared before the read loses: a byte written during the read is read with it."""
    coalesced = _CoalescedWakeup(selector)
    selector.wakeup()
    original = coalesced._process_events

    def read_while_another_thread_wakes(events):
        selector.wakeup()  # another thread, between the I/O thread seeing the socket ready and reading it
        original(events)

    coalesced._process_events = read_while_another_thread_wakes
    selector._process_events(selector.ready_events())
    coalesced._process_events = original
    # Both the first byte and the in-between wake-up were read; the next wake-up must write a new byte.
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_a_failed_write_is_ignored_as_kafka_python_does_and_the_next_wakeup_tries_again(selector):
    _CoalescedWakeup(selector)
    working = selector._wakeup_w
    selector._wakeup_w = socket.socket()  # not connected: send() fails
    selector.wakeup()  # no exception
    selector._wakeup_w.close()
    selector._wakeup_w = working
    selector.wakeup()
    assert unread_bytes(selector) == 1


class FakeCluster:
    """The two questions a partitioner asks of kafka-python's cluster metadata."""

    def __init__(self, partitions: dict[str, set[int]]):
        self._partitions = partitions

    def topics(self):
        return set(self._partitions)

    def partitions_for_topic(self, topic):
        return self._partitions.get(topic)

    def available_partitions_for_topic(self, topic):
        return self._partitions.get(topic)


@pytest.mark.parametrize("partition_count", [1, 2, 3, 7, 12])
def test_keys_go_to_the_partitions_the_default_partitioner_chooses(partition_count):
    cluster = FakeCluster({"t": set(range(partition_count))})
    keys = [f"user-{n}".encode() for n in range(500)] + [b"", b"\xff" * 300, bytes(range(256))]
    ours, default = KeyHashCachingPartitioner(), DefaultPartitioner()
    for _ in range(2):  # the second round answers from the cache
        assert [ours.partition("t", key, key, b"v", b"v", cluster) for key in keys] == [
            default.partition("t", key, key, b"v", b"v", cluster) for key in keys
        ]


def test_keys_follow_the_java_clients_murmur2():
    # The Java client's murmur2 of these keys, from Apache Kafka's UtilsTest.testMurmur2 (as signed ints).
    cluster = FakeCluster({"t": {0, 1, 2}})
    partitioner = KeyHashCachingPartitioner()
    assert partitioner.partition("t", b"21", b"21", None, None, cluster) == (-973932308 & 0x7FFFFFFF) % 3
    assert partitioner.partition("t", b"foobar", b"foobar", None, None, cluster) == (-790332482 & 0x7FFFFFFF) % 3


def test_messages_without_a_key_use_a_known_partition():
    cluster = FakeCluster({"t": {0, 1, 2}})
    partitioner = KeyHashCachingPartitioner()
    assert {partitioner.partition("t", None, None, b"v", b"v", cluster) for _ in range(200)} == {0, 1, 2}


def test_a_topic_without_metadata_is_refused():
    with pytest.raises(ValueError):
        KeyHashCachingPartitioner().partition("unknown", b"k", b"k", b"v", b"v", FakeCluster({}))


class FakeNetwork:
    """What a transport asks of kafka-python's NetworkSelector: scheduling its write task, and waits."""

    def __init__(self):
        self.scheduled = []

    def call_soon(self, task):
        self.scheduled.append(task)

    def wait_write(self, fileobj):
        return KernelEvent("_wait_write", fileobj)


@pytest.fixture
def connected_transport():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    network = FakeNetwork()
    yield KafkaTCPTransport(network, ours), network, peer
    ours.close()
    peer.close()


def test_a_write_goes_out_without_waiting_for_the_socket(connected_transport):
    transport, network, peer = connected_transport
    transport.write(b"request-1")
    transport.write(b"request-2")
    write_task = network.scheduled.pop()()
    with pytest.raises(StopIteration):
        write_task.send(None)  # done at once: no KernelEvent to wait for the socket
    assert received(peer) == b"request-1request-2"
    assert transport._writing is False and not transport._write_buffer


def test_what_the_socket_does_not_take_waits_until_it_is_writable(connected_transport):
    transport, network, peer = connected_transport
    transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 8192  # 2 MiB, more than the socket buffers hold
    transport.write(data)
    write_task = network.scheduled.pop()()
    got, waits = [], 0
    event = write_task.send(None)
    while True:
        assert isinstance(event, KernelEvent) and event.method == "_wait_write"
        waits += 1
        got.append(received(peer))  # the peer reads, so the socket is writable again
        try:
            event = write_task.send(None)
        except StopIteration:
            break
    got.append(received(peer))
    assert waits >= 1 and b"".join(got) == data


class CountingSocket:
    """A socket whose recv() calls are counted."""

    def __init__(self, sock):
        self.sock = sock
        self.reads = 0

    def recv(self, size):
        self.reads += 1
        return self.sock.recv(size)


@pytest.mark.parametrize("size", [1, 100, 4095, 4096, 4097, 3 * 4096 + 5])
def test_a_read_takes_what_the_socket_holds_in_full_reads_and_one_short_one(connected_transport, size):
    transport, _, peer = connected_transport
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    peer.sendall(data)
    counting = transport._sock = CountingSocket(transport._sock)
    assert transport._sock_recv() == (data, None)
    assert counting.reads == size // 4096 + 1  # no read that ends in EAGAIN after a short one


def test_more_than_the_socket_holds_is_read_over_several_calls(connected_transport):
    transport, _, peer = connected_transport
    data = bytes(range(256)) * 1024  # 256 KiB
    writer = threading.Thread(target=lambda: (peer.setblocking(True), peer.sendall(data)), daemon=True)
    writer.start()
    got, deadline = b"", time.monotonic() + 10
    while len(got) < len(data) and time.monotonic() < deadline:
        chunk, error = transport._sock_recv()
        assert error is None
        got += chunk
    writer.join(timeout=5)
    assert got == data


def test_a_read_of_an_empty_socket_returns_nothing_and_of_a_closed_one_an_error(connected_transport):
    transport, _, peer = connected_transport
    assert transport._sock_recv() == (b"", None)
    peer.sendall(b"last words")
    peer.close()
    data, error = transport._sock_recv()
    assert data == b"last words" and error is None  # a short read: the close is seen on the next read
    data, error = transport._sock_recv()
    assert data == b"" and isinstance(error, KafkaConnectionError)


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


def test_a_connected_broker_is_waited_for_and_a_disconnected_one_keeps_its_backoff():
    connections = {1: SimpleNamespace(connected=True), 2: SimpleNamespace(connected=False)}
    client = SimpleNamespace(_manager=SimpleNamespace(_conns=connections), connection_delay=lambda node_id: 0.25)
    _wait_while_requests_fill_the_connection(client)
    assert client.connection_delay(1) == float("inf")  # every request in flight: wait for a response
    assert client.connection_delay(2) == 0.25  # reconnecting: kafka-python's own backoff
    assert client.connection_delay(3) == 0.25  # no connection yet


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
        return _append_all_waited(self, messages, _Placement({"t": {0}}), time.monotonic())

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
    batch.complete(100, -1)
    assert all(settled_in_time(slot) for slot in slots)
    assert [slot.outcome() for slot in slots] == [100, 101, 102]
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
    slots = _append_all_waited(producer, messages, _Placement({"t": {0, 1}}), time.monotonic())
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
    assert [str(slot.outcome()) for slot in slots] == [str(MessageSizeTooLargeError(f"record {n}")) for n in (0, 1)]


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
    waiter = threading.Thread(target=lambda: outcome.append(settled_in_time(slots[3]) and slots[3].outcome()))
    waiter.start()
    producer._accumulator._batches[batch.topic_partition].clear()  # drained and sent, as the I/O thread does
    batch.records.close()
    producer._accumulator.split_and_reenqueue(batch)  # what kafka-python does when the broker says too large
    first_half, second_half = producer.batches()
    assert slots[3].produce_future is second_half.produce_future and slots[3].index == 1
    first_half.complete(10, -1)
    second_half.complete(20, -1)
    waiter.join(5)
    assert outcome == [21] and settled == ["late record"]
    assert [slot.outcome() for slot in slots] == [10, 11, 20, 21]


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


def test_kafka_pythons_io_loop_waits_on_epoll_unless_gevent_took_it_away(monkeypatch):
    import select

    from producer_api.kafka_producer import _io_selector
    from producer_api.selector import DeferredUnregisterSelector

    assert _io_selector() is DeferredUnregisterSelector
    monkeypatch.delattr(select, "epoll")  # what gevent's patching does: a real epoll wait would stop the worker
    assert _io_selector() is selectors.DefaultSelector
