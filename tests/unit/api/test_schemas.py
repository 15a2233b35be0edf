"""The request schema enforces the documented rules."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from producer_api.api.schemas import ProduceRequestSchema, _well_formed_request


def load(document):
    return ProduceRequestSchema().load(document)


def test_minimal_request_gets_defaults():
    assert load({"topic": "t", "message": {}}) == {"topic": "t", "message": {}, "key": None, "partition": None}


@pytest.mark.parametrize("topic", ["a", "test-topic", "user.events_v2", "x" * 249, "..a"])
def test_legal_topic_names(topic):
    assert load({"topic": topic, "message": {}})["topic"] == topic


@pytest.mark.parametrize(
    "topic", ["", ".", "..", "x" * 250, "has space", "slash/topic", "ünicode", 5, None, "topic\n", ".\n", "a\nb"]
)
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


def marshmallow_load(document):
    """The schema's own field machinery, without the well-formed shortcut."""
    return Schema.load(ProduceRequestSchema(), document)


def test_well_formed_requests_take_the_shortcut():
    document = {"topic": "t", "key": "k", "message": {"a": 1}, "partition": 0}
    assert _well_formed_request(document) == marshmallow_load(document)
    assert _well_formed_request({"topic": "t", "message": {}}) == {"topic": "t", "message": {}, "key": None,
                                                                   "partition": None}


JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=5))
TOPICS = st.sampled_from(["t", "a.b", "x" * 249, "x" * 250, "", ".", "..", "t\n", "a b", "ü"]) | st.text(max_size=4)
FIELD_VALUES = {
    "topic": TOPICS | JSON_SCALARS,
    "key": st.text(max_size=4) | JSON_SCALARS,
    "message": (st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=3) | JSON_SCALARS
                | st.lists(st.text(max_size=2), max_size=2) | st.lists(JSON_SCALARS)),
    "partition": st.integers(-3, 3) | st.integers(-(2**70), 2**70) | JSON_SCALARS,
    "headers": JSON_SCALARS,
}
VALID_VALUES = {"topic": st.sampled_from(["t", "a.b", "x" * 249]), "key": st.none() | st.text(max_size=3),
                "message": st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=3),
                "partition": st.none() | st.integers(0, 2**70)}


@st.composite
def nearly_valid_requests(draw):
    """A valid request with at most one field replaced by anything, so each rule is tried on its own."""
    request = draw(st.fixed_dictionaries({name: VALID_VALUES[name] for name in ("topic", "message")},
                                         optional={name: VALID_VALUES[name] for name in ("key", "partition")}))
    name = draw(st.sampled_from([None, *FIELD_VALUES]))
    if name is not None:
        request[name] = draw(FIELD_VALUES[name])
    return request


REQUESTS = (nearly_valid_requests() | st.fixed_dictionaries({}, optional=FIELD_VALUES) | JSON_SCALARS
            | st.lists(JSON_SCALARS, max_size=2))


@settings(max_examples=1500, deadline=None)
@given(REQUESTS)
def test_shortcut_accepts_only_what_marshmallow_accepts_and_returns_the_same(document):
    try:
        expected = marshmallow_load(document)
    except ValidationError:
        expected = None
    shortcut = _well_formed_request(document)
    if shortcut is not None:
        assert shortcut == expected
    if expected is None:
        with pytest.raises(ValidationError):
            ProduceRequestSchema().load(document)
    else:
        assert ProduceRequestSchema().load(document) == expected
