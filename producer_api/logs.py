"""Logs as one JSON object per line: the formatter, the logging configuration, request ids and the access line."""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from datetime import UTC, datetime

from flask import Response, g, has_request_context, request

access_log = logging.getLogger("producer_api.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, pid, message, request id and the record's fields.

    Only what a record's `fields` (passed as `extra={"fields": {...}}`) name is added, so nothing is logged by
    accident: never a request body, a message key or a setting.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str) -> dict:
    """The logging.config.dictConfig of the service: every logger as JSON lines on stderr at `level`.

    gunicorn takes it as `logconfig_dict`. gunicorn's own access log is silenced: the app writes one JSON access
    line per request. kafka-python's logs start at warning whatever the level (its info lines are per connection).
    """
    level = level.upper()
    kafka_level = level if logging.getLevelName(level) >= logging.WARNING else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "producer_api.logs.JsonFormatter"}},
        "handlers": {
            "json_stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        "root": {"level": level, "handlers": ["json_stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["json_stderr"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "kafka": {"level": kafka_level},
        },
    }


def assign_request_id() -> str:
    """Take the caller's X-Request-ID if it is a sane token (<= 128 of A-Z a-z 0-9 . _ -), else make one."""
    if "request_id" not in g:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    return g.request_id


def note_messages(topics, count: int) -> None:
    """Remember, for the access line, which topics a produce request writes to and how many messages it holds."""
    g.log_topic = ",".join(sorted(set(topics)))
    g.log_messages = count


def log_access(response: Response, duration_ms: float) -> None:
    """Write the request's access line and echo its request id in the response."""
    request_id = assign_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round(duration_ms, 3),
        "remote_addr": request.remote_addr,
    }
    if "log_topic" in g:
        fields.update(topic=g.log_topic, messages=g.log_messages)
    api_key = g.get("api_key")
    if api_key is not None:
        fields["api_key"] = api_key.name  # the key's name only, never the key
    access_log.info("%s %s %d", request.method, request.path, response.status_code, extra={"fields": fields})
