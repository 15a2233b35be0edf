"""The directory where every worker writes its metrics (prometheus_client's multiprocess mode), made at start.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when first imported, so the master sets it before any worker
forks. A directory made here is marked, so that the master removes it at exit even after a reload re-read the
configuration.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_OWN_MARK = ".made-by-producer-api"
_prepared: str | None = None  # kept by the master across reloads, which read the configuration anew


def prepare(configured: str | None) -> str:
    """Give the workers an empty metrics directory, configured or a fresh private temporary one; its path."""
    global _prepared
    directory = configured
    if directory is None:
        directory = tempfile.mkdtemp(prefix="producer-api-metrics-")  # mode 0700
        Path(directory, _OWN_MARK).touch()
        # on_exit does not run when start-up fails after on_starting (the port in use, a worker that cannot boot).
        atexit.register(remove_own, directory, os.getpid())
    else:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    for stale in Path(directory).glob("*.db"):  # counters of an earlier run
        stale.unlink()
    _prepared = directory
    return directory


def prepared() -> str | None:
    """The directory prepare() gave the workers, if it ran in this process."""
    return _prepared


def remove_own(directory: str, master_pid: int) -> None:
    """Remove the metrics directory prepare() made, from the master only (workers inherit its exit handlers)."""
    if os.getpid() == master_pid and Path(directory, _OWN_MARK).exists():
        shutil.rmtree(directory, ignore_errors=True)
