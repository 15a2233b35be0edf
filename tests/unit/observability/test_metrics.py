"""Prometheus metrics with a fake producer: what each message and its outcome counts, reconnects, and the sums over
gunicorn's worker processes. What every request counts, and GET /metrics: tests/unit/api/test_observe.py."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from producer_api.core.errors import DeliveryTimeout
from producer_api.observability import metrics

REPO = Path(__file__).resolve().parents[3]


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


def test_replacing_the_kafka_producer_counts_a_reconnect(make_settings):
    from producer_api.kafka.producer import MessageProducer

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
