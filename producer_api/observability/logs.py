"""Logs as one JSON object per line: the formatter, the handler, throttles and filters, the logging configuration."""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from datetime import UTC, datetime

import orjson

access_log = logging.getLogger("producer_api.access")

# The id of the request being served, set by the HTTP layer (producer_api/api/observe.py); per thread or greenlet.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, pid, message, request id and the record's fields.

    Only what a record's `fields` (passed as `extra={"fields": {...}}`) name is added, so nothing is logged by
    accident: never a request body, a message key or a setting.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = _entry(record.created, record.levelname, record.name, record.process, record.getMessage())
        fields = getattr(record, "fields", None) or {}
        if "request_id" not in fields:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                entry["request_id"] = request_id
        entry.update(fields)
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return _json_line(entry)


def _entry(created: float, level: str, logger: str, pid: int | None, message: str) -> dict:
    """The fields every line starts with."""
    return {
        "time": datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"),
        "level": level,  # upper case, as the guide's `grep ERROR` expects
        "logger": logger,
        "pid": pid,
        "message": message,
    }


def _json_line(entry: dict) -> str:
    try:
        # orjson: many times faster than json.dumps, on every line (the access line of every request).
        return orjson.dumps(entry, default=str).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits, lone surrogates, non-string keys)
        return json.dumps(entry, ensure_ascii=False, default=str)


MAX_QUEUED_LINES = 10000  # past this, a logging thread writes itself instead of queueing: memory stays bounded


class BatchingStreamHandler(logging.Handler):
    """Write log lines from one thread per process, all the lines waiting at that moment in one write.

    A StreamHandler writes each line under a lock that every request thread takes: with 16 threads per worker,
    the access line's lock and write are a large part of a single message's cost (docs/performance.md). Here a
    request thread only formats its line and queues it; at low load each line is still written at once, under
    load many leave in one write. Lines from the main thread (gunicorn's master, which forks, and a worker's
    event loop) are written at once, after those already queued, so no writer thread ever runs in the master.
    logging.shutdown() at exit writes what is left; a process killed by SIGKILL loses at most its last lines.
    In a gevent worker every line is written at once (see use_no_writer_thread).
    """

    # Cleared in gevent workers: their requests share one thread, so no lock is fought over, and the writer's
    # event and lock, made at fork before gevent's patching, are the kernel's: a greenlet waiting on them
    # would stop the whole worker (seen: a worker that never exited after SIGTERM).
    writer_thread = True

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream if stream is not None else sys.stderr
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a writer thread and its locks do not survive fork

    def _reset(self) -> None:
        self._pending: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        """Format and queue the record without the handler lock (the queue is thread-safe)."""
        if not self.filter(record):
            return False
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never break the request
            self.handleError(record)
            return False
        self.write_line(line)
        return True

    def write_line(self, line: str) -> None:
        """Queue a formatted line for the writer thread, or write it now (see the class's docstring)."""
        self._pending.append(line)
        if (not self.writer_thread or threading.current_thread() is threading.main_thread()
                or len(self._pending) > MAX_QUEUED_LINES):
            self.flush()  # also when the writer falls behind (stderr blocked): wait for it, as StreamHandler would
            return
        if self._writer is None:
            self._start_writer()
        self._wake.set()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue one record (handle() is the usual way in)."""
        self.handle(record)

    def flush(self) -> None:
        """Write every queued line now."""
        with self._write_lock:
            lines = []
            while self._pending:
                lines.append(self._pending.popleft())
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):  # stderr closed or gone: nowhere left to write
                    pass

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
                self._writer.start()

    def _write_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.flush()


def use_no_writer_thread() -> None:
    """Make this process's BatchingStreamHandlers write each line at once, in the thread that logs it."""
    BatchingStreamHandler.writer_thread = False


