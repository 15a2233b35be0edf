"""The measurements: each configuration in each repetition, interleaved, with progress on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import payload
from bench.broker import OffsetCounter, broker_cpu_seconds
from bench.ceiling import run_ceiling
from bench.loadgen import run_wrk
from bench.servers import Server
from local_kafka.cluster import Cluster
from producer_api.config import Settings

SERVICE, BASELINE, CEILING_A, CEILING_A0, CEILING_B = "service", "baseline C", "ceiling A", "ceiling A0", "ceiling B"
CEILING_S = "ceiling S"  # the service with Kafka answering at once (bench/apps/no_kafka_conf.py)
CEILING_K = "ceiling K"  # ceiling B plus the Kafka round trip (bench/apps/kafka_echo_app.py)
SERVICE_GTHREAD = "svc gthread"  # the service on gunicorn's gthread workers (--compare-gthread)
TOPICS = {SERVICE: "bench-service", BASELINE: "bench-baseline", CEILING_A: "bench-ceiling",
          CEILING_A0: "bench-ceiling-shipped", CEILING_B: "bench-echo", CEILING_S: "bench-no-kafka",
          CEILING_K: "bench-echo-kafka", SERVICE_GTHREAD: "bench-service-gthread"}
WRITING_CONFIGS = (SERVICE, BASELINE, CEILING_A, CEILING_A0, CEILING_K, SERVICE_GTHREAD)
PORTS = {SERVICE: 18001, BASELINE: 18002, CEILING_B: 18003, CEILING_S: 18004, CEILING_K: 18005,
         SERVICE_GTHREAD: 18006}
SERVER_SPECS = {  # gunicorn config file and app, relative to the repository
    SERVICE: ("gunicorn.conf.py", "wsgi:app"),
    BASELINE: ("bench/apps/naive_conf.py", "bench.apps.naive_app:app"),
    CEILING_B: ("gunicorn.conf.py", "bench.apps.echo_app:app"),
    CEILING_S: ("bench/apps/no_kafka_conf.py", "wsgi:app"),
    CEILING_K: ("gunicorn.conf.py", "bench.apps.kafka_echo_app:app"),
    SERVICE_GTHREAD: ("gunicorn.conf.py", "wsgi:app"),
}
SERVER_ENV = {SERVICE_GTHREAD: {"PRODUCER_WORKER_CLASS": "gthread"}}  # on top of the run's environment
WARMUP_CONNECTIONS = 8


@dataclass(frozen=True)
class Load:
    """One load shape: messages per request and concurrent connections."""

    batch: int
    connections: int

    @property
    def name(self) -> str:
        """A short label such as 'single @32' or 'batch 100 @8'."""
        kind = "single" if self.batch == 1 else f"batch {self.batch}"
        return f"{kind} @{self.connections}"

    @property
    def unit(self) -> str:
        """What the rate of this load counts."""
        return "req/s" if self.batch == 1 else "msg/s"


BATCH_CONNECTIONS = 8
LOADS = [Load(1, connections) for connections in (1, 8, 32, 128)] + [
    Load(batch, BATCH_CONNECTIONS) for batch in (100, 1000)
]
CEILING_B_LOAD = Load(1, 32)


@dataclass(frozen=True)
class Durations:
    """Seconds of each kind of run."""

    single_s: float
    batch_s: float
    ceiling_s: float
    warmup_s: float


def progress(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Suite:
    """Runs every configuration once per repetition against the benchmark's own broker."""

    def __init__(self, wrk: str, cluster: Cluster, env: dict[str, str], durations: Durations, work_dir: Path,
                 log_dir: Path, compare_gthread: bool = False):
        self.wrk = wrk
        # The service a second time on gthread workers, beside the service at every load: worker classes compared
        # in the same run, as paired ratios.
        self.server_names = [name for name in SERVER_SPECS if compare_gthread or name != SERVICE_GTHREAD]
        self.cluster = cluster
        self.env = env
        self.settings = Settings.from_env(env)
        self.durations = durations
        self.log_dir = log_dir
        self.counter = OffsetCounter()
        shapes = [(config, load.batch) for config in (SERVICE, BASELINE, SERVICE_GTHREAD) for load in LOADS
                  if config in self.server_names]
        self.bodies = {
            (config, batch): payload.write_lines(work_dir / f"{TOPICS[config]}-{batch}.txt",
                                                 payload.request_lines(TOPICS[config], batch))
            for config, batch in [*shapes, (CEILING_B, 1), (CEILING_S, 1), (CEILING_K, 1)]
        }

    def close(self) -> None:
        """Release the offset counter's connections."""
        self.counter.close()

    def run(self, repetitions: int) -> list[dict]:
        """Measure everything `repetitions` times and return one record per measurement."""
        records = []
        for repetition in range(repetitions):
            servers = {name: Server(name, *SERVER_SPECS[name], PORTS[name], {**self.env, **SERVER_ENV.get(name, {})},
                                    self._log(name))
                       for name in self.server_names}
            try:
                for server in servers.values():
                    server.start()
                for server in servers.values():
                    server.wait_ready(self.settings.workers)
                    progress(f"rep {repetition + 1}/{repetitions}: {server.name} ready at {server.url}, warming up")
                    run_wrk(self.wrk, f"{server.url}/produce", self.bodies[(server.name, 1)],
                            WARMUP_CONNECTIONS, self.durations.warmup_s)
                for step in self._schedule(repetition, servers):
                    record = {"repetition": repetition, **step()}
                    progress(f"rep {repetition + 1}/{repetitions}: {describe(record)}")
                    records.append(record)
            finally:
                for server in servers.values():
                    server.stop()
        return records

    def _log(self, name: str) -> Path:
        return self.log_dir / f"gunicorn-{TOPICS[name].removeprefix('bench-')}.log"

    def _schedule(self, repetition: int, servers: dict[str, Server]) -> list[Callable[[], dict]]:
        """This repetition's steps, each ceiling next to the service run it is compared with."""
        # Service and baseline alternate per load; odd repetitions run the whole list backwards to even out drift.
        steps = []
        for index, load in enumerate(LOADS):
            if load == CEILING_B_LOAD:
                steps.append(lambda load=load: self._http(servers[CEILING_B], load))
                steps.append(lambda load=load: self._http(servers[CEILING_S], load))
            if load.batch == 1:
                steps.append(lambda load=load: self._http(servers[CEILING_K], load))
            if load.batch > 1 and LOADS[index - 1].batch == 1:
                steps.append(self._ceiling_a)
                steps.append(lambda: self._ceiling_a(as_shipped=True))
            pair = [servers[SERVICE], servers[BASELINE]] + ([servers[SERVICE_GTHREAD]] if SERVICE_GTHREAD in servers
                                                            else [])
            for server in (pair if repetition % 2 == 0 else reversed(pair)):
                steps.append(lambda server=server, load=load: self._http(server, load))
        return steps if repetition % 2 == 0 else steps[::-1]

    def _http(self, server: Server, load: Load) -> dict:
        """One wrk run against one server, with CPU use, worker memory and the Kafka count around it."""
        topic = TOPICS[server.name]
        writes = server.name in WRITING_CONFIGS
        before = self.counter.settled_total(topic) if writes else 0
        server_cpu, broker_cpu = server.cpu_seconds(), broker_cpu_seconds(self.cluster)
        duration = self.durations.single_s if load.batch == 1 else self.durations.batch_s
        result = run_wrk(self.wrk, f"{server.url}{'/produce' if load.batch == 1 else '/produce/batch'}",
                         self.bodies[(server.name, load.batch)], load.connections, duration)
        server_cpu = server.cpu_seconds() - server_cpu
        broker_cpu = broker_cpu_seconds(self.cluster) - broker_cpu
        rate = result.ok * load.batch / result.duration_s
        record = {
            "config": server.name, "load": load.name, "batch": load.batch, "connections": load.connections,
            "unit": load.unit, "rate": rate, "requests_per_s": result.ok / result.duration_s,
            "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "errors": result.error_count,
            "wrk": result.as_dict(),
            "cpu_pct_of_one_core": {
                "wrk": 100 * result.cpu_s / result.duration_s,
                "server": 100 * server_cpu / result.duration_s,
                "broker": 100 * broker_cpu / result.duration_s,
            },
            "worker_rss_kib": server.rss_kib(),
        }
        if writes:
            written = self.counter.settled_total(topic) - before
            # Requests still in flight when wrk stopped (or timed out) may be written without a counted answer.
            unanswered_bound = (load.connections + result.error_count) * load.batch
            record["kafka"] = kafka_check(result.ok * load.batch, written, unanswered_bound)
        return record

    def _ceiling_a(self, as_shipped: bool = False) -> dict:
        """kafka-python alone in as many processes as the service has workers (A0: as shipped, see ceiling.py)."""
        config = CEILING_A0 if as_shipped else CEILING_A
        topic = TOPICS[config]
        before = self.counter.settled_total(topic)
        broker_cpu = broker_cpu_seconds(self.cluster)
        result = run_ceiling(self.settings, topic, self.settings.workers, self.durations.ceiling_s, as_shipped)
        broker_cpu = broker_cpu_seconds(self.cluster) - broker_cpu
        written = self.counter.settled_total(topic) - before
        return {
            "config": config, "load": f"send() x {result['processes']} processes", "unit": "msg/s",
            "rate": result["rate"], "messages": result["messages"], "duration_s": result["duration_s"],
            "value_bytes": result["value_bytes"], "errors": 0,
            "cpu_pct_of_one_core": {"producers": 100 * result["cpu_s"] / result["duration_s"],
                                    "broker": 100 * broker_cpu / result["duration_s"]},
            "kafka": kafka_check(result["written_expected"], written, 0),
        }


def kafka_check(expected: int, written: int, unanswered_bound: int) -> dict:
    """Compare the messages Kafka holds with those acknowledged to the client."""
    extra = written - expected
    if extra < 0:
        verdict = "MISSING"
    elif extra > unanswered_bound:
        verdict = "TOO MANY"
    else:
        verdict = "ok"
    return {"acknowledged": expected, "written": written, "extra": extra,
            "unanswered_bound": unanswered_bound, "verdict": verdict}


def describe(record: dict) -> str:
    """One progress line for a measurement."""
    text = f"{record['config']:<10} {record['load']:<26} {record['rate']:>10,.0f} {record['unit']}"
    if "p50_ms" in record:
        text += f"  p50 {record['p50_ms']:.1f} ms  p99 {record['p99_ms']:.1f} ms  errors {record['errors']}"
    if "kafka" in record:
        check = record["kafka"]
        text += f"  kafka: {check['written']:,} written, {check['acknowledged']:,} acknowledged, {check['verdict']}"
    return text
