"""A limit on how long a client may stay silent mid-request, so stalled clients cannot hold gunicorn's workers.

Replaces, in each worker, gunicorn.workers.gthread.ThreadWorker.handle, or gunicorn.workers.ggevent.GeventWorker.
handle and .timeout_ctx (gunicorn 27.0.1 on gevent 26.9.0).

gunicorn's gthread worker reads a request's headers and body, and writes its response, on a blocking socket with
no time limit: a client that sends part of a request and then nothing holds a pool thread until it closes the
connection, and as many such clients as the workers have threads stop the whole service (seen: 34 connections
that each sent headers and 5 bytes of a 100-byte body). The kernel's receive and send timeouts (SO_RCVTIMEO,
SO_SNDTIMEO), set once a connection, end such a wait: a read or write that waits longer fails with EAGAIN, which
Python raises as BlockingIOError. Unlike Python's own socket timeouts they add no poll() before every recv() and
send(). A client that trickles a byte now and then is not stopped by this; that takes a buffering proxy in front.

gunicorn's gevent worker has the same gap (a greenlet and a connection slot held for good, worker_connections of
them stopping the worker), and there the socket's own timeout is the bound: gevent waits for a gevent socket in
its event loop anyway, so the timeout costs nothing more, and a wait past it raises TimeoutError. A gevent worker
waits for a kept-alive connection's next request on that same socket, so there the timeout is lifted while the
head of a second or later request is read, and gunicorn's keep-alive limit alone bounds it (silently, as a gthread
worker's idle connections are let go): a client that sent its last request properly may stay quiet for the
keep-alive time whatever the client timeout. Such a client could already hold its connection that long by saying
nothing, so no stalled client holds a connection longer than before. With a client timeout above the keep-alive time
(the defaults: 10 s and 5 s) keep-alive ends every such wait first anyway, and nothing is lifted.
"""

from __future__ import annotations

import functools
import socket
import struct

from gunicorn.workers.base_async import AsyncWorker


class ClientTimeout:
    """Wraps a worker's handle() so every connection it serves gets receive and send timeouts."""

    def __init__(self, worker, timeout_s: float):
        self._worker = worker
        self._handle = worker.handle
        self._timeout_s = timeout_s
        seconds = int(timeout_s)
        self._timeval = struct.pack("ll", seconds, int((timeout_s - seconds) * 1_000_000))
        self._green_clients: dict = {}  # gevent: greenlet -> [its client socket, request heads awaited]
        self.lift_for_keep_alive = False  # gevent, a client timeout not above keep-alive: see request_head_wait

    @classmethod
    def install(cls, worker, timeout_s: float) -> bool:
        """Give the connections of a gthread or gevent worker these timeouts; False for other workers."""
        if all(hasattr(worker, name) for name in ("tpool", "handle", "nr_conns")):
            worker.handle = cls(worker, timeout_s).handle
            return True
        if isinstance(worker, AsyncWorker) and worker.cfg.worker_class_str == "gevent":
            if getattr(worker.handle, "__func__", None) is not type(worker).handle:
                return False  # already wrapped: replacing gunicorn's handle() here would skip the wrapper
            timeouts = cls(worker, timeout_s)
            worker.handle = timeouts.handle_green
            if timeout_s <= worker.cfg.keepalive:  # otherwise keep-alive ends every wait first, as it should
                timeouts.lift_for_keep_alive = True
                worker.timeout_ctx = timeouts.request_head_wait
            return True
        return False

    def handle(self, conn):
        """Set the connection's timeouts the first time a thread serves it, then serve it."""
        if not getattr(conn, "client_timeout_set", False):
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
            except OSError:
                pass  # closed meanwhile: gunicorn's own handling reports it
            conn.client_timeout_set = True
        return self._handle(conn)

    def handle_green(self, listener, client, addr):
        """Serve a gevent worker's connection with the timeout on its socket.

        gunicorn's GeventWorker.handle() only makes the socket blocking with no timeout before
        the common AsyncWorker.handle(); this sets the timeout instead.
        """
        client.settimeout(self._timeout_s)
        if not self.lift_for_keep_alive:
            return AsyncWorker.handle(self._worker, listener, client, addr)
        from gevent import getcurrent

        greenlet = getcurrent()
        self._green_clients[greenlet] = [client, 0]  # the socket, and how many request heads were awaited on it
        try:
            return AsyncWorker.handle(self._worker, listener, client, addr)
        finally:
            del self._green_clients[greenlet]

    def request_head_wait(self):
        """gunicorn's keep-alive Timeout for reading a request's head; from the second request on, the client
        timeout is lifted meanwhile, so an idle kept-alive connection lasts the keep-alive time."""
        from gevent import getcurrent

        head_wait = _request_head_wait_type()
        served = self._green_clients.get(getcurrent())
        if served is None:
            return head_wait(self._worker.cfg.keepalive, None, self._timeout_s)
        served[1] += 1
        return head_wait(self._worker.cfg.keepalive, served[0] if served[1] > 1 else None, self._timeout_s)


@functools.cache
def _request_head_wait_type() -> type:
    """The gevent Timeout subclass request_head_wait uses, defined on first use (a gthread worker never imports
    gevent)."""
    from gevent import Timeout

    class RequestHeadWait(Timeout):
        """gevent.Timeout(seconds, False) that, if given a client socket, waits on it with no socket timeout."""

        def __init__(self, seconds, client, client_timeout_s):
            super().__init__(seconds, False)
            self.client, self.client_timeout_s = client, client_timeout_s

        def __enter__(self):
            if self.client is not None:
                self.client.settimeout(None)
            return super().__enter__()

        def __exit__(self, typ, value, tb):
            if self.client is not None:
                self.client.settimeout(self.client_timeout_s)
            return super().__exit__(typ, value, tb)

    return RequestHeadWait
