"""Unit-test fixtures: the app with a fake producer, so no broker is needed."""

import socket

import pytest

from bench.suite import BASELINE, CEILING_A, CEILING_B, CEILING_K, LOADS, SERVICE
from producer_api import create_app
from producer_api.core.errors import APIError
from producer_api.core.messages import Delivery


class FakeProducer:
    """Stands in for MessageProducer: records what it was asked to send and answers as told."""

    def __init__(self):
        self.sent = []
        self.connected = True
        self.fail_with: dict[int, APIError] = {}
        self.raise_before_send: APIError | None = None
        self.last_call = None

    def send_all(self, messages, wait=True):
        if self.raise_before_send is not None:
            raise self.raise_before_send
        self.last_call = "wait" if wait else "queue"
        deliveries = []
        for index, message in enumerate(messages):
            if index in self.fail_with:
                deliveries.append(Delivery(message, error=self.fail_with[index]))
            else:
                self.sent.append(message)
                offset = len(self.sent) - 1
                deliveries.append(Delivery(message, partition=0, offset=offset) if wait else Delivery(message))
        return deliveries

    def send_atomic(self, messages):
        deliveries = self.send_all(messages)
        self.last_call = "atomic"
        return deliveries

    def is_connected(self, timeout):
        return self.connected


@pytest.fixture
def producer():
    """A fake producer that records sent messages."""
    return FakeProducer()


@pytest.fixture
def app(make_settings, producer):
    """The app wired to the fake producer, with small limits so limit tests stay small."""
    return create_app(make_settings(max_body_bytes=64 * 1024, max_batch_messages=10), producer=producer)


@pytest.fixture
def client(app):
    """A Flask test client for the app."""
    return app.test_client()


def bench_run(config: str, load: str, rate: float, p99_ms: float = 10.0, rss_mib: float = 40.0) -> dict:
    """One benchmark measurement of the first repetition, with every field the benchmark's report reads."""
    record = {"repetition": 0, "config": config, "load": load, "rate": rate, "unit": "req/s", "errors": 0,
              "p50_ms": p99_ms / 3, "p99_ms": p99_ms, "worker_rss_kib": {"1": rss_mib * 1024, "2": 1024}}
    shape = next((known for known in LOADS if known.name == load), None)
    if shape is None:  # ceiling A: kafka-python's own processes, no wrk
        record["cpu_pct_of_one_core"] = {"producers": 150.0, "broker": 30.0}
        return record
    requests_per_s = rate / shape.batch
    # A closed loop: wrk's mean latency is its connections over the rate. One connection leaves cores idle.
    record.update(requests_per_s=requests_per_s,
                  wrk={"mean_ms": 1000 * shape.connections / requests_per_s},
                  cpu_pct_of_one_core={"wrk": 5.0, "server": min(140.0, 40.0 * shape.connections), "broker": 20.0})
    return record


@pytest.fixture
def bench_records() -> list[dict]:
    """A benchmark run: batches reach ceiling A, single messages half of ceiling B, and ceiling K 0.6 of it."""
    found = [bench_run(CEILING_A, "send() x 2 processes", 60_000), bench_run(CEILING_B, "single @32", 4_000)]
    for load in LOADS:
        if load.batch == 1:
            found += [bench_run(SERVICE, load.name, 2_000, p99_ms=30.0),
                      bench_run(CEILING_K, load.name, 2_400, p99_ms=28.0), bench_run(BASELINE, load.name, 1_000)]
        else:
            found += [bench_run(SERVICE, load.name, 57_000, rss_mib=160.0 if load.batch == 1000 else 45.0),
                      bench_run(BASELINE, load.name, 4_000)]
    return found


def received(sock: socket.socket) -> bytes:
    """Everything a socket has received so far, without waiting for more."""
    sock.setblocking(False)
    chunks = []
    while True:
        try:
            chunks.append(sock.recv(1 << 20))
        except BlockingIOError:
            return b"".join(chunks)
