"""kafka-python as the service builds it: coalesced wake-ups, the key-hash cache, socket writes and reads."""

import selectors
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.selector import KernelEvent
from kafka.net.transport import KafkaTCPTransport
from kafka.partitioner import DefaultPartitioner

from producer_api.kafka_producer.client import (
    KeyHashCachingPartitioner,
    _CoalescedWakeup,
    _wait_while_requests_fill_the_connection,
)
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


def test_a_connected_broker_is_waited_for_and_a_disconnected_one_keeps_its_backoff():
    connections = {1: SimpleNamespace(connected=True), 2: SimpleNamespace(connected=False)}
    client = SimpleNamespace(_manager=SimpleNamespace(_conns=connections), connection_delay=lambda node_id: 0.25)
    _wait_while_requests_fill_the_connection(client)
    assert client.connection_delay(1) == float("inf")  # every request in flight: wait for a response
    assert client.connection_delay(2) == 0.25  # reconnecting: kafka-python's own backoff
    assert client.connection_delay(3) == 0.25  # no connection yet


def test_kafka_pythons_io_loop_waits_on_epoll_unless_gevent_took_it_away(monkeypatch):
    import select

    from producer_api.kafka_producer.client import _io_selector
    from producer_api.selector import DeferredUnregisterSelector

    assert _io_selector() is DeferredUnregisterSelector
    monkeypatch.delattr(select, "epoll")  # what gevent's patching does: a real epoll wait would stop the worker
    assert _io_selector() is selectors.DefaultSelector
