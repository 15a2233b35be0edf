"""Delivery guarantees against real brokers: fire-and-forget, backpressure, partial and atomic batches, shutdown."""

import dataclasses
import http.client as http_client
import json
import signal
import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition

from producer_api import create_app
from producer_api.config import WORKER_CLASSES
from producer_api.kafka.producer import MessageProducer
from tests.integration.conftest import http


def read_committed(bootstrap: str, topic: str, settle: float = 2.0) -> list:
    """Every record a read_committed consumer sees in the topic (aborted transactions stay invisible)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records, until = [], time.monotonic() + settle
        while time.monotonic() < until:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.fixture
def make_client(make_settings, broker):
    """A test client on a fresh real producer with some settings overridden; the producer is closed after."""
    producers = []

    def make(**overrides):
        settings = make_settings(bootstrap_servers=broker.bootstrap_servers, **overrides)
        producer = MessageProducer(settings)
        producers.append(producer)
        return create_app(settings, producer=producer).test_client(), producer

    yield make
    for producer in producers:
        producer.close(5)


@pytest.mark.stock_path
def test_fire_and_forget_is_202_and_delivered(make_client, new_topic, read_topic):
    client, producer = make_client()
    topic = new_topic()
    for n in range(200):
        response = client.post("/produce?wait=false", json={"topic": topic, "message": {"n": n}})
        assert response.status_code == 202
    batch = [{"topic": topic, "message": {"n": n}} for n in range(200, 300)]
    response = client.post("/produce/batch?wait=false", json=batch)
    assert response.status_code == 202 and response.get_json()["messages_sent"] == 100
    producer.close(10)
    values = sorted(json.loads(record.value)["n"] for record in read_topic(topic, 300))
    assert values == list(range(300))
    assert producer.queued_failures == 0 and producer.pending == 0


@pytest.mark.stock_path
def test_concurrent_requests_are_all_acknowledged_and_read_back(make_client, new_topic, read_topic):
    """Many threads sending at once: a wake-up of the I/O thread lost between them would leave requests waiting
    until their delivery timeout (seen with a wrong coalescing of wake-ups: 16 of 1,600 requests)."""
    client, producer = make_client()
    topic = new_topic()
    statuses = []

    def send(thread: int) -> None:
        for n in range(100):
            response = client.post("/produce", json={"topic": topic, "message": {"t": thread, "n": n}})
            statuses.append(response.status_code)
        batch = [{"topic": topic, "message": {"t": thread, "n": n}} for n in range(100, 300)]
        statuses.append(client.post("/produce/batch", json=batch).status_code)

    threads = [threading.Thread(target=send, args=(thread,)) for thread in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(statuses) and len(statuses) == 16 * 101
    records = read_topic(topic, 16 * 300)
    assert sorted((value["t"], value["n"]) for value in (json.loads(r.value) for r in records)) == [
        (thread, n) for thread in range(16) for n in range(300)
    ]


def test_a_closed_kafka_producer_refuses_at_once(make_client, new_topic, end_offsets):
    """What send() refuses, the service's direct appends refuse too, at once and in send()'s words."""
    client, producer = make_client()
    topic = new_topic()
    assert client.post("/produce", json={"topic": topic, "message": {}}).status_code == 200
    producer._producer.close(5)  # as a replaced producer is closed once its grace period ends
    started = time.monotonic()
    response = client.post("/produce/batch", json=[{"topic": topic, "message": {"n": n}} for n in range(3)])
    assert time.monotonic() - started < 2.0
    assert response.status_code == 503
    assert "KafkaProducer already closed" in response.get_json()["detail"]
    assert sum(end_offsets(topic).values()) == 1


@pytest.mark.own_broker
def test_backpressure_answers_429_instead_of_queueing_more(make_client, own_broker, new_topic, read_topic):
    client, producer = make_client(max_pending_messages=20, max_batch_messages=20)
    topic = new_topic()
    assert client.post("/produce", json={"topic": topic, "message": {"n": -1}}).status_code == 200
    statuses = []
    with own_broker.paused():
        for n in range(40):
            response = client.post("/produce?wait=false", json={"topic": topic, "message": {"n": n}})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "1"
                assert "PRODUCER_MAX_PENDING_MESSAGES" in response.get_json()["detail"]
        assert producer.pending <= 20
    assert statuses.count(202) == 20 and statuses.count(429) == 20
    # Queued before the limit, so delivered once the broker answers again.
    queued = [n for n, status in zip(range(40), statuses, strict=True) if status == 202]
    values = sorted(json.loads(r.value)["n"] for r in read_topic(topic, 21))
    assert values == [-1, *queued]


@pytest.mark.stock_path
@pytest.mark.own_broker
def test_fire_and_forget_recovers_after_its_queued_messages_expired(make_client, own_broker, new_topic, read_topic):
    client, producer = make_client(request_timeout_ms=1000, delivery_timeout_ms=2000)
    topic = new_topic()
    assert client.post("/produce", json={"topic": topic, "message": {"n": -1}}).status_code == 200
    with own_broker.paused():
        for n in range(5):
            assert client.post("/produce?wait=false", json={"topic": topic, "message": {"n": n}}).status_code == 202
        deadline = time.monotonic() + 10
        while producer.queued_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # A batch expired with no request waiting on it (kafka-python then holds the others back, unexpired).
        assert producer.queued_failures >= 1
    # The broker is back: later fire-and-forget messages must reach it, with no waited request to notice the outage.
    accepted, deadline = [], time.monotonic() + 30
    for n in range(100, 110):
        while time.monotonic() < deadline:
            response = client.post("/produce?wait=false", json={"topic": topic, "message": {"n": n}})
            if response.status_code == 202:
                accepted.append(n)
                break
            assert response.status_code == 503, response.get_json()  # "unavailable" until it answers again
            time.sleep(0.2)
    assert accepted == list(range(100, 110))
    values = {json.loads(record.value)["n"] for record in read_topic(topic, 11, timeout=20)}
    assert {-1, *accepted} <= values  # the expired ones may or may not have reached the broker before it paused


@pytest.mark.stock_path
@pytest.mark.own_broker
def test_atomic_batch_against_a_paused_broker_answers_in_time_then_recovers(make_client, own_broker, broker,
                                                                            new_topic):
    client, _ = make_client(request_timeout_ms=1000, delivery_timeout_ms=2000, max_block_ms=2000)
    topic = new_topic()
    batch = [{"topic": topic, "message": {"n": n}} for n in range(3)]
    assert client.post("/produce/batch?atomic=true", json=batch).status_code == 200
    with own_broker.paused():
        started = time.monotonic()
        response = client.post("/produce/batch?atomic=true", json=[{"topic": topic, "message": {"n": 3}}])
        # The delivery timeout, and no more: the abort runs in the background (before, it waited its own
        # request timeout, 1 s here, on the paused coordinator).
        assert time.monotonic() - started < 2.0 + 0.8
        assert response.status_code == 503, response.get_json()
        assert "nothing was written" in response.get_json()["detail"]
    status, deadline = None, time.monotonic() + 30
    while status != 200 and time.monotonic() < deadline:
        status = client.post("/produce/batch?atomic=true", json=[{"topic": topic, "message": {"n": 4}}]).status_code
        assert status in (200, 503)
    assert status == 200
    values = sorted(json.loads(record.value)["n"] for record in read_committed(broker.bootstrap_servers, topic))
    assert values[:3] == [0, 1, 2] and values[-1] == 4 and 3 not in values


@pytest.mark.stock_path
def test_partial_batch_failure_is_207_with_each_result(make_client, new_topic, read_topic):
    client, _ = make_client()
    topic = new_topic(partitions=1, max_message_bytes="1000")
    batch = [{"topic": topic, "message": {"n": 0}}, {"topic": topic, "message": {"blob": "x" * 5000}}]
    response = client.post("/produce/batch", json=batch)
    assert response.status_code == 207, response.get_json()
    body = response.get_json()
    assert body["success"] is False and body["messages_sent"] == 1
    assert [result["success"] for result in body["results"]] == [True, False]
    assert "too large" in body["results"][1]["error"] and "offset" not in body["results"][1]
    [record] = read_topic(topic, 1)
    assert json.loads(record.value)["n"] == 0 and record.offset == body["results"][0]["offset"]


def test_a_rejected_message_does_not_break_the_worker(make_client, new_topic, read_topic):
    # kafka-python's idempotent producer fails every later send once a broker rejected a record as too large;
    # the service must replace it rather than answer errors from then on.
    client, _ = make_client()
    small_topic, other_topic = new_topic(partitions=1, max_message_bytes="1000"), new_topic()
    assert client.post("/produce", json={"topic": small_topic, "message": {"blob": "x" * 5000}}).status_code == 413
    for topic in (other_topic, small_topic):
        response = client.post("/produce", json={"topic": topic, "message": {"n": 1}})
        assert response.status_code == 200, response.get_json()
        assert [json.loads(r.value)["n"] for r in read_topic(topic, 1)] == [1]


def test_batch_whose_messages_all_fail_is_never_200(make_client, new_topic, end_offsets):
    client, _ = make_client()
    topic = new_topic(partitions=1, max_message_bytes="1000")
    batch = [{"topic": topic, "message": {"blob": "x" * 5000}}] * 2
    response = client.post("/produce/batch", json=batch)
    assert response.status_code == 413
    assert response.get_json()["messages_sent"] == 0
    assert end_offsets(topic) == {0: 0}


@pytest.mark.stock_path
def test_atomic_batch_is_seen_whole_by_read_committed(make_client, broker, new_topic):
    client, _ = make_client()
    topic = new_topic()
    batch = [{"topic": topic, "key": f"k{n}", "message": {"n": n}} for n in range(20)]
    response = client.post("/produce/batch?atomic=true", json=batch)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["messages_sent"] == 20
    records = read_committed(broker.bootstrap_servers, topic)
    assert sorted(json.loads(record.value)["n"] for record in records) == list(range(20))
    # A second transaction from the same worker works too.
    assert client.post("/produce/batch?atomic=true", json=batch[:3]).status_code == 200
    assert len(read_committed(broker.bootstrap_servers, topic)) == 23


@pytest.mark.stock_path
def test_atomic_batch_failing_in_the_middle_writes_nothing_visible(make_client, broker, new_topic):
    client, _ = make_client()
    topic = new_topic(partitions=1, max_message_bytes="1000")
    batch = [{"topic": topic, "message": {"n": 0}}, {"topic": topic, "message": {"blob": "x" * 5000}},
             {"topic": topic, "message": {"n": 2}}]
    response = client.post("/produce/batch?atomic=true", json=batch)
    assert response.status_code == 413, response.get_json()
    assert "aborted" in response.get_json()["detail"] or "not committed" in response.get_json()["detail"]
    assert read_committed(broker.bootstrap_servers, topic) == []
    # The worker's next transaction is unaffected.
    good = [{"topic": topic, "message": {"n": 3}}]
    assert client.post("/produce/batch?atomic=true", json=good).status_code == 200
    assert [json.loads(r.value)["n"] for r in read_committed(broker.bootstrap_servers, topic)] == [3]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One produce request of a load run: its message ids, status (None: no answer), duration, body, start."""

    ids: list
    status: int | None
    seconds: float
    body: object
    started: float


