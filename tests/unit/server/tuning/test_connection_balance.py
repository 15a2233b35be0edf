"""A busier gthread worker leaves new connections to a less busy one, but not for long."""

import io
import socket
import time
from types import SimpleNamespace

import pytest

from producer_api.server.tuning import connection_balance as balance
from producer_api.server.tuning.connection_balance import ConnectionBalance


class FakeWorker:
    """The parts of gunicorn's ThreadWorker the balance uses: its age, counts, accept(), notify() and event loop."""

    ages = 0

    def __init__(self):
        FakeWorker.ages += 1
        self.age = FakeWorker.ages  # gunicorn's spawn count, unique in a master
        self.nr_conns = 0
        self.accepted = 0
        self.notified = 0
        self.alive = True
        self.listening = True
        self.waits = []

    def accept(self, listener):
        self.accepted += 1
        self.nr_conns += 1

    def notify(self):
        self.notified += 1

    def set_accept_enabled(self, enabled):
        self.listening = enabled

    def wait_for_and_dispatch_events(self, timeout):
        self.waits.append(timeout)


# A connection on which the client sent nothing more: what FakeRequest reads by default (made by the fixture).
_quiet: list[socket.socket] = []


@pytest.fixture(scope="module", autouse=True)
def _quiet_connection():
    _quiet.extend(socket.socketpair())
    yield
    for end in _quiet:
        end.close()
    _quiet.clear()


class FakeRequest:
    """The parts of gunicorn's parsed request the balance reads and sets: version, closing, what follows it."""

    def __init__(self, version=(1, 1), closing=False, buffered=b"", sock=None, body_left=0):
        self.version = version
        self.must_close = closing
        self.unreader = SimpleNamespace(sock=sock or _quiet[0], buf=io.BytesIO(buffered))
        self.body = SimpleNamespace(reader=SimpleNamespace(length=body_left))

    def should_close(self):
        return self.must_close

    def force_close(self):
        self.must_close = True


@pytest.fixture
def shed_at_once(monkeypatch):
    """An imbalance moves a connection the first time it is seen, not only once it lasted SHED_AFTER_S."""
    monkeypatch.setattr(balance, "SHED_AFTER_S", 0.0)


def forked(shared: ConnectionBalance) -> FakeWorker:
    worker = FakeWorker()
    shared.expect(worker)  # the master, in pre_fork
    return worker


def joined(shared: ConnectionBalance) -> FakeWorker:
    worker = forked(shared)
    assert shared.join(worker)  # the worker, once its event loop is about to run
    return worker


def test_a_busier_worker_defers_a_new_connection_to_a_less_busy_one():
    shared = ConnectionBalance(2)
    busy, idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")  # one more than the other is tolerated: two workers accepting at once leave that
    busy.accept("listener")  # deferred: the other worker has none
    assert busy.accepted == 2
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
    monkeypatch.setattr(balance, "NEW_DEFERRAL_AFTER_S", 1.0)  # a slow machine's late look is the same deferral
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")
    started = time.monotonic()
    busy.accept("listener")
    while busy.accepted == 2 and time.monotonic() - started < 5:  # the other worker never takes it
        time.sleep(0.001)
        busy.wait_for_and_dispatch_events(1.0)  # the loop listens again after each pause, and looks again
        busy.accept("listener")
    assert busy.accepted == 3
    assert time.monotonic() - started >= 0.02


def test_deferring_stops_listening_for_a_moment_and_the_event_loop_goes_on():
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")
    busy.accept("listener")  # deferred: no sleep, the listening socket is put aside instead
    assert busy.accepted == 2 and busy.listening is False
    busy.set_accept_enabled(True)  # gthread's loop asks for it every turn: the pause holds
    assert busy.listening is False
    busy.wait_for_and_dispatch_events(1.0)
    assert busy.waits[-1] <= balance.DEFER_PAUSE_S  # the loop still serves its connections, only briefly
    time.sleep(balance.DEFER_PAUSE_S)
    busy.wait_for_and_dispatch_events(1.0)
    assert busy.listening is True


def test_a_worker_that_stops_accepting_is_not_made_to_listen_again():
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")
    busy.accept("listener")
    busy.set_accept_enabled(False)  # gthread stops accepting: it is full, or stopping
    time.sleep(balance.DEFER_PAUSE_S)
    busy.wait_for_and_dispatch_events(1.0)
    assert busy.listening is False and busy.waits[-1] == 1.0


def test_a_later_connection_is_deferred_again_after_the_last_was_taken_elsewhere(monkeypatch):
    monkeypatch.setattr(balance, "DEFER_S", 0.02)
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.accept("listener")
    busy.accept("listener")
    busy.accept("listener")  # deferred, and the other worker takes it: this one never looks again
    time.sleep(0.03)
    busy.accept("listener")  # a new connection, past the first one's defer time
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
    # Only balance's view of the pid: patching os.getpid itself made multiprocessing's heap refuse to free a
    # block that an earlier test left for the garbage collector ("My pid (222) is not last pid ...").
    monkeypatch.setattr(balance, "os", SimpleNamespace(getpid=lambda: 111))
    first = joined(shared)
    monkeypatch.setattr(balance, "os", SimpleNamespace(getpid=lambda: 222))
    assert not shared.join(forked(shared))  # no free slot: it accepts as gunicorn does
    shared.leave(first)
    assert shared.join(forked(shared))
    assert shared.connections() == {222: 0}


def test_a_worker_that_exits_before_it_serves_frees_its_slot():
    shared = ConnectionBalance(1)
    starting = forked(shared)
    shared.leave(starting)  # its post_fork failed: gunicorn's child_exit
    assert shared.join(forked(shared))


