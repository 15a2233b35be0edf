"""A lingering close: what is left of a refused request's body is read and discarded before the connection closes.

A client that sends its whole body before it reads the answer (Python's urllib.request and http.client, and many
simple clients) is answered 413 or 401 before its upload ends. Were the connection closed with the rest of the body
unread, the kernel would answer what the client still sends with a reset, and the client would see
ConnectionResetError or BrokenPipeError instead of the answer. As nginx does (lingering_close), the connection's
write side is shut once the answer is out, and what the client still sends is read and thrown away until it
closes: for at most MOST_SECONDS in all, MOST_SILENCE_S between reads, and MOST_BYTES.
"""

from __future__ import annotations

import select
import socket
import time

MOST_SECONDS = 10.0
MOST_SILENCE_S = 2.0
MOST_BYTES = 64 * 1024 * 1024
_READ_SIZE = 65536


def linger_after(response, environ: dict) -> None:
    """Once the response is sent, drain the rest of the request from the client's socket before it is closed."""
    sock = environ.get("gunicorn.socket")  # the connection, as gunicorn hands it to the app
    if sock is not None:
        response.call_on_close(lambda: drain(sock))


def drain(sock, clock=time.monotonic) -> int:
    """Shut the socket's write side, then read and discard until the client closes or a bound is reached; bytes."""
    try:
        sock.shutdown(socket.SHUT_WR)  # the answer is complete: the client reads it, then closes its side
    except OSError:
        return 0
    discarded = 0
    deadline = clock() + MOST_SECONDS
    try:
        while discarded < MOST_BYTES:
            left = deadline - clock()
            if left <= 0 or not select.select([sock], [], [], min(left, MOST_SILENCE_S))[0]:
                break
            chunk = sock.recv(_READ_SIZE)
            if not chunk:
                break
            discarded += len(chunk)
    except (OSError, ValueError):  # reset by the client, or closed meanwhile: nothing left to drain
        pass
    return discarded
