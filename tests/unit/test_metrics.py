"""Prometheus metrics with a fake producer: what each request, message and error counts, and GET /metrics."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from producer_api import create_app, metrics
from producer_api.config import ApiKey
from producer_api.errors import DeliveryTimeout, TopicNotFound
from tests.unit.conftest import FakeProducer

REPO = Path(__file__).resolve().parents[2]


def value(name: str, **labels) -> float:
    """A sample of this process's registry (0 when it has not been counted yet)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(client) -> dict:
    """GET /metrics, parsed: {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def one(topic, **extra):
    return {"topic": topic, "message": {"n": 1}, **extra}


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


def test_acknowledged_messages_requests_and_latency_are_counted(client):
    topic = "metrics-acked"
    latency_before = value("producer_produce_latency_seconds_count")
    requests_before = value("producer_http_requests_total", endpoint="/produce", method="POST", status="200")
    batches_before = value("producer_http_requests_total", endpoint="/produce/batch", method="POST", status="200")
    for _ in range(3):
        assert client.post("/produce", json=one(topic)).status_code == 200
    assert client.post("/produce/batch", json=[one(topic)] * 4).status_code == 200
    assert value("producer_messages_produced_total", topic=topic) == 7
    assert value("producer_produce_latency_seconds_count") == latency_before + 4  # one per request
    assert value("producer_http_requests_total", endpoint="/produce", method="POST", status="200") == (
        requests_before + 3)
    assert value("producer_http_requests_total", endpoint="/produce/batch", method="POST", status="200") == (
        batches_before + 1)


def test_queued_messages_are_counted_apart_and_not_timed(client):
    topic = "metrics-queued"
    latency_before = value("producer_produce_latency_seconds_count")
    assert client.post("/produce?wait=false", json=one(topic)).status_code == 202
    assert client.post("/produce/batch?wait=false", json=[one(topic)] * 2).status_code == 202
    assert value("producer_messages_queued_total", topic=topic) == 3
    assert value("producer_messages_produced_total", topic=topic) == 0
    assert value("producer_produce_latency_seconds_count") == latency_before


def test_failed_messages_are_counted_by_error(client, producer):
    topic = "metrics-partial"
    producer.fail_with = {1: DeliveryTimeout("slow")}
    assert client.post("/produce/batch", json=[one(topic)] * 3).status_code == 207
    assert value("producer_messages_produced_total", topic=topic) == 2
    assert value("producer_messages_failed_total", topic=topic, kind="DeliveryTimeout") == 1


def test_a_single_failed_message_is_counted_by_error_and_not_timed(client, producer):
    topic = "metrics-single-failed"
    latency_before = value("producer_produce_latency_seconds_count")
    producer.fail_with = {0: DeliveryTimeout("slow")}
    assert client.post("/produce", json=one(topic)).status_code == 504
    assert value("producer_messages_failed_total", topic=topic, kind="DeliveryTimeout") == 1
    assert value("producer_messages_produced_total", topic=topic) == 0
    assert value("producer_produce_latency_seconds_count") == latency_before


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


def test_replacing_the_kafka_producer_counts_a_reconnect(make_settings):
    from producer_api.kafka_producer import MessageProducer

    # Nothing listens on port 1; the producer never needs to, it is only replaced and closed.
    producer = MessageProducer(make_settings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=100,
                                             delivery_timeout_ms=200, linger_ms=0))
    before = value("producer_reconnects_total")
    try:
        producer._replace(producer._producer)
        producer._replace(object())  # not the current producer: another request replaced it already
    finally:
        producer.close(0)
    assert value("producer_reconnects_total") == before + 1


def test_multiprocess_mode_sums_every_process_and_keeps_dead_ones_counters(tmp_path):
    # Each process as a gunicorn worker would be: the directory set before prometheus_client is imported.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_MULTIPROC_DIR": str(tmp_path)}
    worker = textwrap.dedent("""
        import sys
        from producer_api import create_app
        from tests.unit.conftest import FakeProducer
        client = create_app(producer=FakeProducer()).test_client()
        for _ in range(int(sys.argv[1])):
            assert client.post("/produce", json={"topic": "mp", "message": {}}).status_code == 200
        if sys.argv[2] == "scrape":
            sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """)

    def run(count: int, then: str) -> str:
        result = subprocess.run([sys.executable, "-c", worker, str(count), then], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run(3, "exit")
    run(4, "exit")
    text = run(5, "scrape")
    samples = {(sample.name, json.dumps(sample.labels, sort_keys=True)): sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples}
    assert samples[("producer_messages_produced_total", '{"topic": "mp"}')] == 12
    assert samples[("producer_produce_latency_seconds_count", "{}")] == 12
    requests = json.dumps({"endpoint": "/produce", "method": "POST", "status": "200"}, sort_keys=True)
    assert samples[("producer_http_requests_total", requests)] == 12
    assert len(list(tmp_path.glob("counter_*.db"))) == 3


def test_an_unhealthy_answer_is_counted_as_its_own_kind(client, producer):
    producer.connected = False
    before = value("producer_errors_total", kind="Unhealthy")
    assert client.get("/health").status_code == 503
    assert value("producer_errors_total", kind="Unhealthy") == before + 1
    assert value("producer_errors_total", kind="503") == 0.0
