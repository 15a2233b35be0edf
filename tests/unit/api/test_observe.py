"""Every request counted and logged, with a fake producer: its request id, its access line (nothing secret in it),
its metrics, and GET /metrics."""

import io
import json
import logging
import os
import random
import re
import uuid

import pytest

from producer_api import create_app
from producer_api.api.observe import _new_request_id
from producer_api.config import ApiKey
from producer_api.core.errors import KafkaUnavailable, TopicNotFound
from producer_api.observability import logs
from producer_api.observability.logs import ClientCausedFilter, JsonFormatter, RepeatedKafkaLineFilter
from tests.unit.conftest import FakeProducer
from tests.unit.observability.test_metrics import one, scraped, value

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
    handler, logger = JsonLines(), logging.getLogger("producer_api.api.errors")
    logger.addHandler(handler)
    try:
        producer.raise_before_send = KafkaUnavailable("Failed to produce message: down")
        response = client.post("/produce", json={"topic": "t", "message": {}}, headers={"X-Request-ID": "req-7"})
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 503
    [line] = handler.lines
    assert line["request_id"] == "req-7" and line["message"].startswith("answered 503")


def test_lines_logged_after_a_request_carry_no_request_id(client):
    handler, logger = JsonLines(), logging.getLogger("producer_api.test")
    logger.addHandler(handler)
    try:
        client.get("/", headers={"X-Request-ID": "req-8"})
        logger.warning("between requests")
    finally:
        logger.removeHandler(handler)
    [line] = handler.lines
    assert "request_id" not in line


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


def test_request_ids_are_the_hex_of_a_version_4_uuid(monkeypatch):
    for bits in (0, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF):
        monkeypatch.setattr(random, "getrandbits", lambda size, bits=bits: bits)
        assert _new_request_id() == uuid.UUID(int=bits, version=4).hex
    monkeypatch.undo()
    ids = {_new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(hex=value).version == 4 and uuid.UUID(hex=value).variant == uuid.RFC_4122 for value in ids)


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
    level = access.level
    access.setLevel(logging.INFO)  # setLevel, not the attribute: it clears what isEnabledFor() remembered
    yield stream
    access.setLevel(level)


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


# --- metrics: what every request counts, and GET /metrics ---


def test_metrics_serves_every_metric_in_prometheus_text_format(client):
    client.post("/produce", json=one("metrics-format"))
    samples = scraped(client)
    names = {name for name, _ in samples}
    for expected in ("producer_http_requests_total", "producer_messages_produced_total",
                     "producer_produce_latency_seconds_count", "producer_messages_pending",
                     "producer_reconnects_total"):
        assert expected in names, expected
    assert samples[("producer_messages_produced_total", (("topic", "metrics-format"),))] >= 1


def test_metrics_is_not_in_the_openapi_document(client):
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


@pytest.mark.parametrize(
    ("send", "endpoint", "status", "kind"),
    [
        (lambda c: c.post("/produce", data='{"topic": '), "/produce", "400", "InvalidJSON"),
        (lambda c: c.post("/produce", json={"topic": "t"}), "/produce", "422", "InvalidRequest"),
        (lambda c: c.get("/nowhere"), "unmatched", "404", "NotFound"),
        (lambda c: c.delete("/produce"), "unmatched", "405", "MethodNotAllowed"),
        (lambda c: c.post("/produce", data="x" * 70000), "/produce", "413", "RequestEntityTooLarge"),
        (lambda c: c.post("/produce", json=one("__consumer_offsets")), "/produce", "403", "Forbidden"),
    ],
)
def test_error_responses_are_counted_by_kind(client, send, endpoint, status, kind):
    method = "DELETE" if status == "405" else ("GET" if status == "404" else "POST")
    errors_before = value("producer_errors_total", kind=kind)
    requests_before = value("producer_http_requests_total", endpoint=endpoint, method=method, status=status)
    assert send(client).status_code == int(status)
    assert value("producer_errors_total", kind=kind) == errors_before + 1
    assert value("producer_http_requests_total", endpoint=endpoint, method=method, status=status) == (
        requests_before + 1)


def test_kafka_errors_raised_before_sending_are_counted(client, producer):
    producer.raise_before_send = TopicNotFound("Failed to produce message: Topic 'gone' does not exist")
    before = value("producer_errors_total", kind="TopicNotFound")
    assert client.post("/produce", json=one("gone")).status_code == 404
    assert value("producer_errors_total", kind="TopicNotFound") == before + 1


def test_unexpected_errors_are_counted_without_their_class(client, producer):
    producer.raise_before_send = KeyError("internal")
    before = value("producer_errors_total", kind="InternalServerError")
    assert client.post("/produce", json=one("t")).status_code == 500
    assert value("producer_errors_total", kind="InternalServerError") == before + 1
    assert value("producer_errors_total", kind="KeyError") == 0


def test_refused_api_keys_are_counted(make_settings):
    settings = make_settings(api_keys=(ApiKey("orders", "orders-secret-0123456789", ("orders*",)),))
    client = create_app(settings, producer=FakeProducer()).test_client()
    before = value("producer_errors_total", kind="Unauthorized")
    response = client.post("/produce", json=one("orders"))
    assert response.status_code == 401 and response.headers["X-Request-ID"]
    assert value("producer_errors_total", kind="Unauthorized") == before + 1


class BusyProducer(FakeProducer):
    """A fake producer that reports messages waiting for Kafka and fire-and-forget failures."""

    pending = 7
    queued_failures = 0


def test_pending_and_queued_failures_come_from_the_producer(make_settings):
    producer = BusyProducer()
    client = create_app(make_settings(), producer=producer).test_client()
    failures_before = value("producer_queued_messages_failed_total")
    assert scraped(client)[("producer_messages_pending", ())] == 7
    producer.pending, producer.queued_failures = 0, 2
    assert scraped(client)[("producer_messages_pending", ())] == 0
    scraped(client)  # sampled again: the same two failures are not counted twice
    assert value("producer_queued_messages_failed_total") == failures_before + 2


def test_an_unhealthy_answer_is_counted_as_its_own_kind(client, producer):
    producer.connected = False
    before = value("producer_errors_total", kind="Unhealthy")
    assert client.get("/health").status_code == 503
    assert value("producer_errors_total", kind="Unhealthy") == before + 1
    assert value("producer_errors_total", kind="503") == 0.0
