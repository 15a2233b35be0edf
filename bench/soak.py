"""Soak: the service under a steady moderate load for a while, its workers' memory sampled every 10 s."""

from __future__ import annotations

import time
from pathlib import Path

from bench import payload, procstat
from bench.broker import OffsetCounter
from bench.loadgen import WrkRun, run_wrk
from bench.servers import Server
from bench.suite import PORTS, SERVER_SPECS, SERVICE, TOPICS, WARMUP_CONNECTIONS, kafka_check, progress
from producer_api.config import Settings

SAMPLE_EVERY_S = 10
SOAK_CONNECTIONS = 4
# Beside the single messages, batches keep the batch path's memory (parsed bodies, results) in the soak too.
SOAK_BATCH = 100
SOAK_BATCH_CONNECTIONS = 2
SOAK_BATCH_SHARE = 0.1  # batch requests per single request: 200 req/s of singles bring 20 batches, 2,000 msg/s
STEADY_SLOPE_KIB_PER_MIN = 256  # below this over the second half, the worker's memory is called steady


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def trend(samples: list[dict]) -> list[dict]:
    """First, last and slope of RSS, and CPU time used, for each worker present in every sample and for their sum."""
    pids = set.intersection(*(set(sample["rss_kib"]) for sample in samples))
    series = {f"worker {pid}": [(s["t"], s["rss_kib"][pid]) for s in samples] for pid in sorted(pids)}
    series["all workers"] = [(s["t"], sum(s["rss_kib"][pid] for pid in pids)) for s in samples]
    # CPU time between the first and the last sample shows which workers served the load: a worker left idle
    # would stay flat whatever the code does with memory.
    cpu = {f"worker {pid}": samples[-1]["cpu_s"][pid] - samples[0]["cpu_s"][pid] for pid in sorted(pids)}
    cpu["all workers"] = sum(cpu.values())
    rows = []
    for name, points in series.items():
        second_half = points[len(points) // 2:]
        late_slope = slope_per_minute(second_half)
        rows.append({"series": name, "first_kib": points[0][1], "last_kib": points[-1][1],
                     "max_kib": max(v for _, v in points), "growth_kib": points[-1][1] - points[0][1],
                     "slope_kib_per_min": slope_per_minute(points), "second_half_slope_kib_per_min": late_slope,
                     "steady": abs(late_slope) < STEADY_SLOPE_KIB_PER_MIN, "cpu_s": cpu[name]})
    return rows


def run_soak(wrk: str, env: dict[str, str], seconds: float, rate: float, work_dir: Path, log_dir: Path) -> dict:
    """Run POST /produce at about `rate` requests/s and batches beside them for `seconds`, sampling worker RSS."""
    settings = Settings.from_env(env)
    topic = TOPICS[SERVICE]
    bodies = payload.write_lines(work_dir / "soak.txt", payload.request_lines(topic, 1))
    batch_bodies = payload.write_lines(work_dir / "soak-batch.txt", payload.request_lines(topic, SOAK_BATCH))
    pause_ms = 1000 * SOAK_CONNECTIONS / rate
    batch_pause_ms = 1000 * SOAK_BATCH_CONNECTIONS / (rate * SOAK_BATCH_SHARE)
    server = Server(SERVICE, *SERVER_SPECS[SERVICE], PORTS[SERVICE], env, log_dir / "soak.log")
    counter = OffsetCounter()
    try:
        server.start()
        server.wait_ready(settings.workers)
        progress(f"soak: service ready at {server.url}, warming up")
        run_wrk(wrk, f"{server.url}/produce", bodies, WARMUP_CONNECTIONS, 3)
        before = counter.settled_total(topic)
        progress(f"soak: {seconds:.0f} s at about {rate:.0f} req/s ({SOAK_CONNECTIONS} connections, "
                 f"{pause_ms:.0f} ms pause) and {rate * SOAK_BATCH_SHARE:.0f} batches of {SOAK_BATCH}/s "
                 f"({SOAK_BATCH_CONNECTIONS} connections), RSS sampled every {SAMPLE_EVERY_S} s")
        run = WrkRun(wrk, f"{server.url}/produce", bodies, SOAK_CONNECTIONS, seconds, pause_ms)
        batch_run = WrkRun(wrk, f"{server.url}/produce/batch", batch_bodies, SOAK_BATCH_CONNECTIONS, seconds,
                           batch_pause_ms)
        began = time.monotonic()
        samples = []
        for index in range(int(seconds // SAMPLE_EVERY_S) + 1):
            time.sleep(max(began + index * SAMPLE_EVERY_S - time.monotonic(), 0))
            sizes = server.rss_kib()
            samples.append({"t": round(time.monotonic() - began, 1), "rss_kib": sizes,
                            "cpu_s": {pid: procstat.cpu_seconds(pid) for pid in sizes}})
            progress(f"soak: t={samples[-1]['t']:>5.0f} s  worker RSS MiB "
                     + " / ".join(f"{size / 1024:.1f}" for size in sizes.values()))
        result, batch_result = run.result(), batch_run.result()
        written = counter.settled_total(topic) - before
    finally:
        counter.close()
        server.stop()
    return {
        "seconds": seconds, "target_rate": rate, "connections": SOAK_CONNECTIONS,
        "rate": result.ok / result.duration_s, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
        "errors": result.error_count, "wrk": result.as_dict(),
        "batch": {"messages_per_request": SOAK_BATCH, "rate": batch_result.ok / batch_result.duration_s,
                  "p50_ms": batch_result.p50_ms, "p99_ms": batch_result.p99_ms,
                  "errors": batch_result.error_count, "wrk": batch_result.as_dict()},
        "samples": samples, "trend": trend(samples),
        "kafka": kafka_check(result.ok + batch_result.ok * SOAK_BATCH, written,
                             SOAK_CONNECTIONS + result.error_count
                             + (SOAK_BATCH_CONNECTIONS + batch_result.error_count) * SOAK_BATCH),
    }


def render_soak(soak: dict, meta: dict) -> str:
    """The soak's report: load achieved, the RSS trend of each worker, and the Kafka check."""
    check = soak["kafka"]
    lines = [
        f"Soak: {soak['seconds']:.0f} s of POST /produce at {soak['rate']:,.0f} req/s "
        f"(at most {soak['target_rate']:.0f}), p50 {soak['p50_ms']:.1f} ms, p99 {soak['p99_ms']:.1f} ms, "
        f"errors {soak['errors']}",
        f"  and POST /produce/batch of {soak['batch']['messages_per_request']} at {soak['batch']['rate']:,.1f} "
        f"req/s, p50 {soak['batch']['p50_ms']:.1f} ms, p99 {soak['batch']['p99_ms']:.1f} ms, "
        f"errors {soak['batch']['errors']}",
        f"  {'series':<16} {'first MiB':>10} {'last MiB':>10} {'max MiB':>10} {'slope KiB/min':>14} "
        f"{'2nd half KiB/min':>17} {'CPU s':>7}  trend",
    ]
    for row in soak["trend"]:
        lines.append(f"  {row['series']:<16} {row['first_kib'] / 1024:>10.1f} {row['last_kib'] / 1024:>10.1f} "
                     f"{row['max_kib'] / 1024:>10.1f} {row['slope_kib_per_min']:>14.0f} "
                     f"{row['second_half_slope_kib_per_min']:>17.0f} {row['cpu_s']:>7.1f}  "
                     f"{'steady' if row['steady'] else 'GROWING'}")
    lines += [f"  Kafka check: {check['acknowledged']:,} acknowledged, {check['written']:,} in Kafka -> "
              f"{check['verdict']}", "", f"took {meta['elapsed_s']:.0f} s; results in {meta['output']}"]
    return "\n".join(lines)
