"""The one place that turns any exception into a JSON `{"detail": ...}` response."""

from __future__ import annotations

import collections
import logging

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from producer_api.api import lingering_close
from producer_api.core.errors import APIError
from producer_api.observability.logs import ThrottledLog

log = logging.getLogger(__name__)


def error_response(status: int, detail, extra: dict | None = None, headers: dict | None = None):
    """Build the JSON error response every error path uses."""
    response = jsonify({"detail": detail, **(extra or {})})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(error: APIError):
    g.error_kind = type(error).__name__
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="producer-api"'
    if error.close_connection:
        headers["Connection"] = "close"  # honoured by producer_api/server/tuning/close_when_asked.py
    if error.status >= 500:
        # Nothing was written, or maybe not: an operator's business. An outage fails every request, so the line
        # is written at most once a second for each status, with a count of the others.
        current_app.extensions["server_error_logs"][error.status].error("answered %d: %s", error.status,
                                                                        error.detail)
    return _close_if_body_unread(error_response(error.status, error.detail, error.extra, headers))


def _handle_http_exception(error: HTTPException):
    g.error_kind = type(error).__name__
    detail = error.description or error.name
    if error.code == 413:
        detail = f"Request body too large: the limit is {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    response = error_response(error.code or 500, detail)
    if error.code == 405 and error.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return _close_if_body_unread(response)


def _handle_unexpected(error: Exception):
    # The traceback goes to the log for operators; the client gets no internals.
    log.exception("unhandled error")
    g.error_kind = "InternalServerError"  # the class of an unexpected exception says nothing a client could cause
    return _close_if_body_unread(error_response(500, "Internal server error"))


def _close_if_body_unread(response):
    """An error answered before the request's body was read closes the connection, once what the client still
    sends of its body is drained (lingering_close.py): the client reads the answer, not a reset."""
    if g.get("body_done") or not _has_body():
        return response
    response.headers["Connection"] = "close"  # honoured by producer_api/server/tuning/close_when_asked.py
    lingering_close.linger_after(response, request.environ)
    return response


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, as JSON with a `detail`."""
    app.extensions["server_error_logs"] = collections.defaultdict(lambda: ThrottledLog(log))
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
