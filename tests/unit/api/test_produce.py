"""POST /produce and /produce/batch with a fake producer: validation, responses and error paths."""

import json

import pytest

from producer_api.api.bodies import load_query
from producer_api.api.schemas import BatchOptionsSchema, ProduceOptionsSchema
from producer_api.core.errors import DeliveryTimeout, KafkaUnavailable, TopicNotFound, UnknownPartition

SEED_SINGLE = {
    "topic": "test-topic",
    "key": "message-1",
    "message": {"user_id": 123, "action": "login", "data": "Hello from API!"},
    "partition": 0,
}
SEED_BATCH = [
    {"topic": "test-topic", "key": "msg-1", "message": {"text": "First message"}},
    {"topic": "test-topic", "key": "msg-2", "message": {"text": "Second message"}},
]


def test_produce_answers_the_seed_fields(client, producer):
    response = client.post("/produce", json=SEED_SINGLE)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"success", "message", "topic", "partition", "offset", "timestamp"}
    assert body["success"] is True
    assert body["message"] == "Message sent successfully"
    assert body["topic"] == "test-topic"
    [sent] = producer.sent
    assert sent.key == b"message-1"
    assert sent.partition == 0
    value = json.loads(sent.value)
    assert value["user_id"] == 123 and value["source"] == "python-producer-api"
    assert value["timestamp"] == body["timestamp"]


def test_produce_accepts_json_without_content_type(client, producer):
    response = client.post("/produce", data='{"topic": "test", "message": {"id": 1}}',
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert len(producer.sent) == 1


def test_batch_answers_the_seed_fields_plus_partition_and_offset(client, producer):
    response = client.post("/produce/batch", json=SEED_BATCH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["messages_sent"] == 2
    for result in body["results"]:
        assert set(result) == {"success", "topic", "message", "partition", "offset"}
    assert [message.key for message in producer.sent] == [b"msg-1", b"msg-2"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"invalid": "json"', "Invalid JSON body"),
        ("", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        ('{"topic": "t", "message": {"x": NaN}}', "NaN"),
        ("[" * 20000 + "]" * 20000, "nested too deeply"),
        ('{"topic": "t", "topic": "u", "message": {}}', "duplicate key 'topic'"),
        ('{"topic": "t", "message": {"a": 1, "a": 2}}', "duplicate key 'a'"),
        ('{"topic": "t", "message": {"x": Infinity}}', "Infinity"),
        ('{"topic": "t", "message": {"x": -1e999}}', "number -1e999 is out of range"),
    ],
)
def test_malformed_json_is_400(client, producer, body, fragment):
    response = client.post("/produce", data=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["detail"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"topic": "test-topic"}, "message"),
        ({"message": {}}, "topic"),
        ({"topic": "bad topic", "message": {}}, "topic"),
        ({"topic": "t", "message": {}, "extra": 1}, "extra"),
        ({"topic": "t", "message": "text"}, "message"),
        ({"topic": "t", "message": {}, "partition": -1}, "partition"),
    ],
)
def test_invalid_request_is_422_naming_the_field(client, producer, body, field):
    response = client.post("/produce", json=body)
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["detail"].startswith("Failed to produce message: Invalid message format")
    assert field in payload["errors"]
    assert producer.sent == []


def test_produce_refuses_a_list(client):
    assert client.post("/produce", json=[SEED_SINGLE]).status_code == 422


def test_batch_with_one_bad_item_is_rejected_whole_naming_its_index(client, producer):
    batch = [*SEED_BATCH, {"topic": "test-topic"}]
    response = client.post("/produce/batch", json=batch)
    assert response.status_code == 422
    payload = response.get_json()
    assert "index 2" in payload["detail"]
    assert set(payload["errors"]) == {"2"}
    assert producer.sent == []


@pytest.mark.parametrize("body", [{"topic": "t", "message": {}}, [], "text"])
def test_batch_must_be_a_non_empty_array(client, body):
    assert client.post("/produce/batch", json=body).status_code == 422


def test_batch_longer_than_the_limit_is_422_as_its_schema_says(client, producer):
    response = client.post("/produce/batch", json=[SEED_BATCH[0]] * 11)
    assert response.status_code == 422  # the document's maxItems: 413 is for bytes
    assert "limit of 10" in response.get_json()["detail"]
    assert producer.sent == []


