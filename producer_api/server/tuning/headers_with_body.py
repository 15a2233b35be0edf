"""Sending a response's headers together with its body, in one system call instead of two.

Replaces gunicorn.http.wsgi.Response.write (gunicorn 27.0.1). gunicorn's Response.write() sends the status line
and headers with one sendall() and then the body with another. Each sendall() lets go of the GIL, and under load a
request thread that let go of it waits behind the threads that are running Python before it has it back. The
first body bytes now go out with the headers when they are at most 16 KiB; anything else (larger or chunked
bodies, HEAD and other bodiless answers, later writes) is written as gunicorn writes it.
"""

from __future__ import annotations

from gunicorn.http import wsgi

_write_as_shipped = wsgi.Response.write

# A larger body goes out as gunicorn sends it: copying it behind the headers would cost about what the saved
# system call does (a batch of 1000 answers about 100 KB).
MOST_JOINED_BODY_BYTES = 16384


def _write_headers_with_body(self, data):
    """gunicorn's Response.write, with the headers sent in the same sendall() as the first body bytes."""
    if (self.headers_sent or self.chunked or self._omits_body or type(data) is not bytes or not data
            or len(data) > MOST_JOINED_BODY_BYTES
            or (self.response_length is not None and len(data) > self.response_length)):
        return _write_as_shipped(self, data)
    # What Response.send_headers() writes.
    lines = self.default_headers()
    lines.extend([f"{name}: {value}\r\n" for name, value in self.headers])
    head = ("".join(lines) + "\r\n").encode("latin-1")
    self.headers_sent = True
    self.sent += len(data)
    self.sock.sendall(head + data)


def install() -> bool:
    """Make this process's gunicorn responses send headers and body together; False if gunicorn changed shape."""
    probe = wsgi.Response(None, None, None)  # its constructor only sets the attributes the write reads
    if not hasattr(probe, "default_headers") or not all(
            hasattr(probe, name) for name in ("headers_sent", "chunked", "_omits_body", "response_length", "sent")):
        return False
    wsgi.Response.write = _write_headers_with_body
    return True
