"""Every endpoint and error status against a real broker; every written message is read back from Kafka."""

import dataclasses
import json
import time

import pytest
from kafka.partitioner.default import murmur2

from producer_api import create_app
from producer_api.kafka.producer import MessageProducer

SEED_MESSAGE = {"user_id": 123, "action": "login", "data": "Hello from API!"}


@pytest.mark.stock_path
def test_single_message_is_in_kafka_where_the_response_says(live_client, new_topic, read_topic):
    topic = new_topic()
    response = live_client.post("/produce", json={"topic": topic, "key": "message-1", "message": SEED_MESSAGE,
                                                  "partition": 0})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True and body["message"] == "Message sent successfully"
    [record] = read_topic(topic, 1)
    assert (record.topic, record.partition, record.offset) == (topic, body["partition"], body["offset"]) == (
        topic, 0, 0)
    assert record.key == b"message-1"
    value = json.loads(record.value)
    assert value == {**SEED_MESSAGE, "timestamp": body["timestamp"], "source": "python-producer-api",
                     "server_time": value["server_time"]}
    assert abs(value["server_time"] - time.time()) < 60
    assert record.timestamp == int(value["server_time"] * 1000)


def test_client_fields_are_never_overwritten(live_client, new_topic, read_topic):
    topic = new_topic()
    message = {"timestamp": "2024-01-15T10:30:00Z", "source": "mobile", "server_time": 7}
    assert live_client.post("/produce", json={"topic": topic, "message": message}).status_code == 200
    [record] = read_topic(topic, 1)
    assert json.loads(record.value) == message
    assert record.key is None


def test_same_key_lands_in_same_partition(live_client, new_topic, read_topic):
    topic = new_topic(partitions=3)
    partitions = {
        key: {live_client.post("/produce", json={"topic": topic, "key": key, "message": {"n": n}}).get_json()[
            "partition"] for n in range(5)}
        for key in ("user-1", "user-2", "user-3", "user-4")
    }
    assert all(len(seen) == 1 for seen in partitions.values()), partitions
    records = read_topic(topic, 20)
    assert len(records) == 20
    for record in records:
        assert {record.partition} == partitions[record.key.decode()]


@pytest.mark.stock_path
def test_keys_land_where_kafkas_default_partitioner_puts_them(live_client, new_topic, read_topic):
    """Single and batch messages with a key go to murmur2(key) % partitions, as with kafka-python's and the Java
    client's default partitioner; messages without a key are spread over the partitions."""
    topic = new_topic(partitions=5)
    keys = [f"customer-{n}" for n in range(40)]
    for key in keys[:10]:
        assert live_client.post("/produce", json={"topic": topic, "key": key, "message": {}}).status_code == 200
    batch = [{"topic": topic, "key": key, "message": {}} for key in keys[10:]]
    batch += [{"topic": topic, "message": {"keyless": n}} for n in range(60)]
    assert live_client.post("/produce/batch", json=batch).status_code == 200
    records = read_topic(topic, 100)
    assert len(records) == 100
    expected = {key: (murmur2(key.encode()) & 0x7FFFFFFF) % 5 for key in keys}
    assert {record.key.decode(): record.partition for record in records if record.key} == expected
    assert len({record.partition for record in records if record.key is None}) > 1


@pytest.mark.stock_path
def test_batch_is_in_kafka_where_each_result_says(live_client, new_topic, read_topic):
    topic = new_topic()
    batch = [{"topic": topic, "key": f"msg-{n}", "message": {"text": f"message {n}"}} for n in range(50)]
    response = live_client.post("/produce/batch", json=batch)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True and body["messages_sent"] == 50
    records = {(record.partition, record.offset): record for record in read_topic(topic, 50)}
    assert len(records) == 50
    for sent, result in zip(batch, body["results"], strict=True):
        assert result["success"] is True and result["topic"] == topic
        record = records[(result["partition"], result["offset"])]
        assert record.key == sent["key"].encode()
        assert json.loads(record.value)["text"] == sent["message"]["text"]


@pytest.mark.stock_path
def test_batch_across_topics(live_client, new_topic, read_topic):
    first, second = new_topic(), new_topic()
    batch = [{"topic": first, "message": {"n": 1}}, {"topic": second, "message": {"n": 2}}]
    assert live_client.post("/produce/batch", json=batch).status_code == 200
    assert [json.loads(r.value)["n"] for r in read_topic(first, 1)] == [1]
    assert [json.loads(r.value)["n"] for r in read_topic(second, 1)] == [2]


