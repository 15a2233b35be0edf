"""The request schema enforces the documented rules."""

import pytest
from marshmallow import ValidationError

from producer_api.schemas import ProduceRequestSchema


def load(document):
    return ProduceRequestSchema().load(document)


def test_minimal_request_gets_defaults():
    assert load({"topic": "t", "message": {}}) == {"topic": "t", "message": {}, "key": None, "partition": None}


@pytest.mark.parametrize("topic", ["a", "test-topic", "user.events_v2", "x" * 249, "..a"])
def test_legal_topic_names(topic):
    assert load({"topic": topic, "message": {}})["topic"] == topic


@pytest.mark.parametrize("topic", ["", ".", "..", "x" * 250, "has space", "slash/topic", "ünicode", 5, None])
def test_illegal_topic_names(topic):
    with pytest.raises(ValidationError) as raised:
        load({"topic": topic, "message": {}})
    assert "topic" in raised.value.messages


@pytest.mark.parametrize("message", ["text", 1, [1, 2], None, True])
def test_message_must_be_an_object(message):
    with pytest.raises(ValidationError) as raised:
        load({"topic": "t", "message": message})
    assert "message" in raised.value.messages


@pytest.mark.parametrize("partition", [-1, "0", 1.5, True])
def test_partition_must_be_a_non_negative_integer(partition):
    with pytest.raises(ValidationError) as raised:
        load({"topic": "t", "message": {}, "partition": partition})
    assert "partition" in raised.value.messages


def test_key_must_be_a_string():
    with pytest.raises(ValidationError) as raised:
        load({"topic": "t", "message": {}, "key": 12})
    assert "key" in raised.value.messages


def test_unknown_fields_are_rejected_and_named():
    with pytest.raises(ValidationError) as raised:
        load({"topic": "t", "message": {}, "headers": {}})
    assert raised.value.messages == {"headers": ["Unknown field."]}


def test_required_fields():
    with pytest.raises(ValidationError) as raised:
        load({})
    assert set(raised.value.messages) == {"topic", "message"}
