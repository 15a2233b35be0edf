"""The headline figures of the service in several variants, paired in one run.

`python -m bench.compare [--rev REV] [--off] [--without NAME ...]` measures, in every repetition and at every
headline load (single @1, @8, @32; batch 100 and 1000 @8), the service as checked out beside:
- `rev:REV`, the service of an earlier commit, served from a git worktree of it (.bench-worktrees/, git-ignored);
- `off`, this service with PRODUCER_TUNING=off (every change to a library's internals left out);
- `without:NAME`, this service with PRODUCER_TUNING_SKIP=NAME (one change left out: what it is worth).
The loads run each variant in turn, the order reversed every other repetition, and the report gives each
variant's rate over the service's within each repetition, then the median of those ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from bench import payload
from bench.broker import BOOTSTRAP, BrokerError, OffsetCounter, bench_cluster, create_topics
from bench.loadgen import LoadError, ensure_wrk, run_wrk
from bench.servers import REPO_DIR, Server, ServerError
from bench.suite import BATCH_CONNECTIONS, Load, kafka_check, progress
from local_kafka.cluster import ClusterError
from producer_api import tuning
from producer_api.config import ConfigError, Settings

HEADLINE_LOADS = [Load(1, 1), Load(1, 8), Load(1, 32), Load(100, BATCH_CONNECTIONS), Load(1000, BATCH_CONNECTIONS)]
CURRENT = "service"
WORKTREES_DIR = REPO_DIR / ".bench-worktrees"
FIRST_PORT = 18101
RESULTS = REPO_DIR / "bench-results" / "compare.json"


@dataclass(frozen=True)
class Variant:
    """One way of serving the service: its name, the checkout it runs from, and its environment on top."""

    name: str
    env: dict
    rev: str | None = None

    @property
    def topic(self) -> str:
        """The topic this variant writes to, its own so that Kafka's count checks each variant."""
        return "bench-cmp-" + "".join(char if char.isalnum() else "-" for char in self.name)


def variants(rev: str | None, off: bool, without: list[str]) -> list[Variant]:
    """The variants the flags ask for, the service as checked out first."""
    chosen = [Variant(CURRENT, {})]
    if rev:
        chosen.append(Variant(f"rev:{rev}", {}, rev))
    if off:
        chosen.append(Variant("off", {"PRODUCER_TUNING": "off"}))
    for name in without:
        if name not in tuning.NAMES:
            raise ValueError(f"--without {name}: no such tuning (known: {', '.join(sorted(tuning.NAMES))})")
        chosen.append(Variant(f"without:{name}", {"PRODUCER_TUNING_SKIP": name}))
    return chosen


def worktree(rev: str) -> Path:
    """A git worktree of rev, made once and kept for later runs."""
    path = WORKTREES_DIR / rev
    if not (path / "gunicorn.conf.py").exists():
        WORKTREES_DIR.mkdir(exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), rev], cwd=REPO_DIR, check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
    return path


def paired(records: list[dict], variant: str, load: str, field: str = "rate") -> list[float]:
    """A variant's field over the service's, within each repetition that measured both at this load."""
    values = []
    for repetition in sorted({record["repetition"] for record in records}):
        mine = _find(records, repetition, variant, load)
        base = _find(records, repetition, CURRENT, load)
        if mine and base and base[field] > 0:
            values.append(mine[field] / base[field])
    return values


def _find(records: list[dict], repetition: int, variant: str, load: str) -> dict | None:
    return next((record for record in records if (record["repetition"], record["variant"], record["load"])
                 == (repetition, variant, load)), None)


def render(records: list[dict]) -> str:
    """The table of median rates and p99, and every variant's paired ratio to the service at each load."""
    names = list(dict.fromkeys(record["variant"] for record in records))
    lines = [f"{'variant':<30} {'load':<16} {'rate (median)':>16} {'p99 ms':>8} {'errors':>7}  kafka"]
    for name in names:
        for load in HEADLINE_LOADS:
            runs = [record for record in records if record["variant"] == name and record["load"] == load.name]
            if not runs:
                continue
            verdicts = {run["kafka"]["verdict"] for run in runs}
            lines.append(f"{name:<30} {load.name:<16} {median(run['rate'] for run in runs):>10,.0f} {load.unit:<5} "
                         f"{median(run['p99_ms'] for run in runs):>8.1f} {sum(run['errors'] for run in runs):>7}  "
                         f"{', '.join(sorted(verdicts))}")
    lines += ["", "Rate of each variant over the service's, paired within each repetition (median [each]):"]
    header = f"{'variant':<30}" + "".join(f"{load.name:>18}" for load in HEADLINE_LOADS)
    lines.append(header)
    for name in names[1:]:
        cells = []
        for load in HEADLINE_LOADS:
            values = paired(records, name, load.name)
            cells.append(f"{median(values):>18.3f}" if values else f"{'-':>18}")
        lines.append(f"{name:<30}" + "".join(cells))
    lines += ["", "Per repetition:"]
    for name in names[1:]:
        for load in HEADLINE_LOADS:
            values = paired(records, name, load.name)
            if values:
                lines.append(f"  {name:<28} {load.name:<16} " + ", ".join(f"{value:.3f}" for value in values))
    return "\n".join(lines)


