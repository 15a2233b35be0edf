"""Where the service's HTTP contract needs gunicorn to answer differently: its own error pages, and closing.

gunicorn answers requests it cannot parse (a header over its limits, a 5,000-character query string, a malformed
request line or Content-Length) itself, before the app sees them, with an HTML page: the contract is a JSON
`{"detail": ...}` for every error. And gunicorn drops the app's `Connection: close` (a hop-by-hop header), then
may close the connection anyway when the body was not read, so a client told "keep-alive" finds it closed: the
app's `Connection: close` now makes gunicorn say so and close (pinned version). And gunicorn answers a client's
`Expect: 100-continue` with "100 Continue" before the app runs, so a client announcing a body over the limit was
asked to upload all of it only to be told 413: such a request now gets its 413 without the "100 Continue".
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.http.message import Message

_process_headers_as_shipped = wsgi.Response.process_headers
_create_as_shipped = wsgi.create


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


def _announced_length(req) -> int | None:
    """The request's Content-Length (gunicorn has already refused a malformed or repeated one), or None."""
    value = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), None)
    return int(value) if value is not None and value.isdigit() else None


def _create_without_continue_over(body_limit: int):
    """gunicorn's wsgi.create, but no "100 Continue" for a body announced over body_limit: the app refuses it unread."""

    def create(req, sock, *args, **kwargs):
        if req._expected_100_continue and (_announced_length(req) or 0) > body_limit:
            req._expected_100_continue = False
        return _create_as_shipped(req, sock, *args, **kwargs)

    return create


def install(body_limit: int) -> bool:
    """Make this process's gunicorn write JSON error pages, honour the app's close, and not ask for bodies over
    body_limit bytes; False if it changed shape."""
    if not callable(getattr(util, "write_error", None)) or not callable(getattr(util, "write_nonblock", None)):
        return False
    if not hasattr(wsgi.Response(None, None, None), "must_close"):
        return False
    if not callable(getattr(wsgi, "create", None)) or not hasattr(Message, "_expected_100_continue"):
        return False
    util.write_error = _write_json_error
    wsgi.Response.process_headers = _process_headers_honouring_close
    wsgi.create = _create_without_continue_over(body_limit)
    return True
