"""Command line: python -m bench [--quick] [--repetitions N] [--duration S] [--compare-gthread] [--soak [SECONDS]]
[--output FILE] [--report FILE]."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import payload
from bench.broker import BOOTSTRAP, BrokerError, bench_cluster, create_topics
from bench.loadgen import LoadError, ensure_wrk, wrk_version
from bench.report import render, summarize
from bench.servers import REPO_DIR, ServerError
from bench.soak import render_soak, run_soak
from bench.suite import SERVICE, TOPICS, WRITING_CONFIGS, Durations, Suite, progress
from local_kafka.cluster import Cluster, ClusterError
from producer_api.config import ConfigError, Settings
from producer_api.core.messages import to_outgoing

RESULTS_DIR = REPO_DIR / "bench-results"
FULL = Durations(single_s=7, batch_s=10, ceiling_s=7, warmup_s=2)
QUICK = Durations(single_s=3, batch_s=5, ceiling_s=3, warmup_s=1)
SAMPLE_MIN_S = 20  # a soak shorter than two samples shows no trend


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repetition of short runs (under 3 minutes)")
    parser.add_argument("--repetitions", type=int, help="repetitions of every configuration (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds of each single-message run (batch runs: 1.4x)")
    parser.add_argument("--soak", type=float, nargs="?", const=300.0, metavar="SECONDS",
                        help="instead of the benchmark, soak the service for SECONDS (default 300) and report "
                             "its workers' memory trend")
    parser.add_argument("--soak-rate", type=float, default=200.0,
                        help="soak rate cap in requests/s (default 200); wrk pauses between requests, so the "
                             "rate reached is a little lower")
    parser.add_argument("--output", type=Path, help="results JSON (default bench-results/results.json, "
                                                    "or bench-results/soak.json with --soak)")
    parser.add_argument("--compare-gthread", action="store_true",
                        help="also run the service on gthread workers beside it at every load, and report the "
                             "paired ratios of the two worker classes (adds about a third to the run)")
    parser.add_argument("--keep-broker", action="store_true", help="leave the 'bench' Kafka running at the end")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="measure nothing: print the report of a results file an earlier run wrote")
    args = parser.parse_args(argv)
    if args.repetitions is not None and not 1 <= args.repetitions <= 20:
        parser.error("--repetitions must be between 1 and 20")
    if args.duration is not None and not 1 <= args.duration <= 120:
        parser.error("--duration must be between 1 and 120 seconds")
    if args.soak is not None and not SAMPLE_MIN_S <= args.soak <= 24 * 3600:
        parser.error(f"--soak must be between {SAMPLE_MIN_S} and 86400 seconds")
    if not 1 <= args.soak_rate <= 5000:
        parser.error("--soak-rate must be between 1 and 5000 requests per second")
    return args



def durations(args: argparse.Namespace) -> Durations:
    """The run lengths the flags ask for."""
    base = QUICK if args.quick else FULL
    if args.duration is None:
        return base
    return Durations(single_s=args.duration, batch_s=round(args.duration * 1.4), ceiling_s=args.duration,
                     warmup_s=base.warmup_s)


def metadata(args: argparse.Namespace, settings: Settings, wrk: str, run_durations: Durations | None) -> dict:
    """What the run was made with: versions, machine, settings and message sizes."""
    record = to_outgoing(payload.produce_request(TOPICS[SERVICE], 123), settings.client_id)
    return {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repetitions": None if args.soak else (args.repetitions or (1 if args.quick else 3)),
        "durations": None if run_durations is None else vars(run_durations),
        "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "dev_broker_running": bool(Cluster(name="dev").running()),  # an idle JVM beside the run costs a little
        "python": platform.python_version(), "wrk": wrk_version(wrk),
        "packages": {name: version(name) for name in ("kafka-python", "crc32c", "orjson", "Flask", "gunicorn",
                                                         "gevent", "marshmallow")},
        "broker": BOOTSTRAP,
        "settings": {"workers": settings.workers, "worker_class": settings.worker_class, "threads": settings.threads,
                     "worker_connections": settings.worker_connections, "linger_ms": settings.linger_ms,
                     "max_in_flight": settings.max_in_flight,
                     "batch_size": settings.batch_size, "compression_type": settings.compression_type},
        "request_bytes": payload.REQUEST_BYTES, "record_value_bytes": len(record.value),
    }


def report(path: Path) -> int:
    """Print the report of a saved results file, recomputed from its records, and return the exit status."""
    try:
        saved = json.loads(path.read_text())
        if "soak" in saved:
            print(render_soak(saved["soak"], saved["meta"]))
        else:
            records = saved["records"]
            print(render(records, summarize(records, saved["meta"]["cpus"]), saved["meta"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"bench: {path} is not a results file this benchmark wrote ({type(error).__name__}: {error})",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or the soak) and return the exit status."""
    args = parse_args(argv)
    if args.report:
        return report(args.report)
    began = time.monotonic()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP}
    output = args.output or RESULTS_DIR / ("soak.json" if args.soak else "results.json")
    log_dir = RESULTS_DIR / "logs"
    cluster = bench_cluster()
    started: list[int] = []
    try:
        settings = Settings.from_env(env)
        wrk = ensure_wrk()
        run_durations = None if args.soak else durations(args)
        meta = metadata(args, settings, wrk, run_durations)
        progress(f"starting Kafka 'bench' at {BOOTSTRAP} (logs in .kafka/bench)")
        started = cluster.start(timeout=180)
        create_topics([TOPICS[config] for config in WRITING_CONFIGS])
        with tempfile.TemporaryDirectory(prefix="bench-") as work_dir:
            if args.soak:
                results = {"soak": run_soak(wrk, env, args.soak, args.soak_rate, Path(work_dir), log_dir)}
            else:
                suite = Suite(wrk, cluster, env, run_durations, Path(work_dir), log_dir, args.compare_gthread)
                try:
                    records = suite.run(meta["repetitions"])
                finally:
                    suite.close()
                results = {"records": records, "summary": summarize(records, meta["cpus"])}
    except (ConfigError, LoadError, ServerError, BrokerError, ClusterError, RuntimeError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        if started and not args.keep_broker:
            progress("stopping Kafka 'bench'")
            cluster.stop()
    meta.update(elapsed_s=time.monotonic() - began, output=str(output), load_average_at_end=os.getloadavg())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    if args.soak:
        print(render_soak(results["soak"], meta))
    else:
        print(render(results["records"], results["summary"], meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
