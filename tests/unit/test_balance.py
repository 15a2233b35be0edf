"""A busier gthread worker leaves new connections to a less busy one, but not for long."""

import time

from producer_api import balance
from producer_api.balance import ConnectionBalance


class FakeWorker:
    """The parts of gunicorn's ThreadWorker the balance uses: nr_conns, accept() and notify()."""

    def __init__(self):
        self.nr_conns = 0
        self.accepted = 0
        self.notified = 0

    def accept(self, listener):
        self.accepted += 1
        self.nr_conns += 1

    def notify(self):
        self.notified += 1


def joined(shared: ConnectionBalance) -> FakeWorker:
    worker = FakeWorker()
    assert shared.join(worker)
    return worker


def test_a_busier_worker_defers_a_new_connection_to_a_less_busy_one():
    shared = ConnectionBalance(2)
    busy, idle = joined(shared), joined(shared)
    busy.accept("listener")  # one connection already
    busy.accept("listener")  # deferred: the other worker has none
    assert busy.accepted == 1
    idle.accept("listener")
    assert idle.accepted == 1


def test_an_idle_worker_always_accepts():
    shared = ConnectionBalance(2)
    first, second = joined(shared), joined(shared)
    first.accept("listener")
    second.accept("listener")
    assert (first.accepted, second.accepted) == (1, 1)


def test_a_deferred_connection_is_taken_after_the_defer_time(monkeypatch):
    monkeypatch.setattr(balance, "DEFER_S", 0.02)
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")
    assert busy.accepted == 1
    time.sleep(0.03)
    busy.accept("listener")  # the other worker never took it
    assert busy.accepted == 2


def test_counts_are_published_on_every_loop_turn():
    shared = ConnectionBalance(2)
    worker = joined(shared)
    worker.accept("listener")
    worker.nr_conns = 0  # gthread closed the connection
    worker.notify()
    assert worker.notified == 1
    assert list(shared.connections().values()) == [0]


def test_a_worker_that_left_frees_its_slot_for_the_next(monkeypatch):
    shared = ConnectionBalance(1)
    monkeypatch.setattr(balance.os, "getpid", lambda: 111)
    joined(shared)
    monkeypatch.setattr(balance.os, "getpid", lambda: 222)
    assert not shared.join(FakeWorker())  # no free slot: it accepts as gunicorn does
    shared.leave(111)
    assert shared.join(FakeWorker())
    assert shared.connections() == {222: 0}


def test_workers_other_than_gthread_are_left_alone():
    assert not ConnectionBalance(2).join(object())
