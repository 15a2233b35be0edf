"""A stopping gevent worker lets its idle kept-alive connections go soon after SIGTERM, not after keep-alive."""

import signal
import time
from types import SimpleNamespace

import pytest

from producer_api.server.tuning import idle_close_on_stop


def test_a_gthread_worker_is_left_alone():
    worker = SimpleNamespace(cfg=SimpleNamespace(worker_class_str="gthread"))
    assert idle_close_on_stop.apply(worker, 0.05) is False
    assert not hasattr(worker, "timeout_ctx")


@pytest.fixture
def bound(monkeypatch):
    """The signal handlers apply() binds, kept here instead of in this test process."""
    handlers = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.__setitem__(signum, handler))
    return handlers


class GeventWorker:
    """The parts of gunicorn's GeventWorker apply() changes: its keep-alive Timeout and its SIGTERM handler."""

    def __init__(self):
        self.cfg = SimpleNamespace(worker_class_str="gevent", keepalive=5)
        self.exits = []

    def timeout_ctx(self):
        import gevent

        return gevent.Timeout(self.cfg.keepalive, False)  # as gunicorn's: it ends the wait without an error

    def handle_exit(self, sig, frame):
        self.exits.append(sig)


def test_a_stopping_gevent_worker_ends_its_idle_waits_after_the_linger_and_lets_requests_finish(bound):
    import gevent

    worker = GeventWorker()
    assert idle_close_on_stop.apply(worker, 0.05) is True
    events = []

    def idle_connection():
        with worker.timeout_ctx():  # waiting for the client's next request
            gevent.sleep(worker.cfg.keepalive)
            events.append("idle: next request read")
        events.append("idle: let go")

    def busy_connection():
        gevent.sleep(0.2)  # a request still being served, outside the keep-alive wait
        events.append("busy: answered")

    idle, busy = gevent.spawn(idle_connection), gevent.spawn(busy_connection)
    gevent.sleep(0)  # both are waiting now
    started = time.monotonic()
    bound[signal.SIGTERM](signal.SIGTERM, None)  # what the kernel's SIGTERM runs
    assert worker.exits == [signal.SIGTERM]  # gunicorn's own handling first
    idle.join(timeout=2)
    assert events == ["idle: let go"] and idle.successful()
    assert 0.04 <= time.monotonic() - started < 1  # the linger, not the keep-alive time
    busy.join(timeout=2)
    assert events == ["idle: let go", "busy: answered"]
