"""A limit on how long a client may stay silent mid-request, so stalled clients cannot hold gunicorn's threads.

gunicorn's gthread worker reads a request's headers and body, and writes its response, on a blocking socket with
no time limit: a client that sends part of a request and then nothing holds a pool thread until it closes the
connection, and as many such clients as the workers have threads stop the whole service (seen: 34 connections
that each sent headers and 5 bytes of a 100-byte body). The kernel's receive and send timeouts (SO_RCVTIMEO,
SO_SNDTIMEO), set once a connection, end such a wait: a read or write that waits longer fails with EAGAIN, which
Python raises as BlockingIOError. Unlike Python's own socket timeouts they add no poll() before every recv() and
send(). A client that trickles a byte now and then is not stopped by this; that takes a buffering proxy in front.
"""

from __future__ import annotations

import socket
import struct


class ClientTimeout:
    """Wraps a gthread worker's handle() so every connection it serves gets kernel receive and send timeouts."""

    def __init__(self, worker, timeout_s: float):
        self._handle = worker.handle
        seconds = int(timeout_s)
        self._timeval = struct.pack("ll", seconds, int((timeout_s - seconds) * 1_000_000))

    @classmethod
    def install(cls, worker, timeout_s: float) -> bool:
        """Give the connections of a gthread worker these timeouts; False for other workers."""
        if not all(hasattr(worker, name) for name in ("tpool", "handle", "nr_conns")):
            return False
        worker.handle = cls(worker, timeout_s).handle
        return True

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