def test_body_over_the_limit_is_413(client, producer):
    response = client.post("/produce", json={"topic": "t", "message": {"x": "y" * 70000}})
    assert response.status_code == 413
    assert "too large" in response.get_json()["detail"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TopicNotFound("Failed to produce message: Topic 'x' does not exist"), 404),
        (UnknownPartition("Failed to produce message: Partition 9 does not exist"), 404),
        (KafkaUnavailable("Failed to produce message: Connection timeout"), 503),
    ],
)
def test_errors_raised_before_sending_keep_their_status(client, producer, error, status):
    producer.raise_before_send = error
    response = client.post("/produce", json=SEED_SINGLE)
    assert response.status_code == status
    assert response.get_json()["detail"] == error.detail


def test_unavailable_kafka_sets_retry_after(client, producer):
    producer.raise_before_send = KafkaUnavailable("Failed to produce message: Connection timeout")
    response = client.post("/produce", json=SEED_SINGLE)
    assert response.headers["Retry-After"] == "5"


def test_failed_delivery_of_a_single_message_returns_its_error(client, producer):
    producer.fail_with = {0: DeliveryTimeout("Failed to produce message: timed out")}
    response = client.post("/produce", json=SEED_SINGLE)
    assert response.status_code == 504
    assert response.get_json() == {"detail": "Failed to produce message: timed out"}


def test_partly_failed_batch_is_207_with_each_result(client, producer):
    producer.fail_with = {1: KafkaUnavailable("Failed to produce message: not enough replicas")}
    response = client.post("/produce/batch", json=SEED_BATCH)
    assert response.status_code == 207
    body = response.get_json()
    assert body["success"] is False and body["messages_sent"] == 1
    assert body["results"][0]["success"] is True and "offset" in body["results"][0]
    assert body["results"][1] == {"success": False, "topic": "test-topic", "message": "Message not sent",
                                  "error": "Failed to produce message: not enough replicas"}


def test_wholly_failed_batch_has_the_error_status_and_each_result(client, producer):
    error = DeliveryTimeout("Failed to produce message: timed out")
    producer.fail_with = {0: error, 1: error}
    response = client.post("/produce/batch", json=SEED_BATCH)
    assert response.status_code == 504
    body = response.get_json()
    assert body["detail"] == "Failed to produce message: timed out"
    assert body["messages_sent"] == 0 and len(body["results"]) == 2


def test_wait_false_answers_202_queued(client, producer):
    response = client.post("/produce?wait=false", json=SEED_SINGLE)
    assert response.status_code == 202
    body = response.get_json()
    assert body["success"] is True and body["message"] == "Queued for delivery" and body["topic"] == "test-topic"
    assert producer.last_call == "queue" and len(producer.sent) == 1


def test_batch_wait_false_is_the_seed_response(client, producer):
    response = client.post("/produce/batch?wait=false", json=SEED_BATCH)
    assert response.status_code == 202
    assert response.get_json() == {
        "success": True,
        "messages_sent": 2,
        "results": [{"success": True, "topic": "test-topic", "message": "Queued for delivery"}] * 2,
    }


def test_atomic_batch_uses_a_transaction(client, producer):
    response = client.post("/produce/batch?atomic=true", json=SEED_BATCH)
    assert response.status_code == 200
    assert producer.last_call == "atomic"


def test_atomic_always_waits_for_the_commit(client, producer):
    response = client.post("/produce/batch?atomic=true&wait=false", json=SEED_BATCH)
    assert response.status_code == 200
    assert producer.last_call == "atomic"


def test_bad_query_value_is_422(client, producer):
    response = client.post("/produce?wait=maybe", json=SEED_SINGLE)
    assert response.status_code == 422
    assert "wait" in response.get_json()["errors"]
    assert producer.sent == []


def test_too_many_pending_is_429_with_retry_after(client, producer):
    from producer_api.core.errors import TooManyPending

    producer.raise_before_send = TooManyPending("Failed to produce message: 10 messages are already waiting")
    response = client.post("/produce", json=SEED_SINGLE)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("schema", [ProduceOptionsSchema(), BatchOptionsSchema()])
def test_options_without_a_query_string_are_the_schema_defaults(app, schema):
    with app.test_request_context("/produce"):
        assert load_query(schema) == schema.load({})