def _load(url: str, topic: str, stop: threading.Event, outcomes: list, batch: int = 0, wait: bool = True):
    """Send produce requests until told to stop, recording an Outcome per request."""
    while not stop.is_set():
        ids = [uuid.uuid4().hex for _ in range(max(batch, 1))]
        messages = [{"topic": topic, "message": {"id": i}} for i in ids]
        path = "/produce/batch" if batch else "/produce"
        query = "" if wait else "?wait=false"
        started = time.monotonic()
        try:
            status, _, body = http("POST", url + path + query, json.dumps(messages if batch else messages[0]),
                                   timeout=30)
        except (OSError, http_client.HTTPException) as error:  # refused, reset or cut off: no answer
            status, body = None, str(error)
        outcomes.append(Outcome(ids, status, time.monotonic() - started, body, started))


def _run_load(url, topic, seconds_before, action, seconds_after, singles=6, batches=2, wait=True):
    stop, outcomes, threads = threading.Event(), [], []
    for batch in [0] * singles + [10] * batches:
        thread = threading.Thread(target=_load, args=(url, topic, stop, outcomes, batch, wait), daemon=True)
        thread.start()
        threads.append(thread)
    time.sleep(seconds_before)
    result = action()
    time.sleep(seconds_after)
    stop.set()
    for thread in threads:
        thread.join(timeout=40)
    return outcomes, result


