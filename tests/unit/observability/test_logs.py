"""JSON log lines: the formatter, the batching handler, throttles and filters, and the logging configuration."""

import json
import logging
import os
import sys

import pytest

from producer_api.observability.logs import (
    REQUEST_ID,
    ClientCausedFilter,
    JsonFormatter,
    RepeatedKafkaLineFilter,
    ThrottledLog,
    logging_config,
    skip_unused_record_details,
)


def test_formatter_writes_one_json_object_per_line_with_the_exception():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("producer_api.test").makeRecord(
            "producer_api.test", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here" and entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"] and "request_id" not in entry


@pytest.mark.parametrize("value", ["caf\u00e9 \u2713", 2**70, "lone \ud800 surrogate", b"raw", {1: "int key"}])
def test_formatter_writes_what_orjson_refuses_as_the_standard_library_would(value):
    record = logging.getLogger("producer_api.test").makeRecord(
        "producer_api.test", logging.INFO, __file__, 1, "value", (), None, extra={"fields": {"value": value}})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    expected = json.loads(json.dumps({"value": value}, ensure_ascii=False, default=str))["value"]
    assert json.loads(line)["value"] == expected


def test_records_skip_what_the_formatter_never_writes_and_keep_the_pid(monkeypatch):
    for switch in ("_srcfile", "logThreads", "logMultiprocessing", "logProcesses"):
        monkeypatch.setattr(logging, switch, getattr(logging, switch))  # restored after the test
    skip_unused_record_details()
    record = logging.getLogger("producer_api.test").makeRecord(
        "producer_api.test", logging.INFO, "(unknown file)", 0, "hello %s", ("there",), None)
    assert logging._srcfile is None and record.threadName is None and record.processName is None
    entry = json.loads(JsonFormatter().format(record))
    assert entry["pid"] == os.getpid() and entry["message"] == "hello there"


@pytest.mark.parametrize(("level", "kafka_level"), [("debug", "WARNING"), ("info", "WARNING"), ("error", "ERROR")])
def test_logging_config_uses_the_level_and_silences_gunicorns_access_log(level, kafka_level):
    config = logging_config(level)
    assert config["root"]["level"] == level.upper() and config["loggers"]["gunicorn.error"]["level"] == level.upper()
    assert config["loggers"]["gunicorn.error"]["propagate"] is False
    assert config["loggers"]["gunicorn.access"] == {"level": "CRITICAL", "handlers": [], "propagate": False}
    assert config["loggers"]["kafka"]["level"] == kafka_level
    assert config["formatters"]["json"]["()"] == "producer_api.observability.logs.JsonFormatter"


def test_batching_handler_writes_every_line_in_order_from_any_thread():
    import io
    import logging
    import threading

    from producer_api.observability.logs import BatchingStreamHandler

    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.batching")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        threads = [threading.Thread(target=lambda n=n: [logger.warning("t%d-%d", n, i) for i in range(200)])
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logger.warning("main")  # from the main thread: written at once, after everything queued before it
        lines = stream.getvalue().splitlines()
    finally:
        logger.removeHandler(handler)
    assert lines[-1] == "main"
    assert sorted(lines[:-1]) == sorted(f"t{n}-{i}" for n in range(4) for i in range(200))
    for n in range(4):  # each thread's lines keep their order
        own = [line for line in lines if line.startswith(f"t{n}-")]
        assert own == [f"t{n}-{i}" for i in range(200)]


def test_without_a_writer_thread_every_line_is_written_by_the_thread_that_logs_it(monkeypatch):
    import io
    import logging
    import threading

    from producer_api.observability import logs

    monkeypatch.setattr(logs.BatchingStreamHandler, "writer_thread", True)  # restored after the test
    logs.use_no_writer_thread()
    stream = io.StringIO()
    handler = logs.BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    written = []

    def log_from_a_thread():
        for index in range(3):
            handler.handle(logging.makeLogRecord({"msg": f"line {index}"}))
            written.append(stream.getvalue().count("\n"))

    thread = threading.Thread(target=log_from_a_thread)
    thread.start()
    thread.join()
    assert written == [1, 2, 3] and handler._writer is None


def test_batching_handler_writes_itself_when_the_queue_is_full(monkeypatch):
    import io
    import logging
    import threading

    from producer_api.observability import logs

    monkeypatch.setattr(logs, "MAX_QUEUED_LINES", 3)
    stream = io.StringIO()
    handler = logs.BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._writer = threading.current_thread()  # a writer that never writes: the queue can only grow
    queued = []

    def log_from_a_thread():
        for index in range(10):
            handler.handle(logging.makeLogRecord({"msg": f"line {index}"}))
            queued.append(len(handler._pending))

    thread = threading.Thread(target=log_from_a_thread)
    thread.start()
    thread.join()
    assert max(queued) <= 3
    assert stream.getvalue().splitlines() + list(handler._pending) == [f"line {index}" for index in range(10)]


