"""JSON log lines with a fake producer: request ids, the access line's fields, and nothing secret in them."""

import io
import json
import logging
import os
import random
import re
import sys
import uuid

import pytest

from producer_api import create_app, logs
from producer_api.config import ApiKey
from producer_api.errors import KafkaUnavailable
from producer_api.logs import (
    ClientCausedFilter,
    JsonFormatter,
    RepeatedKafkaLineFilter,
    ThrottledLog,
    _new_request_id,
    logging_config,
    skip_unused_record_details,
)
from tests.unit.conftest import FakeProducer

BODY_TEXT = "very-private-body-text"
MESSAGE_KEY = "very-private-message-key"


@pytest.fixture
def access_lines(caplog):
    """The access lines logged so far, each formatted by the JSON formatter and parsed back."""
    caplog.set_level(logging.INFO, logger="producer_api.access")
    formatter = JsonFormatter()

    def lines() -> list[dict]:
        return [json.loads(formatter.format(record)) for record in caplog.records
                if record.name == "producer_api.access"]

    return lines


def test_each_request_writes_one_access_line_with_its_fields(client, access_lines):
    response = client.post("/produce", json={"topic": "orders", "key": MESSAGE_KEY, "message": {"t": BODY_TEXT}},
                           headers={"X-Request-ID": "abc-123.x_y"})
    assert response.status_code == 200
    [line] = access_lines()
    assert line["request_id"] == "abc-123.x_y" == response.headers["X-Request-ID"]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/produce", 200)
    assert (line["topic"], line["messages"]) == ("orders", 1)
    assert line["level"] == "INFO" and line["logger"] == "producer_api.access" and isinstance(line["pid"], int)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "T" in line["time"] and line["time"].endswith("+00:00")


def test_an_error_answer_says_its_kind_in_the_access_line(client, access_lines):
    assert client.post("/produce", data="{not json", content_type="application/json").status_code == 400
    assert client.post("/produce", json={"topic": "orders", "message": {}}).status_code == 200
    failed, succeeded = access_lines()
    assert failed["status"] == 400 and failed["error"] == "InvalidJSON"
    assert "error" not in succeeded


def test_batch_access_line_names_its_topics_and_counts_its_messages(client, access_lines):
    batch = [{"topic": "b", "message": {"t": BODY_TEXT}}, {"topic": "a", "message": {}}, {"topic": "b", "message": {}}]
    assert client.post("/produce/batch", json=batch).status_code == 200
    [line] = access_lines()
    assert (line["topic"], line["messages"]) == ("a,b", 3)