def _acknowledged_ids(outcomes):
    return [i for outcome in outcomes if outcome.status == 200 for i in outcome.ids]


@pytest.mark.stock_path
@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_sigterm_under_load_completes_in_flight_requests(broker, start_gunicorn, new_topic, read_topic, worker_class):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=worker_class)
    topic = new_topic()

    def terminate():
        service.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = service.process.wait(timeout=40)
        return code, time.monotonic() - started

    outcomes, (code, exit_seconds) = _run_load(service.url, topic, 2.0, terminate, 0.5)
    assert code == 0 and exit_seconds < 30, service.log()
    answered = [outcome for outcome in outcomes if outcome.status is not None]
    assert answered and all(outcome.status == 200 for outcome in answered), answered[-3:]
    acknowledged = _acknowledged_ids(outcomes)
    found = [json.loads(record.value)["id"] for record in read_topic(topic, len(acknowledged))]
    assert set(acknowledged) <= set(found) and len(found) == len(set(found))


@pytest.mark.stock_path
@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_sigterm_flushes_fire_and_forget_messages(broker, start_gunicorn, new_topic, read_topic, worker_class):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=worker_class)
    topic = new_topic()
    queued = []
    for n in range(50):
        batch = [{"topic": topic, "message": {"id": f"{n}-{i}"}} for i in range(20)]
        status, _, body = http("POST", service.url + "/produce/batch?wait=false", json.dumps(batch))
        assert status == 202, body
        queued.extend(message["message"]["id"] for message in batch)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=40) == 0
    found = [json.loads(record.value)["id"] for record in read_topic(topic, len(queued))]
    assert sorted(found) == sorted(queued)


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_killed_worker_is_replaced_with_its_own_producer(broker, start_gunicorn, new_topic, read_topic, worker_class):
    import os

    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=worker_class)
    topic = new_topic()
    before = service.worker_pids()
    assert len(before) == 2
    victim = min(before)

    def kill_worker():
        os.kill(victim, signal.SIGKILL)

    outcomes, _ = _run_load(service.url, topic, 1.5, kill_worker, 4.0)
    after = service.worker_pids()
    assert victim not in after and len(after) == 2
    failed = [outcome for outcome in outcomes if outcome.status != 200]
    # Only requests the killed worker held can fail, and they fail as lost connections, not wrong answers.
    assert len(failed) <= 16 and all(outcome.status is None for outcome in failed), failed
    assert all(outcome.status == 200 for outcome in outcomes[-20:])
    acknowledged = _acknowledged_ids(outcomes)
    found = [json.loads(record.value)["id"] for record in read_topic(topic, len(acknowledged))]
    assert set(acknowledged) <= set(found) and len(found) == len(set(found))


@pytest.mark.stock_path
@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_fire_and_forget_and_atomic_batches_work_under_gunicorn(broker, start_gunicorn, new_topic, read_topic,
                                                                 worker_class):
    # Queued sends complete on kafka-python's I/O thread, transactions wait on the worker's locks: in a gevent
    # worker both are greenlets.
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=worker_class)
    queued, atomic = new_topic(), new_topic()
    batch = json.dumps([{"topic": queued, "message": {"n": n}} for n in range(10)])
    status, _, body = http("POST", service.url + "/produce/batch?wait=false", batch)
    assert status == 202, body
    for _ in range(2):  # a second transaction from the same worker too
        batch = json.dumps([{"topic": atomic, "message": {"n": n}} for n in range(5)])
        status, _, body = http("POST", service.url + "/produce/batch?atomic=true", batch)
        assert status == 200 and body["messages_sent"] == 5, body
    assert sorted(json.loads(record.value)["n"] for record in read_topic(queued, 10)) == list(range(10))
    committed = read_committed(broker.bootstrap_servers, atomic)
    assert sorted(json.loads(record.value)["n"] for record in committed) == sorted([*range(5), *range(5)])
