"""kafka-python's plain-TCP socket reads stop at a read shorter than asked for."""

import socket
import threading
import time

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaTCPTransport

from producer_api.kafka.tuning import recv_until_short


class FakeNetwork:
    """What a transport asks of kafka-python's NetworkSelector when it is made: nothing, for reads."""

    def call_soon(self, task):
        pass


@pytest.fixture
def connected_transport(monkeypatch):
    """A transport on one end of a socketpair, read as the tuning reads (installed for this test only)."""
    monkeypatch.setattr(KafkaTCPTransport, "_sock_recv", recv_until_short.sock_recv_until_short)
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    network = FakeNetwork()
    yield KafkaTCPTransport(network, ours), network, peer
    ours.close()
    peer.close()


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


def test_kafka_pythons_own_read_ends_only_at_a_read_that_finds_nothing(connected_transport, monkeypatch):
    # What the tuning saves: as shipped, a read that emptied the socket is followed by one that fails with EAGAIN.
    monkeypatch.setattr(KafkaTCPTransport, "_sock_recv", recv_until_short.AS_SHIPPED)
    transport, _, peer = connected_transport
    peer.sendall(b"short response")
    counting = transport._sock = CountingSocket(transport._sock)
    assert transport._sock_recv() == (b"short response", None)
    assert counting.reads == 2
