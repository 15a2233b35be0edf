"""The kernel receive and send timeouts a gthread worker's connections get (no gunicorn process needed)."""

import socket
import struct
import time
from types import SimpleNamespace

import pytest

from producer_api.client_timeout import ClientTimeout


class FakeWorker:
    """The attributes ClientTimeout.install looks for, and a handle() that records what it served."""

    def __init__(self):
        self.tpool, self.nr_conns, self.served = object(), 0, []

    def handle(self, conn):
        self.served.append(conn)
        return True


@pytest.fixture
def connection():
    """A connected socket pair: gunicorn's side wrapped like its TConn, and the client's side."""
    server_side, client_side = socket.socketpair()
    yield SimpleNamespace(sock=server_side), client_side
    server_side.close()
    client_side.close()


def test_a_served_connection_reads_and_writes_with_the_timeouts(connection):
    conn, client = connection
    worker = FakeWorker()
    assert ClientTimeout.install(worker, 0.25) is True
    assert worker.handle(conn) is True and worker.served == [conn]
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        seconds, microseconds = struct.unpack("ll", conn.sock.getsockopt(socket.SOL_SOCKET, option, 16))
        assert seconds + microseconds / 1e6 == pytest.approx(0.25, abs=0.01)
    client.sendall(b"GET / HTTP/1.1\r\n")  # part of a request, then nothing
    assert conn.sock.recv(100) == b"GET / HTTP/1.1\r\n"
    started = time.monotonic()
    with pytest.raises(BlockingIOError):  # what gunicorn's reader gets instead of waiting for good
        conn.sock.recv(100)
    assert 0.2 <= time.monotonic() - started < 2


def test_other_workers_are_left_alone():
    sync_worker = SimpleNamespace(handle=lambda conn: True)
    assert ClientTimeout.install(sync_worker, 1) is False
