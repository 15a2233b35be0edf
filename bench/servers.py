"""The gunicorn servers under test: started on 127.0.0.1, checked ready, measured, and stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import procstat

REPO_DIR = Path(__file__).resolve().parents[1]


class ServerError(RuntimeError):
    """A server could not be started or did not become ready; the message holds its log's tail."""


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """One gunicorn master and its workers, serving an app with a given config file."""

    def __init__(self, name: str, config: str, app: str, port: int, env: dict[str, str], log_file: Path,
                 cwd: Path = REPO_DIR):
        self.name = name
        self.cwd = cwd  # the checkout served: this one, or a worktree of an earlier commit
        self.port = port
        self.log_file = log_file
        # --no-control-socket: gunicorn's default control socket path is shared by every gunicorn of this user,
        # and the benchmark's servers must not take it from a developer's running service.
        self.command = [sys.executable, "-m", "gunicorn", "-c", config, "--no-control-socket", app]
        self.env = {**env, "PRODUCER_HOST": "127.0.0.1", "PRODUCER_PORT": str(port)}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start gunicorn in its own session, its output going to the log file."""
        if _port_in_use(self.port):
            raise ServerError(f"{self.name}: port {self.port} is already in use; stop what listens there")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, workers: int, timeout: float = 60.0) -> None:
        """Wait until every worker is forked and GET /health answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")
            if len(self.worker_pids()) == workers and self._healthy():
                return
            time.sleep(0.25)
        raise ServerError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=3) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def worker_pids(self) -> list[int]:
        """Pids of the gunicorn workers (the master's children)."""
        return procstat.children(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and its current workers."""
        return sum(procstat.cpu_seconds(pid) for pid in [self.process.pid, *self.worker_pids()])

    def rss_kib(self) -> dict[int, int]:
        """Resident memory of each worker, in KiB, by pid."""
        sizes = {pid: procstat.rss_kib(pid) for pid in self.worker_pids()}
        return {pid: size for pid, size in sizes.items() if size is not None}

    def log_tail(self, lines: int = 30) -> str:
        """The last lines gunicorn wrote."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 45.0) -> None:
        """Stop gunicorn gracefully (SIGTERM to the master); SIGKILL the master and its workers after timeout."""
        if self.process is None or self.process.poll() is not None:
            return
        workers = self.worker_pids()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [self.process.pid, *workers]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(10)
