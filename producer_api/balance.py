"""Spreading new connections over gunicorn's gthread workers, so one worker does not take them all."""

from __future__ import annotations

import multiprocessing
import os
import time

# How long a busier worker leaves a waiting connection to a less busy one before it takes it anyway, and how
# long it stops listening meanwhile between looks (the listening socket stays readable, so it would otherwise
# spin and take the very core the less busy worker needs to wake up on).
DEFER_S = 0.010
DEFER_PAUSE_S = 0.001
# A look this long after the last one starts a new deferral: the connection deferred then was taken by another
# worker, and the next one deserves the same chance.
NEW_DEFERRAL_AFTER_S = 5 * DEFER_PAUSE_S

# A worker defers only once it holds this many more connections than the least busy other: a difference of one
# is what two workers accepting at once leave behind, and deferring over it made a burst of connections wait.
IMBALANCE_TOLERATED = 1

_GTHREAD_PARTS = ("nr_conns", "accept", "notify", "wait_for_and_dispatch_events", "set_accept_enabled")


class ConnectionBalance:
    """Each worker's open connections in memory shared across fork; a busier worker defers new ones.

    All gthread workers wait on the one listening socket, and the first awake accepts whatever is queued. A
    client that opens its keep-alive connections together (a pool of 8, say) often lands every one of them on
    the same worker, which then runs them all on one core under its GIL while the other worker idles: measured
    here, 3 runs in 8 of `wrk -c8` put all 8 connections on one of 2 workers, at half the throughput.
    """

    def __init__(self, workers: int):
        # Created in the master before fork, so every worker shares the same memory.
        self._lock = multiprocessing.Lock()
        self._pids = multiprocessing.RawArray("i", workers)
        self._connections = multiprocessing.RawArray("i", workers)

    def join(self, worker) -> bool:
        """Take a slot for this gthread worker and make it defer connections to less busy workers."""
        if not all(hasattr(worker, name) for name in _GTHREAD_PARTS):
            return False
        slot = self._claim(os.getpid())
        if slot is None:  # more workers than slots for a moment (a reload): accept as gunicorn does
            return False
        accept, notify = worker.accept, worker.notify
        wait, set_accept_enabled = worker.wait_for_and_dispatch_events, worker.set_accept_enabled
        deferred_since: list[float | None] = [None]
        last_look: list[float] = [0.0]
        paused_until: list[float | None] = [None]

        def publish_then_notify():
            self._connections[slot] = worker.nr_conns  # after every turn of the worker's event loop
            notify()

        def accept_unless_busier(listener):
            if worker.nr_conns > self._least_busy_other(slot) + IMBALANCE_TOLERATED:
                now = time.monotonic()
                if deferred_since[0] is None or now - last_look[0] > NEW_DEFERRAL_AFTER_S:
                    deferred_since[0] = now
                last_look[0] = now
                if now - deferred_since[0] < DEFER_S:
                    # Stop listening for a moment instead of sleeping: a sleep here stalled the event loop, and
                    # with it every kept-alive connection of this worker.
                    set_accept_enabled(False)
                    paused_until[0] = now + DEFER_PAUSE_S
                    return  # the connection stays queued for a less busy worker
            deferred_since[0] = None
            accept(listener)
            self._connections[slot] = worker.nr_conns

        def wait_then_resume_listening(timeout):
            if paused_until[0] is not None:
                timeout = min(timeout, max(paused_until[0] - time.monotonic(), 0.0))
            wait(timeout)
            if paused_until[0] is not None and time.monotonic() >= paused_until[0]:
                paused_until[0] = None
                if worker.alive:
                    set_accept_enabled(True)

        def set_accept_enabled_unless_paused(enabled):
            if enabled and paused_until[0] is not None:
                return  # gthread's loop re-enables every turn; the pause ends in wait_then_resume_listening
            if not enabled:
                paused_until[0] = None  # the worker stops accepting for its own reasons (full, stopping)
            set_accept_enabled(enabled)

        worker.notify, worker.accept = publish_then_notify, accept_unless_busier
        worker.wait_for_and_dispatch_events = wait_then_resume_listening
        worker.set_accept_enabled = set_accept_enabled_unless_paused
        return True

    def leave(self, pid: int) -> None:
        """Free the slot of a worker that exited; called by the master (gunicorn's child_exit)."""
        # No lock: a worker killed while holding it would hang the master here. Claims only take free slots.
        for slot, owner in enumerate(self._pids):
            if owner == pid:
                self._connections[slot], self._pids[slot] = 0, 0

    def connections(self) -> dict[int, int]:
        """Open connections per worker pid, as last published."""
        return {pid: self._connections[slot] for slot, pid in enumerate(self._pids) if pid}

    def _claim(self, pid: int) -> int | None:
        if not self._lock.acquire(timeout=1.0):  # a worker died holding it: balance without this one
            return None
        try:
            for slot, owner in enumerate(self._pids):
                if owner == 0:
                    self._connections[slot], self._pids[slot] = 0, pid
                    return slot
            return None
        finally:
            self._lock.release()

    def _least_busy_other(self, slot: int) -> float:
        others = [self._connections[other] for other, pid in enumerate(self._pids) if pid and other != slot]
        return min(others, default=float("inf"))
