"""A stopping gevent worker lets its idle kept-alive connections go soon after SIGTERM.

Replaces, in each gevent worker, gunicorn.workers.ggevent.GeventWorker.timeout_ctx and its SIGTERM handler
(gunicorn 27.0.1 on gevent 26.9.0). A stopping gevent worker waits for the next request on each kept-alive
connection for the whole keep-alive time, and serves it: with the time a request may take, the flush that follows
could then run past the graceful timeout (gunicorn kills the worker there, and what is still queued is lost).
"""

from __future__ import annotations

import contextlib
import signal


def apply(worker, linger_s: float) -> bool:
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
