"""The gevent worker's turns for other connections during long batches (no gunicorn process needed)."""

import sys

import gevent
import gevent.monkey
import pytest

from producer_api.core import turns as core_turns
from producer_api.observability import logs
from producer_api.server import green
from tests.unit.kafka.tuning.test_batch_append import FakeProducer as AppendingProducer


@pytest.fixture
def not_patched(monkeypatch):
    """This process as a gthread worker's: never patched for gevent (restored after the test)."""
    monkeypatch.setattr(core_turns, "_switch", None)
    monkeypatch.setattr(logs.BatchingStreamHandler, "writer_thread", logs.BatchingStreamHandler.writer_thread)


@pytest.fixture
def turns(monkeypatch, not_patched):
    """Count the turns given to other connections, as a gevent worker would give them, every 2 items.

    patch_for("gevent") runs as in a worker, with gevent's patching itself left out and gevent's sleep recording
    its argument: each turn is a sleep for no time.
    """
    given = []
    monkeypatch.setattr(gevent.monkey, "patch_all", lambda: None)
    monkeypatch.setattr(gevent, "sleep", given.append)
    monkeypatch.setattr(core_turns, "YIELD_EVERY", 2)
    assert green.patch_for("gevent") is True
    return given


def test_threads_take_turns_by_themselves_so_nothing_is_given(not_patched):
    assert green.patch_for("gthread") is False
    green.yield_to_other_connections()  # outside a gevent worker: returns at once, nothing to call
    core_turns.give_turn()


def test_a_gevent_worker_gives_a_turn_by_sleeping_for_no_time(turns):
    green.yield_to_other_connections()
    assert turns == [0]


def test_a_batch_gives_turns_while_it_is_validated_and_encoded(client, producer, turns):
    batch = [{"topic": "t", "message": {"n": n}} for n in range(10)]
    assert client.post("/produce/batch", json=batch).status_code == 200
    assert len(turns) == 5 + 5  # every 2 of 10 messages read, then every 2 of 10 encoded


def test_a_single_message_gives_no_turn(client, producer, turns):
    assert client.post("/produce", json={"topic": "t", "message": {}}).status_code == 200
    assert turns == []


def test_a_batch_gives_a_turn_after_each_kafka_batch_it_fills(turns):
    producer = AppendingProducer(batch_size=200)
    producer.append(20)
    assert len(producer.batches()) > 1
    assert len(turns) == len(producer.batches())
    turns.clear()
    producer.append(2)  # no more than YIELD_EVERY records: a single request's few records give none
    assert turns == []


def test_modules_imported_before_gevent_patched_the_worker_are_named(monkeypatch):
    # A gunicorn config that imported the producer wrapper before post_fork patched left kafka-python on the
    # kernel's threads (the benchmark's ceiling S: each stopping worker waited 10 s for its producer).
    monkeypatch.delitem(sys.modules, "kafka", raising=False)
    monkeypatch.delitem(sys.modules, "producer_api.kafka.producer", raising=False)
    assert green.imported_before_patching() == []
    monkeypatch.setitem(sys.modules, "kafka", object())
    assert green.imported_before_patching() == ["kafka"]
