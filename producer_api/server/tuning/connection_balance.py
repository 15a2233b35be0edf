"""Spreading connections over gunicorn's gthread or gevent workers, so one worker does not hold them all.

Replaces, in each worker, gunicorn.workers.gthread.ThreadWorker's accept, notify, wait_for_and_dispatch_events and
set_accept_enabled, or gunicorn.workers.ggevent.StreamServer and GeventWorker.handle (gunicorn 27.0.1 on gevent
26.9.0); the master keeps the shared counts (pre_fork, child_exit) and a busier worker closes a kept-alive
connection now and then (pre_request) so that its client reconnects to a less busy one.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import struct
import termios
import time

# How long a busier worker leaves a waiting connection to a less busy one before it takes it anyway, and how
# long it stops listening meanwhile between looks (the listening socket stays readable, so it would otherwise
# spin and take the very core the less busy worker needs to wake up on).
DEFER_S = 0.010
DEFER_PAUSE_S = 0.001
# A look this long after the last one starts a new deferral: the connection deferred then was taken by another
# worker, and the next one deserves the same chance.
NEW_DEFERRAL_AFTER_S = 5 * DEFER_PAUSE_S

# A worker forked but not yet serving (its Kafka producer opening, the app loading: about 0.3 s here) counts as
# idle for this long: a busier worker leaves new connections to it meanwhile, as a client pool that connects the
# moment the port opens would otherwise all land on the worker that started first, and stay there.
STARTUP_WAIT_S = 2.0

# A worker defers only once it holds this many more connections than the least busy other: a difference of one
# is what two workers accepting at once leave behind, and deferring over it made a burst of connections wait.
IMBALANCE_TOLERATED = 1

# A worker that holds more connections than that anyway, for longer than a burst of connections takes to settle
# (milliseconds) or a finished load's connections take to close (about 50 ms here), answers one request with
# "Connection: close" at most once in SHED_INTERVAL_S: the client reconnects, the deferral above hands the new
# connection to the less busy worker, and the counts settle before the next one moves. Without it a pool opened
# while the other worker's last load was still closing (its connections counted meanwhile) stayed where it landed
# for as long as it was kept alive: all 8 of `wrk -c8` on one worker in 6 trials of 10, at half the throughput.
SHED_AFTER_S = 0.100
SHED_INTERVAL_S = 0.050
# ... and only when it also holds a quarter more than the other: at 128 connections, 65 against 63 is not worth a
# reconnection, and there the moved connections went back and forth while the counts caught up.
SHED_RATIO = 1.25

_GTHREAD_PARTS = ("nr_conns", "accept", "notify", "wait_for_and_dispatch_events", "set_accept_enabled")


class ConnectionBalance:
    """Each worker's open connections in memory shared across fork; a busier worker defers new ones.

    All gthread workers wait on the one listening socket, and the first awake accepts whatever is queued. A
    client that opens its keep-alive connections together (a pool of 8, say) often lands every one of them on
    the same worker, which then runs them all on one core under its GIL while the other worker idles: measured
    here, 3 runs in 8 of `wrk -c8` put all 8 connections on one of 2 workers, at half the throughput.
    """

    def __init__(self, workers: int):
        # Created in the master before fork, so every worker shares the same memory. Only the master takes and
        # frees slots (pre_fork, child_exit); a worker writes only its own. A slot is known by the worker's age,
        # gunicorn's spawn count, which the master knows before the fork and the pid only after it.
        self._ages = multiprocessing.RawArray("i", workers)
        self._pids = multiprocessing.RawArray("i", workers)
        self._connections = multiprocessing.RawArray("i", workers)
        self._starting_until = multiprocessing.RawArray("d", workers)
        # Not shared: each worker writes its own slot's in its own copy.
        self._imbalanced_since: list[float | None] = [None] * workers
        self._last_shed = [0.0] * workers
        self._after_shed = None  # a gevent worker's: it must not take the reconnecting connection itself

    def expect(self, worker) -> None:
        """Take a slot for a worker about to be forked; called by the master (gunicorn's pre_fork)."""
        for slot, age in enumerate(self._ages):
            if age == 0:
                self._pids[slot], self._connections[slot] = 0, 0
                self._starting_until[slot] = time.monotonic() + STARTUP_WAIT_S
                self._ages[slot] = worker.age
                return
        # No free slot for a moment (a reload): this worker accepts as gunicorn does.

    def join(self, worker) -> bool:
        """Fill in this gthread worker's slot (see expect) and make it defer connections to less busy workers."""
        if not all(hasattr(worker, name) for name in _GTHREAD_PARTS):
            return False
        slot = self._slot_of(worker.age)
        if slot is None:  # more workers than slots for a moment (a reload): accept as gunicorn does
            return False
        self._pids[slot], self._connections[slot] = os.getpid(), worker.nr_conns
        self._starting_until[slot] = 0.0  # serving
        accept, notify = worker.accept, worker.notify
        wait, set_accept_enabled = worker.wait_for_and_dispatch_events, worker.set_accept_enabled
        deferred_since: list[float | None] = [None]
        last_look: list[float] = [0.0]
        paused_until: list[float | None] = [None]

        def publish_then_notify():
            self._connections[slot] = worker.nr_conns  # after every turn of the worker's event loop
            notify()

        def stop_listening_for_a_moment(now):
            # Instead of sleeping: a sleep here stalled the event loop, and with it every kept-alive connection of
            # this worker. wait_then_resume_listening listens again after DEFER_PAUSE_S.
            set_accept_enabled(False)
            paused_until[0] = now + DEFER_PAUSE_S

        def accept_unless_busier(listener):
            now = time.monotonic()
            least_busy, other_starting = self._least_busy_other(slot, now)
            if worker.nr_conns > least_busy + IMBALANCE_TOLERATED:
                if other_starting:  # the idle one is a worker still starting: wait for it, up to STARTUP_WAIT_S
                    stop_listening_for_a_moment(now)
                    return
                if deferred_since[0] is None or now - last_look[0] > NEW_DEFERRAL_AFTER_S:
                    deferred_since[0] = now
                last_look[0] = now
                if now - deferred_since[0] < DEFER_S:
                    stop_listening_for_a_moment(now)
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

    def join_green(self, worker) -> bool:
        """Fill in this gevent worker's slot (see expect) and make it defer connections to less busy workers.

        gunicorn's gevent worker accepts one connection a turn of its event loop (max_accept 1), but the worker
        that woke first takes turn after turn while the other is still waking: `wrk -c8` on a fresh start put
        all 8 connections on one worker in 5 starts of 6. Here a worker holding more than the tolerated
        difference stops accepting, and looks again whenever one of its connections opens or closes and every
        DEFER_PAUSE_S meanwhile: a connection left waiting longer than DEFER_S (the other worker busy) it takes.
        """
        if worker.cfg.worker_class_str != "gevent":
            return False
        from gevent import spawn_later  # imported only in gevent workers, which have patched the standard library
        from gevent.monkey import get_original
        from gunicorn.workers import ggevent

        # The kernel's select(): gevent's would switch greenlets, which its event loop's callbacks may not do.
        select_now = get_original("select", "select")

        slot = self._slot_of(worker.age)
        if slot is None or not hasattr(ggevent, "StreamServer"):  # a reload's extra worker, or gunicorn changed
            return False
        worker.nr_conns = 0  # what shed_if_busier reads, as on a gthread worker
        handle = worker.handle
        deferred_since: list[float | None] = [None]
        servers: list = []
        balance = self

        def handle_counted(listener, client, addr):
            try:
                return handle(listener, client, addr)
            finally:
                worker.nr_conns -= 1
                self._connections[slot] = worker.nr_conns
                for server in servers:
                    server.look()

        def may_accept(server, now: float) -> bool:
            if now < server.shed_until:
                return False  # the connection just closed by shed_if_busier reconnects: to the other worker
            least_busy, other_starting = balance._least_busy_other(slot, now)
            if worker.nr_conns <= least_busy + IMBALANCE_TOLERATED:
                deferred_since[0] = None
                return True
            if other_starting or not server.connection_waiting():
                deferred_since[0] = None  # a worker still starting gets a full DEFER_S once it serves
                return False
            if deferred_since[0] is None:
                deferred_since[0] = now
            # A waiting connection is left to a worker still starting until it serves (up to STARTUP_WAIT_S),
            # to any other worker for DEFER_S; then this one takes it.
            return now - deferred_since[0] >= DEFER_S

        class BalancedStreamServer(ggevent.StreamServer):
            paused = False
            shed_until = 0.0

            def do_handle(self, *args):
                worker.nr_conns += 1
                balance._connections[slot] = worker.nr_conns
                super().do_handle(*args)
                self.look()

            def look(self):
                """Accept while this worker is not the busier one; otherwise leave connections to the other."""
                if self.closed or not worker.alive:
                    return
                if may_accept(self, time.monotonic()):
                    if self.paused:
                        self.paused = False
                        self.start_accepting()
                elif not self.paused:
                    self.paused = True
                    self.stop_accepting()
                    spawn_later(DEFER_PAUSE_S, self.look_while_paused)

            def look_while_paused(self):
                self.look()
                if self.paused and not self.closed:
                    # Often while a connection waits (the deferral runs); otherwise only to notice one, as the
                    # less busy worker takes it meanwhile: 900 looks a second cost 4 % of a core.
                    waiting = deferred_since[0] is not None
                    spawn_later(DEFER_PAUSE_S if waiting else DEFER_S, self.look_while_paused)

            def connection_waiting(self) -> bool:
                try:
                    return bool(select_now([self.socket], [], [], 0)[0])
                except (OSError, ValueError):
                    return False

            def start(self):
                servers.append(self)
                super().start()
                # Serving from now on, not from post_worker_init: until its server accepts, a worker counts as
                # still starting, and the other leaves it the connections that wait.
                balance._pids[slot], balance._connections[slot] = os.getpid(), worker.nr_conns
                balance._starting_until[slot] = 0.0

        def stop_accepting_after_shed():
            for server in servers:
                server.shed_until = time.monotonic() + DEFER_S
                server.look()

        worker.handle = handle_counted
        self._after_shed = stop_accepting_after_shed
        ggevent.StreamServer = BalancedStreamServer
        return True

    def shed_if_busier(self, worker, req) -> bool:
        """Have this answer close its kept-alive connection if this worker holds too many more than another one.

        Called before each request (gunicorn's pre_request): HTTP clients reconnect after "Connection: close".
        """
        slot = self._slot_of(worker.age)
        if slot is None or not self._pids[slot]:
            return False  # not a joined gthread worker
        now = time.monotonic()
        if now - self._last_shed[slot] < SHED_INTERVAL_S:
            return False
        least_busy, other_starting = self._least_busy_other(slot, now)
        mine = worker.nr_conns
        # A worker still starting cannot serve a moved connection yet; the accept side already waits for it.
        if mine <= least_busy + IMBALANCE_TOLERATED or mine <= least_busy * SHED_RATIO or other_starting:
            self._imbalanced_since[slot] = None
            return False
        if self._imbalanced_since[slot] is None:
            self._imbalanced_since[slot] = now
        if now - self._imbalanced_since[slot] < SHED_AFTER_S:
            return False
        if getattr(req, "version", (1, 1)) >= (2, 0) or req.should_close():
            return False  # HTTP/2 multiplexes on its one connection; a closing one moves anyway
        if _client_sent_more(req):
            return False  # closing would drop the requests pipelined behind this one, unanswered
        self._last_shed[slot] = now
        req.force_close()
        if self._after_shed is not None:
            self._after_shed()
        return True

    def leave(self, worker) -> None:
        """Free the slot of a worker that exited, even before it served; called by the master (child_exit)."""
        slot = self._slot_of(worker.age)
        if slot is not None:
            self._pids[slot], self._connections[slot], self._starting_until[slot] = 0, 0, 0.0
            self._ages[slot] = 0

    def connections(self) -> dict[int, int]:
        """Open connections per serving worker pid, as last published."""
        return {pid: self._connections[slot] for slot, pid in enumerate(self._pids) if pid}

    def _slot_of(self, age: int) -> int | None:
        for slot, slot_age in enumerate(self._ages):
            if slot_age == age:
                return slot
        return None

    def _least_busy_other(self, slot: int, now: float) -> tuple[float, bool]:
        """The fewest connections another worker holds, and whether that worker is one still starting."""
        least_busy, starting = float("inf"), False
        for other in range(len(self._ages)):
            if other == slot or not self._ages[other]:
                continue
            if self._pids[other]:
                count, other_starting = self._connections[other], False
            elif now < self._starting_until[other]:
                count, other_starting = 0, True
            else:
                continue  # forked long ago and never joined: not a gthread worker, or stuck in its start
            if count < least_busy or (count == least_busy and other_starting):
                least_busy, starting = count, other_starting
        return least_busy, starting


def _client_sent_more(req) -> bool:
    """Whether the client has sent more than this request and its body (pipelined requests); True if unknown."""
    body_left = getattr(getattr(getattr(req, "body", None), "reader", None), "length", None)
    unreader = getattr(req, "unreader", None)
    if body_left is None or unreader is None:
        return True  # a chunked body, or not gunicorn's request: its end cannot be told from here
    try:
        buffered = len(unreader.buf.getvalue())
        unread = struct.unpack("i", fcntl.ioctl(unreader.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (AttributeError, OSError, ValueError):
        return True
    return buffered + unread > body_left
