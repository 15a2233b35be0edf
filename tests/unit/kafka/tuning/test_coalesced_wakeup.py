"""One wake-up byte for kafka-python's I/O thread however many threads ask before it reads it."""

import selectors
import socket
from types import SimpleNamespace

import pytest

from producer_api.kafka.tuning import coalesced_wakeup
from producer_api.kafka.tuning.coalesced_wakeup import CoalescedWakeup


class FakeSelector:
    """The parts of kafka-python's NetworkSelector that CoalescedWakeup touches: a wake-up socketpair."""

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
    CoalescedWakeup(selector)
    for _ in range(100):
        selector.wakeup()
    assert unread_bytes(selector) == 1


def test_a_wakeup_after_the_byte_was_read_writes_again(selector):
    CoalescedWakeup(selector)
    selector.wakeup()
    selector._process_events(selector.ready_events())
    assert selector.bytes_read_before_each_handling == [1]
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_events_without_the_wakeup_socket_keep_later_wakeups_coalesced(selector):
    CoalescedWakeup(selector)
    selector.wakeup()
    selector._process_events([])  # another socket was ready; the byte is still unread
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_a_wakeup_while_the_byte_is_being_read_is_not_lost(selector):
    """The race a flag cleared before the read loses: a byte written during the read is read with it."""
    coalesced = CoalescedWakeup(selector)
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
    CoalescedWakeup(selector)
    working = selector._wakeup_w
    selector._wakeup_w = socket.socket()  # not connected: send() fails
    selector.wakeup()  # no exception
    selector._wakeup_w.close()
    selector._wakeup_w = working
    selector.wakeup()
    assert unread_bytes(selector) == 1


def test_apply_coalesces_the_wakeups_of_the_producers_network_selector(selector):
    producer = SimpleNamespace(_sender=SimpleNamespace(_client=SimpleNamespace(_net=selector)))
    coalesced_wakeup.apply(producer)
    assert isinstance(selector.wakeup.__self__, CoalescedWakeup)
    for _ in range(10):
        selector.wakeup()
    assert unread_bytes(selector) == 1
