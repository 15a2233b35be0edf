"""gunicorn's own error answers as JSON `{"detail": ...}` instead of an HTML page.

Replaces gunicorn.util.write_error (gunicorn 27.0.1). gunicorn answers requests it cannot parse (a header over its
limits, a 5,000-character query string, a malformed request line or Content-Length) itself, before the app sees
them; the contract is a JSON `{"detail": ...}` for every error.
"""

from __future__ import annotations

import json

from gunicorn import util


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's util.write_error, with a JSON `{"detail": ...}` body instead of an HTML page."""
    detail = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def apply() -> None:
    """Make this process's gunicorn write its own error answers as JSON."""
    util.write_error = write_json_error