@pytest.mark.parametrize("offered", [None, "", "x" * 129, "has space", "semi;colon", "tab\tx", "ünï"])
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(client, access_lines, offered):
    headers = {} if offered is None else {"X-Request-ID": offered}
    response = client.get("/", headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert access_lines()[0]["request_id"] == request_id


def test_a_request_id_of_128_characters_is_kept(client):
    offered = "A" * 128
    assert client.get("/", headers={"X-Request-ID": offered}).headers["X-Request-ID"] == offered


def test_every_response_carries_a_request_id_even_errors(client):
    for response in (client.get("/nowhere"), client.post("/produce", data="{"), client.delete("/produce")):
        assert response.status_code >= 400 and re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_lines_never_hold_bodies_keys_or_secrets(make_settings, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "api-secret-0123456789"
    producer = FakeProducer()
    producer.fail_with = {0: KafkaUnavailable("Failed to produce message: Kafka is unavailable: down")}
    settings = make_settings(api_keys=(ApiKey("orders-team", secret),), security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_username="user", sasl_password="sasl-password-xyz")
    client = create_app(settings, producer=producer).test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    client.post("/produce", json={"topic": "t", "key": MESSAGE_KEY, "message": {"x": BODY_TEXT}}, headers=headers)
    client.post("/produce", data='{"topic": "t", "message": {"x": "' + BODY_TEXT + '"', headers=headers)
    client.post("/produce", json={"topic": "t", "message": {"x": BODY_TEXT}}, headers={"X-API-Key": "wrong-" + secret})
    formatted = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert any(json.loads(line).get("api_key") == "orders-team" for line in formatted.splitlines())
    assert "answered 503" in formatted
    for private in (BODY_TEXT, MESSAGE_KEY, secret, "sasl-password-xyz"):
        assert private not in formatted


class JsonLines(logging.Handler):
    """Keeps each record as the JSON formatter writes it when it is emitted."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


def test_app_lines_inside_a_request_carry_its_request_id(client, producer):
    handler, logger = JsonLines(), logging.getLogger("producer_api.errors")
    logger.addHandler(handler)
    try:
        producer.raise_before_send = KafkaUnavailable("Failed to produce message: down")
        response = client.post("/produce", json={"topic": "t", "message": {}}, headers={"X-Request-ID": "req-7"})
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 503
    [line] = handler.lines
    assert line["request_id"] == "req-7" and line["message"].startswith("answered 503")


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
    assert config["formatters"]["json"]["()"] == "producer_api.logs.JsonFormatter"


def test_batching_handler_writes_every_line_in_order_from_any_thread():
    import io
    import logging
    import threading

    from producer_api.logs import BatchingStreamHandler

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

    from producer_api import logs

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

    from producer_api import logs

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


def test_forked_workers_make_different_request_ids():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker after fork
        os.write(write_end, _new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child, parent = os.read(read_end, 64).decode(), _new_request_id()
    os.close(read_end)
    os.close(write_end)
    assert child != parent
    assert uuid.UUID(child).version == 4 and re.fullmatch(r"[0-9a-f]{32}", child)


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
    assert config["filters"]["client_caused"] == {"()": "producer_api.logs.ClientCausedFilter"}


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
    assert line("producer_api.errors", logging.ERROR, "answered %d", 503)  # not kafka-python's
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


def test_server_error_answers_are_error_lines_at_most_once_a_second_for_each_status(client, producer, caplog):
    caplog.set_level(logging.WARNING, logger="producer_api.errors")
    producer.raise_before_send = KafkaUnavailable("Failed to produce message: down")
    for _ in range(3):
        assert client.post("/produce", json={"topic": "t", "message": {}}).status_code == 503
    [line] = [record for record in caplog.records if record.name == "producer_api.errors"]
    assert line.levelname == "ERROR" and line.getMessage() == "answered 503: Failed to produce message: down"


@pytest.fixture
def service_logging(monkeypatch):
    """The service's handler as logging_config() sets it up, writing to a buffer, the only one access lines reach.

    It hangs on the access logger, which stops there: pytest adds its own handlers to the root logger.
    """
    stream = io.StringIO()
    handler = logs.BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ClientCausedFilter())
    handler.addFilter(RepeatedKafkaLineFilter())
    access = logging.getLogger("producer_api.access")
    monkeypatch.setattr(access, "handlers", [handler])
    monkeypatch.setattr(access, "propagate", False)
    monkeypatch.setattr(access, "level", logging.INFO)
    return stream


def drop_pytest_handlers() -> None:
    """Take off the handlers pytest's logging plugin adds for the test's call, so that the service's is the only one."""
    access = logging.getLogger("producer_api.access")
    access.handlers[:] = [handler for handler in access.handlers if type(handler) is logs.BatchingStreamHandler]


def written_entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_access_line_written_straight_is_the_line_logging_writes(client, service_logging, monkeypatch):
    drop_pytest_handlers()
    assert logs._sole_access_handler() is not None
    monkeypatch.setattr(random, "getrandbits", lambda bits: 7 << 100)  # the same request id both times
    client.post("/produce", json={"topic": "t", "message": {"a": 1}})
    monkeypatch.setattr(logs, "_sole_access_handler", lambda: None)  # through logging, as before
    client.post("/produce", json={"topic": "t", "message": {"a": 1}})
    straight, through_logging = written_entries(service_logging)
    for entry in (straight, through_logging):
        assert entry.pop("time") and entry.pop("duration_ms") >= 0
    assert straight == through_logging
    assert straight["message"] == "POST /produce 200" and straight["logger"] == "producer_api.access"


@pytest.mark.parametrize("change", ["another handler", "a filter on the access logger", "another formatter"])
def test_any_other_logging_set_up_gets_the_access_line_through_logging(client, service_logging, change):
    drop_pytest_handlers()
    access = logging.getLogger("producer_api.access")
    assert logs._sole_access_handler() is not None
    seen = []
    if change == "another handler":
        collector = logging.Handler()
        collector.emit = seen.append
        access.handlers.append(collector)
    elif change == "a filter on the access logger":
        access.addFilter(lambda record: seen.append(record) or True)
    else:
        access.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    try:
        assert logs._sole_access_handler() is None
        client.post("/produce", json={"topic": "t", "message": {"a": 1}})
    finally:
        access.filters.clear()
    if change == "another formatter":
        assert service_logging.getvalue() == "POST /produce 200\n"
    else:
        assert [record.getMessage() for record in seen] == ["POST /produce 200"]


def test_request_ids_are_the_hex_of_a_version_4_uuid(monkeypatch):
    for bits in (0, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF):
        monkeypatch.setattr(random, "getrandbits", lambda size, bits=bits: bits)
        assert _new_request_id() == uuid.UUID(int=bits, version=4).hex
    monkeypatch.undo()
    ids = {_new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(hex=value).version == 4 and uuid.UUID(hex=value).variant == uuid.RFC_4122 for value in ids)
