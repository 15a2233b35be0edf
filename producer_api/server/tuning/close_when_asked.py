"""An app's `Connection: close` closes the connection, and gunicorn says so.

Replaces gunicorn.http.wsgi.Response.process_headers (gunicorn 27.0.1). gunicorn drops the app's
`Connection: close` (a hop-by-hop header), then may close the connection anyway when the body was not read, so
a client told "keep-alive" finds it closed. The service answers with `Connection: close` whenever what is left
of a request body on the connection cannot be trusted (refused unread, malformed, stalled).
"""

from __future__ import annotations

from gunicorn.http import wsgi

AS_SHIPPED = wsgi.Response.process_headers


def process_headers_honouring_close(self, headers):
    """gunicorn's Response.process_headers, but an app's `Connection: close` closes the connection after it."""
    AS_SHIPPED(self, headers)
    for name, value in headers:
        if name.lower() == "connection" and value.strip().lower() == "close":
            self.must_close = True  # should_close() then says "close" in the headers, and the worker closes


def apply() -> None:
    """Make this process's gunicorn honour the app's `Connection: close`."""
    wsgi.Response.process_headers = process_headers_honouring_close