class ThrottledLog:
    """A logger's lines of one kind at most once an interval; the next line says how many were left out."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0, clock=time.monotonic):
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_line_at = float("-inf")
        self._left_out = 0

    def error(self, message: str, *args) -> None:
        """Log at error level, unless a line of this kind was written less than an interval ago."""
        now = self._clock()
        with self._lock:
            if now < self._next_line_at:
                self._left_out += 1
                return
            self._next_line_at = now + self._interval_s
            left_out, self._left_out = self._left_out, 0
        if left_out:
            message, args = message + " (and %d more such failures since the last line)", (*args, left_out)
        self._logger.error(message, *args)


class ClientCausedFilter(logging.Filter):
    """Lines that libraries log as errors about what a client did, as warnings: `grep ERROR` finds faults only."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite such a record; let every record through."""
        if (record.msg == "Socket error processing request." and record.exc_info
                and isinstance(record.exc_info[1], (BlockingIOError, TimeoutError))):
            # gunicorn's traceback for the receive or send timeout of producer_api/server/tuning/client_timeout.py.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "closed a connection whose client sent or read nothing for too long", ()
            record.exc_info, record.exc_text = None, None
        elif record.msg == "Topic %s not found in cluster metadata" and record.name == "kafka.cluster":
            # kafka-python's line for a topic a request named that does not exist (404), or not yet (auto-create).
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RepeatedKafkaLineFilter(logging.Filter):
    """kafka-python's warnings and errors at most once an interval for each kind of line; the next says how many
    were left out. With the broker down it logs every reconnection attempt: 117 error lines in 30 s seen."""

    MOST_KINDS = 256  # kinds remembered at once; past it those whose interval is over are forgotten

    def __init__(self, interval_s: float = 10.0, clock=time.monotonic):
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_line_at: dict[tuple[str, str], float] = {}
        self._left_out: collections.Counter = collections.Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Let the record through unless a line of its kind from kafka-python went out less than an interval ago."""
        if record.levelno < logging.WARNING or not record.name.startswith("kafka"):
            return True
        # kafka-python formats some lines itself (addresses, backoffs, durations): numbers do not make a new kind.
        kind = (record.name, _NUMBERS.sub("#", str(record.msg)))
        now = self._clock()
        with self._lock:
            if now < self._next_line_at.get(kind, float("-inf")):
                self._left_out[kind] += 1
                return False
            if len(self._next_line_at) >= self.MOST_KINDS:
                self._forget_kinds_due(now)
            self._next_line_at[kind] = now + self._interval_s
            left_out = self._left_out.pop(kind, 0)
        if left_out:
            record.msg = f"{record.getMessage()} (and {left_out} more such lines since the last one)"
            record.args = ()
        return True

    def _forget_kinds_due(self, now: float) -> None:
        due = [kind for kind, next_line_at in self._next_line_at.items() if next_line_at <= now]
        for kind in due or list(self._next_line_at):
            del self._next_line_at[kind]
            self._left_out.pop(kind, None)


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


def skip_unused_record_details() -> None:
    """Stop logging from collecting, for every record, what JsonFormatter never writes.

    The logging HOWTO's "Optimization" switches: the caller's file and line (a walk up the stack), the thread's name
    and the multiprocessing process's name. The process id stays, for the "pid" field.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


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
        "formatters": {"json": {"()": "producer_api.observability.logs.JsonFormatter"}},
        "filters": {"client_caused": {"()": "producer_api.observability.logs.ClientCausedFilter"},
                    "repeated_kafka_lines": {"()": "producer_api.observability.logs.RepeatedKafkaLineFilter"}},
        "handlers": {
            "json_stderr": {"class": "producer_api.observability.logs.BatchingStreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr", "filters": ["client_caused", "repeated_kafka_lines"]},
        },
        "root": {"level": level, "handlers": ["json_stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["json_stderr"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "kafka": {"level": kafka_level},
        },
    }


def write_access_line(message: str, fields: dict) -> None:
    """Write a request's access line: straight to the service's handler when it is the only one, else via logging."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    handler = _sole_access_handler()
    if handler is None:
        access_log.info("%s", message, extra={"fields": fields})
        return
    entry = _entry(time.time(), "INFO", access_log.name, os.getpid(), message)
    entry.update(fields)
    handler.write_line(_json_line(entry))


# Filters of the service's handler that pass an access line through unchanged.
_ACCESS_NEUTRAL_FILTERS = (ClientCausedFilter, RepeatedKafkaLineFilter)


def _sole_access_handler() -> BatchingStreamHandler | None:
    """The service's handler, if an access line would reach it and nothing else (logging_config()); else None.

    Through logging, a record and its trip through the loggers and filters cost more than half of the access line,
    the largest of the service's own costs per request; the line written straight to the handler is the same.
    Any other configuration (another handler, a filter, a formatter: pytest's caplog) goes through
    logging as before.
    """
    if access_log.filters or access_log.disabled:
        return None
    handlers = []
    logger = access_log
    while logger is not None:  # as Logger.callHandlers walks them
        handlers.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (type(handler) is not BatchingStreamHandler or type(handler.formatter) is not JsonFormatter
            or handler.level > logging.INFO
            or not all(isinstance(neutral, _ACCESS_NEUTRAL_FILTERS) for neutral in handler.filters)):
        return None
    return handler
