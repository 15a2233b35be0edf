"""wrk as the load generator: installed from Debian packages if missing, run with bench/post.lua."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post.lua")
MARKER = "BENCH_JSON "
REQUEST_TIMEOUT = "30s"  # wrk's default of 2 s would count the baseline's slow 1000-message batches as errors


class LoadError(RuntimeError):
    """wrk is missing and cannot be installed, or a wrk run failed; the message says why."""


def ensure_wrk() -> str:
    """Return the path of wrk, installing the Debian package `wrk` first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LoadError("wrk is not installed: install it with `apt-get install -y wrk` (as root) and run again")
    print("bench: wrk is missing, installing it: apt-get install -y wrk", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:  # most often a stale or missing package list
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    found = shutil.which("wrk")
    if result.returncode != 0 or not found:
        raise LoadError(f"could not install wrk with apt-get (exit {result.returncode}): install it by hand "
                        f"(`apt-get install -y wrk`) and run again\n{result.stderr[-2000:]}")
    return found


def wrk_version(wrk: str) -> str:
    """The first line wrk prints about itself."""
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    return (result.stdout + result.stderr).strip().splitlines()[0]


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured, latencies in milliseconds; cpu_s is wrk's own CPU time."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    cpu_s: float

    @property
    def ok(self) -> int:
        """Responses with a 2xx or 3xx status (wrk counts 4xx and 5xx as status errors)."""
        return self.requests - self.errors["status"]

    @property
    def error_count(self) -> int:
        """Every error: connect, read, write, timeout and non-2xx responses."""
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        """The result as plain JSON-ready values."""
        return {**asdict(self), "ok": self.ok, "error_count": self.error_count}


class WrkRun:
    """One wrk process: started at once, its result read when it ends."""

    def __init__(self, wrk: str, url: str, bodies: Path, connections: int, duration_s: float, pause_ms: float = 0):
        self.duration_s = duration_s
        self.command = [
            wrk, "-t1", f"-c{connections}", f"-d{max(int(round(duration_s)), 1)}s", "--timeout", REQUEST_TIMEOUT,
            "-s", str(SCRIPT), url, "--", str(bodies), f"{pause_ms:g}",
        ]
        # wrk is our only child that ends during the run, so the children's rusage delta is its CPU time.
        self._usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> WrkResult:
        """Wait for wrk to finish (bounded by its duration plus a margin) and parse what it printed."""
        try:
            stdout, stderr = self._process.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise LoadError(f"wrk did not finish in time: {' '.join(self.command)}") from None
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (usage.ru_utime - self._usage.ru_utime) + (usage.ru_stime - self._usage.ru_stime)
        line = next((line for line in stdout.splitlines() if line.startswith(MARKER)), None)
        if self._process.returncode != 0 or line is None:
            raise LoadError(f"wrk failed (exit {self._process.returncode}): {' '.join(self.command)}\n"
                            f"{stdout[-2000:]}{stderr[-2000:]}")
        data = json.loads(line[len(MARKER):])
        return WrkResult(
            requests=data["requests"],
            duration_s=data["duration_us"] / 1e6,
            errors={name: data[name] for name in ("connect", "read", "write", "status", "timeout")},
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            mean_ms=data["mean_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            cpu_s=cpu_s,
        )


def run_wrk(wrk: str, url: str, bodies: Path, connections: int, duration_s: float) -> WrkResult:
    """Run wrk against url for duration_s seconds at this many connections and return what it measured."""
    return WrkRun(wrk, url, bodies, connections, duration_s).result()
