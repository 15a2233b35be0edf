"""API keys and the topic policy, with a fake producer: who may write where, and nothing written otherwise."""

import pytest

from producer_api import create_app
from producer_api.api.auth import identify
from producer_api.config import ApiKey, Settings
from tests.unit.conftest import FakeProducer

ORDERS_KEY = "orders-secret-0123456789"
OPS_KEY = "ops-secret-0123456789abc"


@pytest.fixture
def keyed(make_settings):
    """An app with two keys: orders (orders* only) and ops (everything), and its fake producer."""
    producer = FakeProducer()
    settings = make_settings(api_keys=(ApiKey("orders", ORDERS_KEY, ("orders*",)), ApiKey("ops", OPS_KEY)))
    return create_app(settings, producer=producer).test_client(), producer


def message(topic):
    return {"topic": topic, "message": {"n": 1}}


def test_without_keys_configured_the_seed_examples_need_no_key(client, producer):
    assert client.post("/produce", json=message("test-topic")).status_code == 200


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {ORDERS_KEY}"}, {"X-API-Key": ORDERS_KEY}])
def test_a_valid_key_writes_its_topics(keyed, headers):
    client, producer = keyed
    assert client.post("/produce", json=message("orders.eu"), headers=headers).status_code == 200
    assert len(producer.sent) == 1


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Bearer wrong-key-wrong-key"}, "Invalid API key"),
        ({"X-API-Key": ORDERS_KEY[:-1]}, "Invalid API key"),
        ({"Authorization": f"Basic {ORDERS_KEY}"}, "Missing API key"),
    ],
)
def test_missing_or_invalid_key_is_401_and_writes_nothing(keyed, headers, detail):
    client, producer = keyed
    response = client.post("/produce", json=message("orders"), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["detail"].startswith(detail)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert producer.sent == []


def test_401_comes_before_body_validation(keyed):
    client, _ = keyed
    assert client.post("/produce", data="{not json").status_code == 401


def test_a_topic_outside_the_keys_patterns_is_403(keyed):
    client, producer = keyed
    response = client.post("/produce", json=message("payments"), headers={"X-API-Key": ORDERS_KEY})
    assert response.status_code == 403
    assert response.get_json()["detail"] == "API key 'orders' may not write to topic 'payments'"
    assert ORDERS_KEY not in response.get_data(as_text=True)
    assert producer.sent == []


def test_one_forbidden_topic_rejects_the_whole_batch(keyed):
    client, producer = keyed
    batch = [message("orders"), message("payments")]
    assert client.post("/produce/batch", json=batch, headers={"X-API-Key": ORDERS_KEY}).status_code == 403
    assert producer.sent == []


def test_internal_topics_are_denied_by_default_even_to_a_wildcard_key(keyed, client, producer):
    keyed_client, keyed_producer = keyed
    assert keyed_client.post("/produce", json=message("__consumer_offsets"),
                             headers={"X-API-Key": OPS_KEY}).status_code == 403
    assert client.post("/produce", json=message("__transaction_state")).status_code == 403
    assert keyed_producer.sent == [] and producer.sent == []


def test_topic_allow_and_deny_lists_apply_without_keys(make_settings):
    producer = FakeProducer()
    settings = make_settings(topic_allow=("events.*", "logs"), topic_deny=("__*", "events.secret"))
    client = create_app(settings, producer=producer).test_client()
    assert client.post("/produce", json=message("events.clicks")).status_code == 200
    assert client.post("/produce", json=message("logs")).status_code == 200
    assert client.post("/produce", json=message("events.secret")).status_code == 403
    assert client.post("/produce", json=message("orders")).status_code == 403
    assert len(producer.sent) == 2


def test_health_and_root_stay_open(keyed):
    client, _ = keyed
    assert client.get("/").status_code == 200
    assert client.get("/health").status_code == 200


def test_docs_are_open_unless_protected(keyed, make_settings):
    client, _ = keyed
    assert client.get("/openapi.json").status_code == 200
    settings = make_settings(api_keys=(ApiKey("ops", OPS_KEY),), protect_docs=True)
    protected = create_app(settings, producer=FakeProducer()).test_client()
    assert protected.get("/docs").status_code == 401
    assert protected.get("/openapi.json").status_code == 401
    assert protected.get("/openapi.json", headers={"X-API-Key": OPS_KEY}).status_code == 200


def test_metrics_are_open_unless_protected(keyed, make_settings):
    client, _ = keyed
    assert client.get("/metrics").status_code == 200
    settings = make_settings(api_keys=(ApiKey("ops", OPS_KEY),), protect_metrics=True)
    protected = create_app(settings, producer=FakeProducer()).test_client()
    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers={"Authorization": f"Bearer {OPS_KEY}"}).status_code == 200


def test_identify_matches_exactly():
    settings = Settings(api_keys=(ApiKey("a", "a" * 16), ApiKey("b", "b" * 16)))
    assert identify(settings, "b" * 16).name == "b"
    assert identify(settings, "b" * 15) is None
    assert identify(settings, None) is None


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"name": "x"}',
        '[{"name": "x", "key": "short", "topics": ["*"]}]',
        '[{"name": "", "key": "0123456789abcdef", "topics": ["*"]}]',
        '[{"name": "x", "key": "0123456789abcdef", "topics": []}]',
        '[{"name": "x", "key": "0123456789abcdef", "extra": 1}]',
        '[{"name": "x", "key": "0123456789abcdef"}, {"name": "x", "key": "fedcba9876543210"}]',
    ],
)
def test_bad_key_configuration_names_the_variable_and_never_the_key(raw):
    from producer_api.config import ConfigError

    with pytest.raises(ConfigError, match="PRODUCER_API_KEYS") as raised:
        Settings.from_env({"PRODUCER_API_KEYS": raw})
    assert "0123456789abcdef" not in str(raised.value)


def test_keys_from_a_file_win_and_stay_out_of_repr(tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text('[{"name": "file", "key": "from-the-file-0123", "topics": ["a*"]}]')
    settings = Settings.from_env({"PRODUCER_API_KEYS_FILE": str(keys_file),
                                  "PRODUCER_API_KEYS": '[{"name": "env", "key": "from-the-env-01234"}]'})
    assert [key.name for key in settings.api_keys] == ["file"]
    assert "from-the-file" not in repr(settings) and "from-the-env" not in repr(settings)
