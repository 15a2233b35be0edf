"""A kept-alive connection's next request is served on the same thread, but never at other connections' cost."""

import io
import queue
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from producer_api.keepalive import KeepAliveOnThread


class FakeConnection:
    """The parts of gunicorn's TConn the wrapper reads: the socket, the parser's read-ahead buffer, HTTP/2."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.parser = SimpleNamespace(unreader=SimpleNamespace(buf=io.BytesIO()))
        self.is_http2 = False


class FakeWorker:
    """The parts of gunicorn's ThreadWorker the wrapper uses; handle() serves one one-byte 'request'."""

    def __init__(self, threads: int = 4):
        self.alive = True
        self.cfg = SimpleNamespace(threads=threads)
        self.tpool = SimpleNamespace(_work_queue=queue.SimpleQueue())
        self.nr_conns = 1
        self.served = []
        self.read_size = 1

    def handle(self, conn):
        buffered = conn.parser.unreader.buf.getvalue() or conn.sock.recv(self.read_size)
        if not buffered:
            return False  # the client closed the connection
        request, conn.parser.unreader.buf = buffered[:1], io.BytesIO(buffered[1:])  # the rest is read ahead
        self.served.append((request, threading.get_ident()))
        return True


@pytest.fixture
def connection():
    """A connected socket pair: the server side wrapped as a gunicorn connection, and the client side."""
    server, client = socket.socketpair()
    yield FakeConnection(server), client
    server.close()
    client.close()


def installed(worker: FakeWorker, linger_s: float = 0.002) -> FakeWorker:
    assert KeepAliveOnThread.install(worker, linger_s)
    return worker


def test_requests_that_follow_at_once_are_served_on_the_same_thread(connection):
    conn, client = connection
    worker = installed(FakeWorker())
    client.sendall(b"123")
    client.shutdown(socket.SHUT_WR)
    assert worker.handle(conn) is False  # served all three, then saw the client close
    assert [request for request, _ in worker.served] == [b"1", b"2", b"3"]
    assert len({thread for _, thread in worker.served}) == 1


def test_a_connection_idle_past_the_linger_time_goes_back_to_the_poller(connection):
    conn, client = connection
    worker = installed(FakeWorker(), linger_s=0.005)
    client.sendall(b"1")
    started = time.monotonic()
    assert worker.handle(conn) is True  # kept alive, for gunicorn's poller to watch
    assert time.monotonic() - started < 1.0
    assert [request for request, _ in worker.served] == [b"1"]


def test_pipelined_requests_already_read_are_served_without_waiting(connection):
    conn, client = connection
    worker = installed(FakeWorker(), linger_s=0.05)
    worker.read_size = 3  # the first read takes all three: the socket no longer shows the other two
    client.sendall(b"123")
    assert worker.handle(conn) is True
    assert [request for request, _ in worker.served] == [b"1", b"2", b"3"]


def test_no_lingering_while_other_connections_wait_for_a_thread(connection):
    conn, client = connection
    worker = installed(FakeWorker(), linger_s=10.0)
    worker.tpool._work_queue.put("another connection")
    client.sendall(b"12")
    assert worker.handle(conn) is True  # handed back: the queued connection needs this thread
    assert [request for request, _ in worker.served] == [b"1"]


def test_no_lingering_once_the_worker_stops(connection):
    conn, client = connection
    worker = installed(FakeWorker(), linger_s=10.0)
    client.sendall(b"12")
    worker.alive = False
    assert worker.handle(conn) is True  # gunicorn's own path closes it with "Connection: close"
    assert [request for request, _ in worker.served] == [b"1"]


def test_no_lingering_while_the_worker_has_more_connections_than_threads(connection):
    conn, client = connection
    worker = installed(FakeWorker(threads=2), linger_s=10.0)
    worker.nr_conns = 3  # a thread lingering on one could leave another connection waiting
    client.sendall(b"12")
    assert worker.handle(conn) is True
    assert [request for request, _ in worker.served] == [b"1"]


def test_only_gthread_workers_are_changed():
    sync_worker = SimpleNamespace(handle=lambda *args: None, cfg=SimpleNamespace(threads=1))
    assert KeepAliveOnThread.install(sync_worker) is False
