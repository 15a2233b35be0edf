"""API keys and topic policy in the deployed service (gunicorn, real broker): allowed, 401, 403, nothing written."""

import json

import pytest

from tests.integration.conftest import http

KEYS = [{"name": "orders-team", "key": "orders-secret-0123456789", "topics": ["it-*"]},
        {"name": "audit", "key": "audit-secret-0123456789", "topics": ["audit-*"]}]


@pytest.fixture
def keyed_service(broker, start_gunicorn):
    """The service with two API keys configured through the environment."""
    return start_gunicorn(broker.bootstrap_servers, PRODUCER_API_KEYS=json.dumps(KEYS))


def test_allowed_key_writes_and_the_message_is_read_back(keyed_service, new_topic, read_topic):
    topic = new_topic()
    body = json.dumps({"topic": topic, "key": "k", "message": {"n": 1}})
    status, _, answer = http("POST", keyed_service.url + "/produce", body,
                             {"Authorization": "Bearer orders-secret-0123456789"})
    assert status == 200, answer
    [record] = read_topic(topic, 1)
    assert (record.partition, record.offset, record.key) == (answer["partition"], answer["offset"], b"k")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "not-a-key-not-a-key"}, 401),
        ({"X-API-Key": "audit-secret-0123456789"}, 403),
    ],
)
def test_refused_requests_write_nothing(keyed_service, new_topic, end_offsets, headers, status):
    topic = new_topic()
    batch = json.dumps([{"topic": topic, "message": {"n": n}} for n in range(3)])
    got, _, answer = http("POST", keyed_service.url + "/produce/batch", batch, headers)
    assert got == status and answer["detail"]
    assert "secret" not in json.dumps(answer)
    assert set(end_offsets(topic).values()) == {0}


def test_internal_topics_are_refused_without_keys(broker, start_gunicorn):
    service = start_gunicorn(broker.bootstrap_servers)
    status, _, answer = http("POST", service.url + "/produce",
                             json.dumps({"topic": "__consumer_offsets", "message": {}}))
    assert status == 403 and "topic policy" in answer["detail"]


def test_keys_never_reach_the_log(keyed_service, new_topic):
    topic = new_topic()
    http("POST", keyed_service.url + "/produce", json.dumps({"topic": topic, "message": {}}),
         {"X-API-Key": "orders-secret-0123456789"})
    http("POST", keyed_service.url + "/produce", json.dumps({"topic": topic, "message": {}}),
         {"X-API-Key": "wrong-secret-0123456789"})
    assert "secret-0123456789" not in keyed_service.log()
