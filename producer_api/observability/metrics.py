"""Prometheus metrics: what they count, and the text a scrape answers.

Under gunicorn every worker writes its values to files in METRICS_MULTIPROC_DIR (prometheus_client's multiprocess
mode, set up by the server runtime before any worker starts) and a scrape sums the files of every worker, the dead
ones' counters included, so counters never go backwards when gunicorn replaces a worker. Outside gunicorn (the
Flask test client) the values live in this process's registry.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# Only the service's own metrics: the same names whether one process or many answer.
REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "producer_http_requests", "HTTP requests answered, by route, method and status",
    ["endpoint", "method", "status"], registry=REGISTRY,
)
ERRORS = Counter(
    "producer_errors", "Error responses, by the API error answered (e.g. TopicNotFound, NotFound)",
    ["kind"], registry=REGISTRY,
)
MESSAGES_PRODUCED = Counter(
    "producer_messages_produced", "Messages Kafka acknowledged (acks=all)", ["topic"], registry=REGISTRY,
)
MESSAGES_QUEUED = Counter(
    "producer_messages_queued", "Messages queued without waiting for Kafka (wait=false)", ["topic"],
    registry=REGISTRY,
)
MESSAGES_FAILED = Counter(
    "producer_messages_failed", "Messages sent to Kafka that it did not acknowledge, by the error answered",
    ["topic", "kind"], registry=REGISTRY,
)
QUEUED_MESSAGES_FAILED = Counter(
    "producer_queued_messages_failed", "Queued (wait=false) messages that Kafka did not take afterwards",
    registry=REGISTRY,
)
PRODUCE_LATENCY = Histogram(
    "producer_produce_latency_seconds",
    "Per request that waited for Kafka and had a message acknowledged: time from sending to Kafka's last answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PENDING = Gauge(
    "producer_messages_pending", "Messages waiting for Kafka's answer, over every worker",
    multiprocess_mode="livesum", registry=REGISTRY,
)
RECONNECTS = Counter(
    "producer_reconnects", "Kafka producers replaced by a fresh one after a delivery timeout or a fatal error",
    registry=REGISTRY,
)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def exposition(directory: str | None) -> bytes:
    """Every metric in Prometheus text format: summed over the workers' files in directory, else this process's."""
    if directory is None:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def count_request(route: str, method: str, status: int, error_kind: str | None) -> None:
    """Count one answered HTTP request, and its error kind if it failed."""
    HTTP_REQUESTS.labels(route, method if method in _METHODS else "other", str(status)).inc()
    if status >= 400:
        ERRORS.labels(error_kind or str(status)).inc()


def record_deliveries(deliveries: list, waited: bool, started: float) -> list:
    """Count each message's outcome and, if the request waited for Kafka, how long Kafka took; return deliveries."""
    elapsed = time.perf_counter() - started
    if len(deliveries) == 1:  # POST /produce: three Tallies and their loops cost more than the writes themselves
        delivery = deliveries[0]
        if delivery.error is not None:
            MESSAGES_FAILED.labels(delivery.message.topic, type(delivery.error).__name__).inc()
        elif waited:
            MESSAGES_PRODUCED.labels(delivery.message.topic).inc()
            PRODUCE_LATENCY.observe(elapsed)
        else:
            MESSAGES_QUEUED.labels(delivery.message.topic).inc()
        return deliveries
    acknowledged, queued, failed = Tally(), Tally(), Tally()
    for delivery in deliveries:
        if delivery.error is not None:
            failed[delivery.message.topic, type(delivery.error).__name__] += 1
        elif waited:
            acknowledged[delivery.message.topic] += 1
        else:
            queued[delivery.message.topic] += 1
    # One increment per label set, not per message: a batch of 1000 costs a few writes.
    for topic, count in acknowledged.items():
        MESSAGES_PRODUCED.labels(topic).inc(count)
    for topic, count in queued.items():
        MESSAGES_QUEUED.labels(topic).inc(count)
    for (topic, kind), count in failed.items():
        MESSAGES_FAILED.labels(topic, kind).inc(count)
    if acknowledged:
        PRODUCE_LATENCY.observe(elapsed)
    return deliveries


# Queued failures already counted, per producer (the producer only keeps a running total).
_failures_counted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sample_lock = threading.Lock()


def sample_producer(producer) -> None:
    """Copy what a producer knows into this process's metrics: its pending messages, its queued failures."""
    with _sample_lock:
        PENDING.set(getattr(producer, "pending", 0) if producer is not None else 0)
        failures = getattr(producer, "queued_failures", None)
        if failures is None:
            return
        new = failures - _failures_counted.get(producer, 0)
        if new > 0:
            QUEUED_MESSAGES_FAILED.inc(new)
            _failures_counted[producer] = failures


def start_sampler(producer: Callable[[], object], interval: float = 0.5) -> threading.Thread:
    """Sample the worker's producer every interval seconds, so /metrics served by another worker sees it too.

    A gunicorn worker starts it in post_fork: in multiprocess mode only what a worker wrote to its file counts,
    and fire-and-forget messages finish while nobody asks.
    """

    def run():
        while True:
            sample_producer(producer())
            time.sleep(interval)

    thread = threading.Thread(target=run, name="metrics-sampler", daemon=True)
    thread.start()
    return thread
