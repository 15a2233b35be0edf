"""Serving a keep-alive connection's next request on the thread that answered the last one.

gunicorn's gthread worker hands every kept-alive connection back to its main thread after each request: a byte
on a pipe wakes the main thread, which registers the socket with its poller, waits, unregisters it and queues the
connection for a pool thread again, every step a thread hand-off under the GIL. A client that sends its next
request on the same connection within a moment, as HTTP client pools and load generators do, now has it answered
by the same thread. strace of one worker at one connection: 87 system calls a single-message request before (52
of them futex), 49 after (24 futex).
"""

from __future__ import annotations

import select

# How long a pool thread waits for the next request on its connection before handing it back to the poller.
# A client that answers within a moment (its next request follows the last response) is served without the
# hand-off; a slower one costs an idle pool thread at most this long.
LINGER_S = 0.002


class KeepAliveOnThread:
    """Wraps a gthread worker's handle() so a kept-alive connection's next request is served in the same thread.

    A thread lingers only while the worker has no more connections than threads and none is queued for a
    thread: then every connection can have a thread of its own, and a lingering one keeps no other waiting.
    """

    def __init__(self, worker, linger_s: float = LINGER_S):
        self._worker = worker
        self._handle = worker.handle
        self._linger_ms = max(int(linger_s * 1000), 1)

    @classmethod
    def install(cls, worker, linger_s: float = LINGER_S) -> bool:
        """Make a gthread worker serve a connection's next request on the same thread; False for other workers."""
        if not all(hasattr(worker, name) for name in ("tpool", "handle", "nr_conns")):
            return False
        worker.handle = cls(worker, linger_s).handle
        return True

    def handle(self, conn):
        """Serve requests on the connection while the next one arrives within the linger time."""
        keep = self._handle(conn)
        while keep is True and self._next_request_arrives(conn):
            keep = self._handle(conn)
        return keep

    def _next_request_arrives(self, conn) -> bool:
        worker = self._worker
        if not worker.alive or conn.is_http2:
            return False
        if conn.parser.unreader.buf.getvalue():
            return True  # the client pipelined: its next request is read already
        if worker.nr_conns > worker.cfg.threads or not worker.tpool._work_queue.empty():
            return False  # other connections may need this thread
        try:
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            return bool(poller.poll(self._linger_ms))
        except (OSError, ValueError):
            return False  # closed meanwhile: the worker's own path reports it
