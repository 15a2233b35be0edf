"""Where the service's HTTP contract needs gunicorn to answer differently: its own error pages, and closing.

gunicorn answers requests it cannot parse (a header over its limits, a 5,000-character query string, a malformed
request line or Content-Length) itself, before the app sees them, with an HTML page: the contract is a JSON
`{"detail": ...}` for every error. And gunicorn drops the app's `Connection: close` (a hop-by-hop header), then
may close the connection anyway when the body was not read, so a client told "keep-alive" finds it closed: the
app's `Connection: close` now makes gunicorn say so and close (pinned version).
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import wsgi

_process_headers_as_shipped = wsgi.Response.process_headers


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's util.write_error, with a JSON `{"detail": ...}` body instead of an HTML page."""
    detail = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def _process_headers_honouring_close(self, headers):
    """gunicorn's Response.process_headers, but an app's `Connection: close` closes the connection after it."""
    _process_headers_as_shipped(self, headers)
    for name, value in headers:
        if name.lower() == "connection" and value.strip().lower() == "close":
            self.must_close = True  # should_close() then says "close" in the headers, and the worker closes


def install() -> bool:
    """Make this process's gunicorn write JSON error pages and honour the app's close; False if it changed shape."""
    if not callable(getattr(util, "write_error", None)) or not callable(getattr(util, "write_nonblock", None)):
        return False
    if not hasattr(wsgi.Response(None, None, None), "must_close"):
        return False
    util.write_error = _write_json_error
    wsgi.Response.process_headers = _process_headers_honouring_close
    return True
