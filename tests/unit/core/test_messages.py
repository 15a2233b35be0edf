"""Enrichment and encoding of the record Kafka stores."""

import json

import pytest

from producer_api.core.errors import InvalidRequest
from producer_api.core.messages import enrich, iso_utc, to_outgoing

NOW = 1705312200.123456


def test_enrich_adds_the_three_fields():
    enriched = enrich({"user_id": 123}, "python-producer-api", NOW)
    assert enriched == {
        "user_id": 123,
        "timestamp": "2024-01-15T09:50:00.123456+00:00",
        "source": "python-producer-api",
        "server_time": NOW,
    }


def test_enrich_never_overwrites_client_fields():
    original = {"timestamp": "2024-01-15T10:30:00Z", "source": "mobile", "server_time": 1}
    assert enrich(original, "python-producer-api", NOW) == original


def test_enrich_leaves_the_request_untouched():
    original = {"a": 1}
    enrich(original, "s", NOW)
    assert original == {"a": 1}


def test_iso_utc_is_iso_8601_with_offset():
    assert iso_utc(0) == "1970-01-01T00:00:00.000000+00:00"


def test_to_outgoing_encodes_key_and_value():
    outgoing = to_outgoing({"topic": "t", "key": "clé", "message": {"text": "héllo"}, "partition": 2}, "src", NOW)
    assert outgoing.topic == "t"
    assert outgoing.key == "clé".encode()
    assert outgoing.partition == 2
    assert outgoing.timestamp_ms == 1705312200123
    assert outgoing.accepted_at == "2024-01-15T09:50:00.123456+00:00"
    assert json.loads(outgoing.value) == {"text": "héllo", "timestamp": outgoing.accepted_at,
                                          "source": "src", "server_time": NOW}


def test_to_outgoing_without_key():
    assert to_outgoing({"topic": "t", "key": None, "message": {}}, "src", NOW).key is None


@pytest.mark.parametrize("request_body", [
    {"topic": "t", "key": "\ud800", "message": {}},
    {"topic": "t", "key": None, "message": {"text": "\udfff"}},
])
def test_text_without_a_utf8_form_is_refused(request_body):
    with pytest.raises(InvalidRequest):
        to_outgoing(request_body, "src", NOW)


def test_to_outgoing_writes_integers_beyond_64_bits_exactly():
    big = 2**70 + 1
    assert json.loads(to_outgoing({"topic": "t", "message": {"n": big}}, "src", NOW).value)["n"] == big


def test_to_outgoing_uses_the_given_arrival_text():
    outgoing = to_outgoing({"topic": "t", "message": {}}, "src", NOW, "then")
    assert outgoing.accepted_at == "then"
    assert json.loads(outgoing.value)["timestamp"] == "then"
