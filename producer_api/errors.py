"""The service's errors and the one place that turns any exception into a JSON `{"detail": ...}` response."""

from __future__ import annotations

import collections
import logging

from flask import Flask, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from producer_api.logs import ThrottledLog

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error with an HTTP status and a detail a client can act on."""

    status = 500
    retry_after: int | None = None
    close_connection = False  # True: the answer closes the connection (an unread or untrusted body is left on it)

    def __init__(self, detail: str, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class InvalidJSON(APIError):
    """The body is not well-formed JSON."""

    status = 400


class RequestTimeout(APIError):
    """The client stopped sending its body for longer than PRODUCER_CLIENT_TIMEOUT."""

    status = 408


class UnsupportedMediaType(APIError):
    """The body is compressed (Content-Encoding), which the service does not read."""

    status = 415


class InvalidRequest(APIError):
    """The body is JSON but breaks the schema; `extra["errors"]` holds the field messages."""

    status = 422


class PayloadTooLarge(APIError):
    """The body or one message is larger than the service or Kafka accepts."""

    status = 413


class TopicNotFound(APIError):
    """The topic does not exist and the cluster does not create topics on demand."""

    status = 404


class UnknownPartition(APIError):
    """The request names a partition the topic does not have."""

    status = 422


class Unauthorized(APIError):
    """No valid API key was presented."""

    status = 401


class Forbidden(APIError):
    """The caller, or the service's topic policy, may not write to this topic."""

    status = 403


class TopicNotAuthorized(APIError):
    """The cluster refuses this service write access to the topic."""

    status = 403


class KafkaUnavailable(APIError):
    """Kafka cannot take the message now (no broker answers, too few in-sync replicas, ...); retry later."""

    status = 503
    retry_after = 5


class TooManyPending(APIError):
    """This worker already waits on Kafka for as many messages as it may hold; retry later."""

    status = 429
    retry_after = 1


class DeliveryTimeout(APIError):
    """Kafka did not acknowledge in time; the message may or may not have been written."""

    status = 504


class KafkaRejected(APIError):
    """The broker refused the message for a reason that retrying will not fix."""

    status = 502


class KafkaNotReached(KafkaUnavailable):
    """A message's delivery timeout passed before it was ever sent to a broker: certainly not written."""


class ProducerNotInitialized(KafkaUnavailable):
    """This worker has no Kafka producer (it is starting or shutting down)."""

    def __init__(self):
        super().__init__("Producer not initialized")


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
        headers["Connection"] = "close"  # honoured by producer_api/gunicorn_http.py
    if error.status >= 500:
        # Nothing was written, or maybe not: an operator's business. An outage fails every request, so the line
        # is written at most once a second for each status, with a count of the others.
        current_app.extensions["server_error_logs"][error.status].error("answered %d: %s", error.status,
                                                                        error.detail)
    return error_response(error.status, error.detail, error.extra, headers)


def _handle_http_exception(error: HTTPException):
    g.error_kind = type(error).__name__
    detail = error.description or error.name
    if error.code == 413:
        detail = f"Request body too large: the limit is {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    response = error_response(error.code or 500, detail)
    if error.code == 413:
        response.headers["Connection"] = "close"  # refused before reading: the body is still on the connection
    if error.code == 405 and error.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return response


def _handle_unexpected(error: Exception):
    # The traceback goes to the log for operators; the client gets no internals.
    log.exception("unhandled error")
    g.error_kind = "InternalServerError"  # the class of an unexpected exception says nothing a client could cause
    return error_response(500, "Internal server error")


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, as JSON with a `detail`."""
    app.extensions["server_error_logs"] = collections.defaultdict(lambda: ThrottledLog(log))
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