@pytest.mark.parametrize(
    ("bad_item", "status"),
    [
        ({"message": {"n": 1}}, 422),  # schema: no topic
        ({"partition": 7, "message": {"n": 1}}, 404),  # the topic has no partition 7: a missing resource
        ({"message": {"blob": "x" * 1_100_000}}, 413),  # over the producer's max request size
    ],
)
@pytest.mark.stock_path
def test_rejected_batch_writes_nothing(make_settings, live_producer, broker, new_topic, end_offsets, bad_item,
                                       status):
    topic = new_topic()
    client = create_app(make_settings(bootstrap_servers=broker.bootstrap_servers, max_body_bytes=4 << 20),
                        producer=live_producer).test_client()
    bad = {"topic": topic, **bad_item} if "partition" in bad_item or "blob" in bad_item["message"] else bad_item
    batch = [{"topic": topic, "message": {"n": 0}}, {"topic": topic, "message": {"n": 1}}, bad]
    response = client.post("/produce/batch", json=batch)
    assert response.status_code == status, response.get_json()
    assert "index 2" in response.get_json()["detail"]
    time.sleep(0.5)
    assert set(end_offsets(topic).values()) == {0}


@pytest.mark.stock_path
def test_unknown_partition_is_404_at_once(live_client, new_topic, end_offsets):
    topic = new_topic(partitions=3)
    started = time.monotonic()
    response = live_client.post("/produce", json={"topic": topic, "message": {}, "partition": 349})
    assert time.monotonic() - started < 1.0
    assert response.status_code == 404  # as Confluent REST Proxy answers: the partition is a missing resource
    assert "Partition 349 does not exist" in response.get_json()["detail"]
    batch = [{"topic": topic, "message": {"n": 0}}, {"topic": topic, "message": {}, "partition": 3}]
    response = live_client.post("/produce/batch", json=batch)
    assert response.status_code == 404 and "index 1" in response.get_json()["detail"]
    assert set(end_offsets(topic).values()) == {0}


@pytest.mark.stock_path
def test_message_over_the_max_request_size_is_413(live_client, new_topic, end_offsets):
    topic = new_topic()
    response = live_client.post("/produce", json={"topic": topic, "message": {"blob": "x" * 1_100_000}})
    assert response.status_code == 413
    assert "KAFKA_MAX_REQUEST_SIZE" in response.get_json()["detail"]
    assert set(end_offsets(topic).values()) == {0}


@pytest.mark.stock_path
def test_message_over_the_topic_limit_is_413_from_the_broker(live_client, new_topic, end_offsets):
    topic = new_topic(partitions=1, max_message_bytes="1000")
    response = live_client.post("/produce", json={"topic": topic, "message": {"blob": "x" * 5000}})
    assert response.status_code == 413
    assert "too large" in response.get_json()["detail"]
    assert end_offsets(topic) == {0: 0}


def test_body_over_the_limit_is_413(make_settings, live_producer, broker):
    client = create_app(make_settings(bootstrap_servers=broker.bootstrap_servers, max_body_bytes=2048),
                        producer=live_producer).test_client()
    response = client.post("/produce", json={"topic": "t", "message": {"x": "y" * 4096}})
    assert response.status_code == 413
    assert response.get_json()["detail"] == "Request body too large: the limit is 2048 bytes"


def test_missing_topic_is_404_within_the_bound(live_client, live_settings, broker_auto_creates_topics, end_offsets):
    if broker_auto_creates_topics:
        pytest.skip("this broker creates topics on first use, so a topic cannot be missing")
    started = time.monotonic()
    response = live_client.post("/produce", json={"topic": "no-such-topic-here", "message": {}})
    assert response.status_code == 404
    assert time.monotonic() - started < live_settings.max_block_ms / 1000 + 2.5
    assert "does not exist" in response.get_json()["detail"]


def test_missing_topic_in_a_batch_writes_nothing(live_client, new_topic, broker_auto_creates_topics, end_offsets):
    if broker_auto_creates_topics:
        pytest.skip("this broker creates topics on first use, so a topic cannot be missing")
    topic = new_topic()
    batch = [{"topic": topic, "message": {}}, {"topic": "no-such-topic-either", "message": {}}]
    assert live_client.post("/produce/batch", json=batch).status_code == 404
    assert set(end_offsets(topic).values()) == {0}


