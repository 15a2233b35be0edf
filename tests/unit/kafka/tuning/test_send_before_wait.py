"""kafka-python's socket writes try the send before waiting for the socket to be writable."""

import socket

import pytest
from kafka.net.selector import KernelEvent
from kafka.net.transport import KafkaTCPTransport

from producer_api.kafka.tuning import send_before_wait
from tests.unit.conftest import received


class FakeNetwork:
    """What a transport asks of kafka-python's NetworkSelector: scheduling its write task, and waits."""

    def __init__(self):
        self.scheduled = []

    def call_soon(self, task):
        self.scheduled.append(task)

    def wait_write(self, fileobj):
        return KernelEvent("_wait_write", fileobj)


@pytest.fixture
def connected_transport(monkeypatch):
    """A transport on one end of a socketpair, written as the tuning writes (installed for this test only)."""
    monkeypatch.setattr(KafkaTCPTransport, "_write_to_sock", send_before_wait.write_to_sock_sending_first)
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


def test_kafka_pythons_own_write_waits_for_the_socket_first(connected_transport, monkeypatch):
    # What the tuning saves: as shipped, even a write the socket would take at once waits for it to be writable.
    monkeypatch.setattr(KafkaTCPTransport, "_write_to_sock", send_before_wait.AS_SHIPPED)
    transport, network, peer = connected_transport
    transport.write(b"request-1")
    event = network.scheduled.pop()().send(None)
    assert isinstance(event, KernelEvent) and event.method == "_wait_write" and received(peer) == b""