class Comparison:
    """Runs every variant at every headline load, interleaved, against the benchmark's own broker."""

    def __init__(self, wrk: str, chosen: list[Variant], env: dict, single_s: float, batch_s: float, work_dir: Path,
                 log_dir: Path):
        self.wrk, self.variants, self.env = wrk, chosen, env
        self.single_s, self.batch_s = single_s, batch_s
        self.log_dir = log_dir
        self.workers = Settings.from_env(env).workers
        self.counter = OffsetCounter()
        self.bodies = {(variant.name, load.batch): payload.write_lines(
            work_dir / f"{variant.topic}-{load.batch}.txt", payload.request_lines(variant.topic, load.batch))
            for variant in chosen for load in HEADLINE_LOADS}

    def run(self, repetitions: int) -> list[dict]:
        """Measure every variant at every load, repetitions times; one record per measurement."""
        records = []
        for repetition in range(repetitions):
            servers = [self._server(index, variant) for index, variant in enumerate(self.variants)]
            try:
                for server in servers:
                    server.start()
                for server in servers:
                    server.wait_ready(self.workers)
                    run_wrk(self.wrk, f"{server.url}/produce", self.bodies[(server.name, 1)], 8, 2)
                for load in HEADLINE_LOADS:
                    order = servers if repetition % 2 == 0 else servers[::-1]
                    for server in order:
                        record = {"repetition": repetition, "variant": server.name, **self._measure(server, load)}
                        progress(f"rep {repetition + 1}/{repetitions}: {server.name:<28} {load.name:<16} "
                                 f"{record['rate']:>10,.0f} {load.unit}  p99 {record['p99_ms']:.1f} ms  "
                                 f"kafka {record['kafka']['verdict']}")
                        records.append(record)
            finally:
                for server in servers:
                    server.stop()
        return records

    def _server(self, index: int, variant: Variant) -> Server:
        cwd = worktree(variant.rev) if variant.rev else REPO_DIR
        return Server(variant.name, "gunicorn.conf.py", "wsgi:app", FIRST_PORT + index, {**self.env, **variant.env},
                      self.log_dir / f"compare-{variant.topic}.log", cwd=cwd)

    def _measure(self, server: Server, load: Load) -> dict:
        topic = next(variant.topic for variant in self.variants if variant.name == server.name)
        before = self.counter.settled_total(topic)
        duration = self.single_s if load.batch == 1 else self.batch_s
        result = run_wrk(self.wrk, f"{server.url}{'/produce' if load.batch == 1 else '/produce/batch'}",
                         self.bodies[(server.name, load.batch)], load.connections, duration)
        written = self.counter.settled_total(topic) - before
        return {"load": load.name, "rate": result.ok * load.batch / result.duration_s, "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms, "errors": result.error_count,
                "kafka": kafka_check(result.ok * load.batch, written,
                                     (load.connections + result.error_count) * load.batch)}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its report; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="also serve this earlier commit (a git revision) from a worktree")
    parser.add_argument("--off", action="store_true", help="also serve this service with PRODUCER_TUNING=off")
    parser.add_argument("--without", action="append", default=[], metavar="NAME",
                        help="also serve this service without the tuning NAME (repeatable; 'speed' for every "
                             "speed change, one variant each)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each single-message run "
                                                                   "(batch runs: 1.4x)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    speed = [entry.name for entry in tuning.REGISTER if entry.kind == tuning.SPEED]
    without = [name for entry in args.without for name in (speed if entry == "speed" else [entry])]
    try:
        chosen = variants(args.rev, args.off, without)
    except ValueError as error:
        parser.error(str(error))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP}
    cluster = bench_cluster()
    started: list[int] = []
    began = time.monotonic()
    try:
        wrk = ensure_wrk()
        progress(f"starting Kafka 'bench' at {BOOTSTRAP}")
        started = cluster.start(timeout=180)
        create_topics([variant.topic for variant in chosen])
        with tempfile.TemporaryDirectory(prefix="bench-compare-") as work_dir:
            comparison = Comparison(wrk, chosen, env, args.duration, round(args.duration * 1.4), Path(work_dir),
                                    REPO_DIR / "bench-results" / "logs")
            try:
                records = comparison.run(args.repetitions)
            finally:
                comparison.counter.close()
    except (ConfigError, LoadError, ServerError, BrokerError, ClusterError, RuntimeError,
            subprocess.SubprocessError) as error:
        print(f"bench.compare: {error}", file=sys.stderr)
        return 1
    finally:
        if started:
            progress("stopping Kafka 'bench'")
            cluster.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"variants": [variant.name for variant in chosen], "records": records,
                                       "elapsed_s": time.monotonic() - began}, indent=2) + "\n")
    print(render(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
