"""The gevent worker class: the standard library made cooperative before a worker opens its Kafka producer.

gunicorn's gevent worker patches the standard library (threads, locks, sockets, select) only in its own start-up,
after post_fork has run; a producer opened in post_fork before that would run kafka-python's I/O on a real thread
and real epoll, which blocks the worker's one thread, and its futures' events would be waited on by greenlets from
another thread. So post_fork patches first: kafka-python's I/O thread becomes a greenlet, and a request waiting
for Kafka's answer lets the worker serve other connections meanwhile. What was made before the patching and
waits on a lock or an event (the log writer's) must not be used by greenlets.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys

from producer_api import logs

log = logging.getLogger(__name__)

# Items of a batch a request handles between two turns for the worker's other connections: about 1 ms of work.
YIELD_EVERY = 64

_cooperative_sleep = None  # gevent's sleep, once patch_for has patched this worker


def patch_for(worker_class: str) -> bool:
    """Patch this worker's standard library for gevent (once, before anything starts threads); False otherwise."""
    if worker_class != "gevent":
        return False
    from gevent import monkey

    early = imported_before_patching()
    if early:
        # Their threads, locks and sockets stay the kernel's: a producer waits out KAFKA_CLOSE_TIMEOUT_MS when its
        # worker stops, and a request waiting on it could stop the whole worker. Seen with the benchmark's own app.
        log.warning("%s imported before gevent patched this worker (gunicorn --preload, or a config that imports "
                    "them early?): run with PRODUCER_WORKER_CLASS=gthread, or import them only after post_fork",
                    ", ".join(early))
    monkey.patch_all()
    logs.use_no_writer_thread()
    global _cooperative_sleep
    from gevent import sleep

    _cooperative_sleep = sleep
    return True


def imported_before_patching() -> list[str]:
    """The modules that must start after gevent's patching (kafka-python, the producer wrapper) already imported."""
    return [name for name in ("kafka", "producer_api.kafka_producer") if name in sys.modules]


def yield_to_other_connections() -> None:
    """In a gevent worker, let its other ready connections run now; with threads, which take turns anyway, nothing.

    gevent switches only where a greenlet waits. It reads a socket without switching when its data is already
    there, so a client that sent its next request as soon as it had an answer kept its greenlet running, and the
    worker's other connections waited (fire-and-forget at 32 connections: p50 1.9 ms, p99 652 ms): post_request
    calls this after every request. And a batch of 1000 messages validated, encoded and appended without a wait
    held them for its whole 15-20 ms: long loops over a batch call this every YIELD_EVERY items.
    """
    if _cooperative_sleep is not None:
        _cooperative_sleep(0)


def close_idle_connections_on_stop(worker, linger_s: float) -> bool:
    """In a gevent worker, end the waits of idle kept-alive connections linger_s after SIGTERM; False otherwise.

    A stopping gevent worker waits for the next request on each kept-alive connection for the whole keep-alive
    time, and serves it: with the time a request may take, the flush that follows could then run past the graceful
    timeout (gunicorn kills the worker there, and what is still queued is lost). A stopping gthread worker lets
    them go after about linger_s, which is what producer_api/config.py counts on.
    """
    if worker.cfg.worker_class_str != "gevent":
        return False
    from gevent import getcurrent, spawn_later

    waiting = {}  # greenlet -> the keep-alive Timeout it waits under
    make_timeout = worker.timeout_ctx
    handle_exit = worker.handle_exit

    @contextlib.contextmanager
    def tracked_timeout():
        timeout = make_timeout()
        waiting[getcurrent()] = timeout
        try:
            with timeout:  # gunicorn's: raised in the waiting greenlet, it ends the wait without an error
                yield
        finally:
            waiting.pop(getcurrent(), None)

    def end_idle_waits():
        for greenlet, timeout in list(waiting.items()):
            greenlet.kill(timeout, block=False)

    def handle_exit_then_close_idle(sig, frame):
        handle_exit(sig, frame)
        spawn_later(linger_s, end_idle_waits)

    worker.timeout_ctx = tracked_timeout
    signal.signal(signal.SIGTERM, handle_exit_then_close_idle)  # bound before post_worker_init runs
    return True
