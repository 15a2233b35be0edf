"""No "100 Continue" for a request body announced over PRODUCER_MAX_BODY_BYTES.

Replaces gunicorn.http.wsgi.create (gunicorn 27.0.1). gunicorn answers a client's `Expect: 100-continue` with
"100 Continue" before the app runs, so a client announcing a body over the limit was asked to upload all of it
only to be told 413: such a request now gets its 413 without the "100 Continue".
"""

from __future__ import annotations

from gunicorn.http import wsgi

AS_SHIPPED = wsgi.create


def _announced_length(req) -> int | None:
    """The request's Content-Length (gunicorn has already refused a malformed or repeated one), or None."""
    value = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), None)
    return int(value) if value is not None and value.isdigit() else None


def create_without_continue_over(body_limit: int):
    """gunicorn's wsgi.create, but no "100 Continue" for a body announced over body_limit: the app refuses it unread."""

    def create(req, sock, *args, **kwargs):
        if req._expected_100_continue and (_announced_length(req) or 0) > body_limit:
            req._expected_100_continue = False
        return AS_SHIPPED(req, sock, *args, **kwargs)

    return create


def apply(body_limit: int) -> None:
    """Make this process's gunicorn skip "100 Continue" for bodies announced over body_limit bytes."""
    wsgi.create = create_without_continue_over(body_limit)
