"""Every request counted and logged: its id, its metrics, its access line; and GET /metrics."""

from __future__ import annotations

import logging
import random
import re
import time

from flask import Blueprint, Flask, Response, current_app, g, request, request_started

from producer_api.api.producer import app_producer
from producer_api.observability import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """Show the service's metrics in Prometheus text format, summed over every gunicorn worker."""
    metrics.sample_producer(app_producer())
    return Response(metrics.exposition(current_app.extensions["metrics"]), content_type=metrics.CONTENT_TYPE)


def assign_request_id() -> str:
    """Take the caller's X-Request-ID if it is a sane token (<= 128 of A-Z a-z 0-9 . _ -), else make one."""
    this_g = g._get_current_object()  # once: every use of the proxy looks g up again
    request_id = this_g.get("request_id")
    if request_id is None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = this_g.request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else _new_request_id()
        logs.REQUEST_ID.set(request_id)
    return request_id


_UUID4_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def _new_request_id() -> str:
    """A random version-4 UUID as 32 hex digits, from the random module instead of the OS.

    uuid4() reads the OS's randomness, a system call that lets go of the GIL, which under load a request thread
    then waits to get back. A request id needs to be unique, not secret; the random module is reseeded in every
    forked worker.
    """
    # The version and variant bits as uuid.UUID(int=..., version=4) sets them, without building the object.
    return "%032x" % (random.getrandbits(128) & _UUID4_KEEP | _UUID4_SET)


def note_messages(topics, count: int) -> None:
    """Remember, for the access line, which topics a produce request writes to and how many messages it holds."""
    g.log_topic = ",".join(sorted(set(topics)))
    g.log_messages = count


def _log_access(response: Response, duration_ms: float) -> None:
    """Write the request's access line and echo its request id in the response."""
    request_id = assign_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    if not logs.access_log.isEnabledFor(logging.INFO):
        return
    # The objects behind Flask's proxies, looked up once: every use of a proxy looks them up again.
    this_request, this_g = request._get_current_object(), g._get_current_object()
    method, path, status = this_request.method, this_request.path, response.status_code
    fields = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "remote_addr": this_request.remote_addr,
    }
    if "log_topic" in this_g:
        fields.update(topic=this_g.log_topic, messages=this_g.log_messages)
    error_kind = this_g.get("error_kind")
    if error_kind is not None:
        fields["error"] = error_kind  # why a 4xx or 5xx was answered, as the metrics count it
    api_key = this_g.get("api_key")
    if api_key is not None:
        fields["api_key"] = api_key.name  # the key's name only, never the key
    logs.write_access_line(f"{method} {path} {status}", fields)


def _start(sender: Flask, **_extra) -> None:
    # request_started comes before every before_request function: an API key refused there is timed too.
    g.metrics_started = time.perf_counter()
    assign_request_id()


def _finish(response: Response) -> Response:
    finished = time.perf_counter()
    # Flask's proxies look the request and g up again on every use: once here.
    this_request, this_g = request._get_current_object(), g._get_current_object()
    duration = finished - this_g.get("metrics_started", finished)
    rule = this_request.url_rule
    metrics.count_request(rule.rule if rule is not None else "unmatched", this_request.method,
                          response.status_code, this_g.get("error_kind"))
    _log_access(response, duration * 1000)
    logs.REQUEST_ID.set(None)  # lines logged between requests on this thread or greenlet carry no stale id
    return response


def init_app(app: Flask) -> None:
    """Count and log every request (error responses by the error kind api/errors.py notes) and serve GET /metrics."""
    app.extensions["metrics"] = app.config["PRODUCER_SETTINGS"].metrics_multiproc_dir
    request_started.connect(_start, app)
    app.after_request(_finish)
    app.register_blueprint(bp)