def test_connections_wait_for_a_worker_still_starting_beyond_the_defer_time(monkeypatch):
    monkeypatch.setattr(balance, "DEFER_S", 0.005)
    shared = ConnectionBalance(2)
    serving, starting = joined(shared), forked(shared)  # the second still opens its Kafka producer
    serving.accept("listener")
    serving.accept("listener")  # one more than an idle worker, as ever
    for _ in range(3):
        serving.accept("listener")  # left queued for the starting worker, past DEFER_S
        time.sleep(0.01)
        serving.wait_for_and_dispatch_events(1.0)
    assert serving.accepted == 2 and serving.listening is True
    assert shared.join(starting)
    starting.accept("listener")
    assert starting.accepted == 1


def test_a_worker_that_does_not_start_in_time_is_not_waited_for(monkeypatch):
    monkeypatch.setattr(balance, "STARTUP_WAIT_S", 0.01)
    shared = ConnectionBalance(2)
    serving, _stuck = joined(shared), forked(shared)
    serving.accept("listener")
    serving.accept("listener")
    serving.accept("listener")  # waits for the starting worker
    assert serving.accepted == 2
    time.sleep(0.02)
    serving.accept("listener")  # past STARTUP_WAIT_S: it counts as gone, and nothing is deferred to it
    assert serving.accepted == 3


def test_a_worker_holding_too_many_more_closes_a_kept_alive_connection_after_its_answer(shed_at_once):
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)  # a pool that landed on one worker while the other could not take it
    busy.nr_conns = 8
    request = FakeRequest()
    assert shared.shed_if_busier(busy, request)
    assert request.must_close  # gunicorn answers it with "Connection: close"; the client reconnects


@pytest.mark.parametrize("where", ["read by gunicorn", "still in the socket"])
def test_a_connection_with_pipelined_requests_is_not_closed(shed_at_once, where):
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.nr_conns = 8
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        body, pipelined = b'{"topic":"t","message":{}}', b"POST /produce HTTP/1.1\r\n"
        if where == "read by gunicorn":
            request = FakeRequest(buffered=body + pipelined, sock=server_side, body_left=len(body))
        else:
            client_side.sendall(body + pipelined)
            request = FakeRequest(sock=server_side, body_left=len(body))
        assert not shared.shed_if_busier(busy, request) and not request.must_close
        # Only its own body waiting: it can close after its answer.
        if where == "still in the socket":
            server_side.recv(len(body) + len(pipelined))
        alone = FakeRequest(buffered=body, sock=server_side, body_left=len(body))
        assert shared.shed_if_busier(busy, alone) and alone.must_close


def test_connections_move_one_at_a_time(shed_at_once, monkeypatch):
    monkeypatch.setattr(balance, "SHED_INTERVAL_S", 0.05)
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.nr_conns = 8
    assert shared.shed_if_busier(busy, FakeRequest())
    assert not shared.shed_if_busier(busy, FakeRequest())  # the counts settle before the next one moves
    time.sleep(0.06)
    assert shared.shed_if_busier(busy, FakeRequest())


def test_a_difference_of_one_keeps_its_connections(shed_at_once):
    shared = ConnectionBalance(2)
    first, second = joined(shared), joined(shared)
    first.nr_conns, second.nr_conns = 5, 4
    second.notify()  # publishes its count
    assert not shared.shed_if_busier(first, FakeRequest())
    first.nr_conns = 6
    assert shared.shed_if_busier(first, FakeRequest())


def test_among_many_connections_only_a_quarter_more_moves_one(shed_at_once):
    shared = ConnectionBalance(2)
    first, second = joined(shared), joined(shared)
    first.nr_conns, second.nr_conns = 66, 63
    second.notify()
    assert not shared.shed_if_busier(first, FakeRequest())  # not worth a reconnection
    first.nr_conns = 79
    assert shared.shed_if_busier(first, FakeRequest())


def test_no_connection_is_moved_to_a_worker_still_starting_or_when_there_is_no_other(shed_at_once):
    shared = ConnectionBalance(2)
    serving, _starting = joined(shared), forked(shared)
    serving.nr_conns = 8
    assert not shared.shed_if_busier(serving, FakeRequest())
    alone = ConnectionBalance(1)
    only = joined(alone)
    only.nr_conns = 8
    assert not alone.shed_if_busier(only, FakeRequest())


def test_http2_and_closing_requests_are_left_alone(shed_at_once):
    shared = ConnectionBalance(2)
    busy, _idle = joined(shared), joined(shared)
    busy.nr_conns = 8
    assert not shared.shed_if_busier(busy, FakeRequest(version=(2, 0)))
    assert not shared.shed_if_busier(busy, FakeRequest(closing=True))
    assert not shared.shed_if_busier(FakeWorker(), FakeRequest())  # a worker that never joined


def test_only_an_imbalance_that_lasts_moves_a_connection(monkeypatch):
    monkeypatch.setattr(balance, "SHED_AFTER_S", 0.05)
    shared = ConnectionBalance(2)
    first, second = joined(shared), joined(shared)
    first.nr_conns = 3  # a burst of connections, which the other worker is still accepting
    assert not shared.shed_if_busier(first, FakeRequest())
    second.nr_conns = 2
    second.notify()
    assert not shared.shed_if_busier(first, FakeRequest())  # settled: the imbalance is forgotten
    time.sleep(0.06)
    second.nr_conns = 0
    second.notify()
    assert not shared.shed_if_busier(first, FakeRequest())  # a new imbalance starts its own wait
    time.sleep(0.06)
    assert shared.shed_if_busier(first, FakeRequest())


def test_workers_other_than_gthread_are_left_alone():
    assert not ConnectionBalance(2).join(object())
