"""The kernel receive and send timeouts a gthread worker's connections get (no gunicorn process needed)."""

import socket
import struct
import time
from types import SimpleNamespace

import pytest

from producer_api.server.tuning.client_timeout import ClientTimeout


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


def test_a_gevent_workers_connections_get_the_timeout_on_their_socket(connection, monkeypatch):
    from gunicorn.workers.base_async import AsyncWorker

    served = []
    monkeypatch.setattr(AsyncWorker, "handle", lambda worker, listener, client, addr: served.append(
        (worker, client.gettimeout())))
    class GeventWorker(AsyncWorker):
        def handle(self, listener, client, addr):
            pytest.fail("gunicorn's GeventWorker.handle() makes the socket wait for ever")

    worker = GeventWorker.__new__(GeventWorker)  # no gunicorn process: only what install() and handle() read
    worker.cfg = SimpleNamespace(worker_class_str="gevent", keepalive=5)
    _, client = connection
    assert ClientTimeout.install(worker, 0.25) is True
    worker.handle(None, client, ("127.0.0.1", 1))
    assert served == [(worker, 0.25)]
    worker.handle = lambda listener, client, addr: None  # wrapped by something else already: left alone
    assert ClientTimeout.install(worker, 0.25) is False


def test_a_gevent_worker_lifts_the_timeout_while_a_kept_alive_connection_awaits_its_next_request(connection,
                                                                                                 monkeypatch):
    import gevent
    from gunicorn.workers.base_async import AsyncWorker

    seen = []

    def serve_three_requests(worker, listener, client, addr):
        for _ in range(3):
            with worker.timeout_ctx() as wait:  # what gunicorn's keep-alive loop does around each request head
                assert isinstance(wait, gevent.Timeout) and wait.seconds == 5
                seen.append(client.gettimeout())
            seen.append(client.gettimeout())

    monkeypatch.setattr(AsyncWorker, "handle", serve_three_requests)

    class GeventWorker(AsyncWorker):
        def handle(self, listener, client, addr):
            pytest.fail("replaced by ClientTimeout")

        def timeout_ctx(self):
            pytest.fail("replaced by ClientTimeout")

    worker = GeventWorker.__new__(GeventWorker)
    worker.cfg = SimpleNamespace(worker_class_str="gevent", keepalive=5)
    _, client = connection
    assert ClientTimeout.install(worker, 0.25) is True
    worker.handle(None, client, ("127.0.0.1", 1))
    # The first head is read under the client timeout; later ones (an idle kept-alive wait) only under keep-alive.
    assert seen == [0.25, 0.25, None, 0.25, None, 0.25]
    with worker.timeout_ctx():  # outside a served connection: a plain keep-alive Timeout
        pass


def test_a_client_timeout_above_the_keep_alive_time_leaves_gunicorns_keep_alive_wait_alone(connection):
    from gunicorn.workers.base_async import AsyncWorker

    class GeventWorker(AsyncWorker):
        def handle(self, listener, client, addr):
            pytest.fail("replaced by ClientTimeout")

    worker = GeventWorker.__new__(GeventWorker)
    worker.cfg = SimpleNamespace(worker_class_str="gevent", keepalive=5)
    assert ClientTimeout.install(worker, 10) is True
    assert worker.timeout_ctx.__func__ is GeventWorker.timeout_ctx  # keep-alive ends every wait before 10 s do
