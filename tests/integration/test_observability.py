"""Metrics and logs of the service as deployed: two gunicorn workers, a real broker, /metrics summed over both."""

import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import http

BODY_TEXT = "observability-body-text"
MONOTONIC = ("_total", "_count", "_sum", "_bucket")


def scrape(service) -> dict:
    """GET /metrics, parsed: {(sample name, sorted labels): value}."""
    status, headers, text = http("GET", service.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(samples: dict, endpoint: str, status: str) -> float:
    return samples.get(("producer_http_requests_total",
                        (("endpoint", endpoint), ("method", "POST"), ("status", status))), 0.0)


def log_entries(service) -> list[dict]:
    """Every line gunicorn and the app wrote, each of which must be one JSON object."""
    entries = []
    for line in service.log().splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return entries


def metrics_directory(service) -> Path:
    for entry in log_entries(service):
        found = re.fullmatch(r"metrics of every worker in (.+)", entry["message"])
        if found:
            return Path(found[1])
    raise AssertionError("gunicorn did not log its metrics directory")


def test_counts_and_logs_over_two_workers_survive_a_killed_worker(broker, start_gunicorn, new_topic, read_topic):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKERS="2")
    topic = new_topic()

    def single(n):
        body = json.dumps({"topic": topic, "key": f"key-{n}", "message": {"n": n, "text": BODY_TEXT}})
        return http("POST", service.url + "/produce", body, {"X-Request-ID": f"obs-single-{n}"})

    def batch(b):
        body = json.dumps([{"topic": topic, "message": {"b": b, "i": i, "text": BODY_TEXT}} for i in range(10)])
        return http("POST", service.url + "/produce/batch", body, {"X-Request-ID": f"obs-batch-{b}"})

    with ThreadPoolExecutor(16) as pool:
        batches = [pool.submit(batch, b) for b in range(3)]
        singles = list(pool.map(single, range(40)))
        batches = [future.result() for future in batches]
    assert all(status == 200 for status, _, _ in singles + batches), singles + batches
    assert {headers["X-Request-ID"] for _, headers, _ in singles} == {f"obs-single-{n}" for n in range(40)}
    assert len(read_topic(topic, 70)) == 70

    before = scrape(service)
    assert before[("producer_messages_produced_total", (("topic", topic),))] == 70
    assert requests_counted(before, "/produce", "200") == 40
    assert requests_counted(before, "/produce/batch", "200") == 3
    assert before[("producer_produce_latency_seconds_count", ())] == 43
    assert before[("producer_produce_latency_seconds_bucket", (("le", "+Inf"),))] == 43
    assert before[("producer_messages_pending", ())] == 0
    assert before.get(("producer_errors_total", ()), 0) == 0

    # One JSON access line per request, with the request id sent, served by both workers; no body text anywhere.
    deadline = time.monotonic() + 5  # a worker's request threads hand their lines to its log-writer thread
    while True:
        access = {entry["request_id"]: entry for entry in log_entries(service)
                  if entry["logger"] == "producer_api.access" and entry["request_id"].startswith("obs-")}
        if len(access) >= 43 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(access) == 43
    assert {(entry["path"], entry["status"], entry["topic"], entry["messages"]) for entry in access.values()} == {
        ("/produce", 200, topic, 1), ("/produce/batch", 200, topic, 10)}
    assert all(entry["duration_ms"] > 0 and entry["method"] == "POST" for entry in access.values())
    pids = {entry["pid"] for entry in access.values()}
    assert len(pids) == 2, "both workers should have served some of 43 concurrent requests"
    log = service.log()
    assert BODY_TEXT not in log and "key-1" not in log

    # gunicorn replaces a worker killed with SIGKILL; what the dead worker counted still counts.
    directory = metrics_directory(service)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while service.log().count(": serving") < 3:
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.2)
    after = scrape(service)
    for sample, value in before.items():
        if sample[0].endswith(MONOTONIC):
            assert after.get(sample, 0) >= value, sample
    assert after[("producer_messages_produced_total", (("topic", topic),))] == 70
    assert requests_counted(after, "/produce", "200") == 40
    assert not list(directory.glob(f"gauge_livesum_{victim}.db"))  # child_exit dropped the dead worker's gauge
    assert list(directory.glob(f"counter_{victim}.db"))

    for n in range(40, 45):
        assert single(n)[0] == 200
    assert scrape(service)[("producer_messages_produced_total", (("topic", topic),))] == 75

    # A temporary metrics directory made at start is removed when gunicorn stops.
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=35) == 0, service.log()
    assert not directory.exists()


def test_error_responses_are_counted_and_logged(broker, start_gunicorn, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left over from an earlier run")
    service = start_gunicorn(broker.bootstrap_servers, METRICS_MULTIPROC_DIR=str(directory))
    assert metrics_directory(service) == directory
    assert not (directory / "counter_1.db").exists()  # emptied at start
    status, headers, _ = http("POST", service.url + "/produce", '{"topic": "x"}', {"X-Request-ID": "x" * 129})
    assert status == 422 and re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    assert http("GET", service.url + "/nowhere")[0] == 404
    samples = scrape(service)
    assert samples[("producer_errors_total", (("kind", "InvalidRequest"),))] == 1
    assert samples[("producer_errors_total", (("kind", "NotFound"),))] == 1
    assert requests_counted(samples, "/produce", "422") == 1
    [line] = [entry for entry in log_entries(service)
              if entry["logger"] == "producer_api.access" and entry["request_id"] == headers["X-Request-ID"]]
    assert (line["status"], line["path"]) == (422, "/produce")
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=35) == 0
    assert directory.is_dir()  # a directory the operator named is kept