def test_a_throttled_log_writes_one_line_an_interval_and_then_counts_what_it_left_out(caplog):
    now = [100.0]
    throttled = ThrottledLog(logging.getLogger("throttle-test"), interval_s=1.0, clock=lambda: now[0])
    caplog.set_level(logging.ERROR, logger="throttle-test")
    for n in range(5):
        throttled.error("message %d failed", n)
    now[0] += 1.0
    throttled.error("message %d failed", 5)
    assert [record.getMessage() for record in caplog.records] == [
        "message 0 failed", "message 5 failed (and 4 more such failures since the last line)"]
    now[0] += 1.0
    throttled.error("message %d failed", 6)
    assert caplog.records[-1].getMessage() == "message 6 failed"


def gunicorn_socket_error(error: OSError) -> logging.LogRecord:
    """The record gunicorn's gthread worker logs (with log.exception) when a connection's socket fails."""
    try:
        raise error
    except OSError:
        return logging.getLogger("gunicorn.error").makeRecord(
            "gunicorn.error", logging.ERROR, "gthread.py", 1, "Socket error processing request.", (), sys.exc_info())


def test_a_connection_cut_off_by_its_timeout_is_one_warning_without_a_traceback():
    record = gunicorn_socket_error(BlockingIOError(11, "Resource temporarily unavailable"))
    assert ClientCausedFilter().filter(record) is True
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and "exception" not in entry
    assert entry["message"] == "closed a connection whose client sent or read nothing for too long"


def test_a_gevent_connection_cut_off_by_its_timeout_is_one_warning_too():
    record = gunicorn_socket_error(TimeoutError("timed out"))
    ClientCausedFilter().filter(record)
    assert record.levelname == "WARNING" and record.exc_info is None


def test_other_socket_errors_keep_their_traceback():
    record = gunicorn_socket_error(OSError(9, "Bad file descriptor"))
    ClientCausedFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_topic_a_client_named_that_kafka_does_not_have_is_a_warning():
    record = logging.getLogger("kafka.cluster").makeRecord(
        "kafka.cluster", logging.ERROR, "cluster.py", 1, "Topic %s not found in cluster metadata", ("orders",), None)
    ClientCausedFilter().filter(record)
    assert record.levelname == "WARNING" and record.getMessage() == "Topic orders not found in cluster metadata"


def test_the_handler_applies_the_filter_to_every_logger():
    config = logging_config("info")
    assert config["handlers"]["json_stderr"]["filters"] == ["client_caused", "repeated_kafka_lines"]
    assert config["filters"]["client_caused"] == {"()": "producer_api.observability.logs.ClientCausedFilter"}


def test_kafka_pythons_repeated_lines_go_out_once_an_interval_with_a_count():
    now = [0.0]
    repeated = RepeatedKafkaLineFilter(interval_s=10.0, clock=lambda: now[0])

    def line(name, level, message, *args):
        record = logging.getLogger(name).makeRecord(name, level, "x.py", 1, message, args, None)
        return record.getMessage() if repeated.filter(record) else None

    refused = "Connection failed: %s"
    assert line("kafka.net.manager", logging.ERROR, refused, "ECONNREFUSED") == "Connection failed: ECONNREFUSED"
    assert [line("kafka.net.manager", logging.ERROR, refused, "ECONNREFUSED") for _ in range(5)] == [None] * 5
    assert line("kafka.cluster", logging.ERROR, "Metadata refresh: failed %s", "x")  # another kind: its own turn
    assert line("kafka.net.manager", logging.INFO, refused, "e")  # below warning: never held back
    assert line("producer_api.api.errors", logging.ERROR, "answered %d", 503)  # not kafka-python's
    now[0] = 10.0
    assert line("kafka.net.manager", logging.ERROR, refused, "ECONNREFUSED") == (
        "Connection failed: ECONNREFUSED (and 5 more such lines since the last one)")


def test_lines_kafka_python_formats_itself_are_one_kind_and_the_kinds_stay_few():
    now = [0.0]
    repeated = RepeatedKafkaLineFilter(interval_s=10.0, clock=lambda: now[0])

    def passes(message):
        record = logging.getLogger("kafka.net").makeRecord("kafka.net", logging.WARNING, "x.py", 1, message, (), None)
        return repeated.filter(record)

    assert passes("Task <Task at 0x7f3a2c> ran for 0.123s")
    assert not passes("Task <Task at 0x7f9b10> ran for 0.305s")  # the same kind, other numbers
    for n in range(1000):  # 1000 kinds that differ in words, within one interval: never more than MOST_KINDS kept
        now[0] += 0.001
        assert passes(f"kind {chr(97 + n % 26)}{chr(97 + n // 26 % 26)}{chr(97 + n // 676)} of line")
        assert len(repeated._next_line_at) <= RepeatedKafkaLineFilter.MOST_KINDS


def test_formatter_writes_the_request_id_the_http_layer_set_unless_the_record_names_its_own():
    record = logging.getLogger("producer_api.test").makeRecord(
        "producer_api.test", logging.INFO, __file__, 1, "inside a request", (), None)
    own = logging.getLogger("producer_api.test").makeRecord(
        "producer_api.test", logging.INFO, __file__, 1, "access", (), None, extra={"fields": {"request_id": "own"}})
    token = REQUEST_ID.set("req-9")
    try:
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req-9"
        assert json.loads(JsonFormatter().format(own))["request_id"] == "own"
    finally:
        REQUEST_ID.reset(token)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