def test_malformed_json_and_validation_errors_write_nothing(live_client, new_topic, end_offsets):
    topic = new_topic()
    assert live_client.post("/produce", data='{"topic": "' + topic + '", "message": {').status_code == 400
    assert live_client.post("/produce", json={"topic": topic}).status_code == 422
    assert live_client.post("/produce", json={"topic": topic, "message": {}, "x": 1}).status_code == 422
    assert set(end_offsets(topic).values()) == {0}


def test_no_broker_answers_503_fast_with_retry_after(make_settings):
    settings = make_settings(bootstrap_servers="127.0.0.1:1", max_block_ms=1500)
    producer = MessageProducer(settings)
    try:
        client = create_app(settings, producer=producer).test_client()
        started = time.monotonic()
        health = client.get("/health")
        assert time.monotonic() - started < 3.0
        assert health.status_code == 503 and health.get_json()["kafka_connected"] is False
        started = time.monotonic()
        response = client.post("/produce", json={"topic": "t", "message": {}})
        assert time.monotonic() - started < settings.max_block_ms / 1000 + 2.0
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.get_json()["detail"].startswith("Failed to produce message: Connection timeout")
    finally:
        producer.close(1)


@pytest.mark.stock_path
def test_health_against_the_real_broker(live_client):
    response = live_client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["kafka_connected"] is True


@pytest.mark.own_broker
def test_a_hung_broker_is_unavailable_never_a_missing_topic(own_broker, live_settings, new_topic):
    # The metadata request sent when the wait for the topic began times out just as that wait ends, within the
    # second the service then gives a broker to answer at all: kafka-python's timeout is not the broker's answer.
    settings = dataclasses.replace(live_settings, request_timeout_ms=2000, delivery_timeout_ms=2000, max_block_ms=2000)
    topic = new_topic()  # exists, but this producer has never asked for its metadata
    producer = MessageProducer(settings)
    try:
        client = create_app(settings, producer=producer).test_client()
        with own_broker.paused():
            started = time.monotonic()
            response = client.post("/produce", json={"topic": topic, "message": {"n": 0}})
            assert response.status_code == 503, response.get_json()
            assert time.monotonic() - started < 2.0 + 1.0 + 1.0
            assert "Connection timeout" in response.get_json()["detail"]
            # Now known to be unreachable: the next request answers within the second's check.
            started = time.monotonic()
            assert client.post("/produce", json={"topic": topic, "message": {"n": 1}}).status_code == 503
            assert time.monotonic() - started < 2.5
        deadline, status = time.monotonic() + 30, None
        while status != 200 and time.monotonic() < deadline:
            status = client.post("/produce", json={"topic": topic, "message": {"n": 2}}).status_code
            assert status in (200, 503)
        assert status == 200
    finally:
        producer.close(2)


@pytest.mark.stock_path
@pytest.mark.own_broker
def test_paused_broker_gives_503_health_504_produce_then_recovers(own_broker, live_settings, new_topic, read_topic):
    settings = dataclasses.replace(live_settings, request_timeout_ms=1000, delivery_timeout_ms=2000,
                                   health_timeout_ms=1000)
    producer = MessageProducer(settings)
    try:
        client = create_app(settings, producer=producer).test_client()
        topic = new_topic()
        assert client.post("/produce", json={"topic": topic, "message": {"n": 0}}).status_code == 200
        with own_broker.paused():
            started = time.monotonic()
            assert client.get("/health").status_code == 503
            assert time.monotonic() - started < 3.0
            started = time.monotonic()
            response = client.post("/produce", json={"topic": topic, "message": {"n": 1}})
            assert time.monotonic() - started < settings.delivery_timeout_ms / 1000 + 2.0
            assert response.status_code == 504, response.get_json()
            assert "may or may not have been written" in response.get_json()["detail"]
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        response = client.post("/produce", json={"topic": topic, "message": {"n": 2}})
        assert response.status_code == 200, response.get_json()
        values = [json.loads(record.value)["n"] for record in read_topic(topic, 2)]
        # The timed-out message may or may not have been written (that is what 504 says); the others must be.
        assert 0 in values and 2 in values and len(values) == len(set(values))
    finally:
        producer.close(2)
