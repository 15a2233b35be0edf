"""The topic policy and an API key's topic patterns, without Flask: who may write where."""

import pytest

from producer_api.config import ApiKey
from producer_api.core.errors import Forbidden
from producer_api.core.policy import authorize_topics


def test_without_a_key_only_the_services_policy_applies(make_settings):
    settings = make_settings(topic_allow=("events.*", "logs"), topic_deny=("__*", "events.secret"))
    authorize_topics(settings, None, {"events.a", "logs"})
    for topic in ("events.secret", "__consumer_offsets", "other", "logs2"):
        with pytest.raises(Forbidden, match=f"topic '{topic}' is not allowed by this service's topic policy"):
            authorize_topics(settings, None, {topic})


def test_a_key_writes_only_its_topics_and_never_what_the_policy_denies(make_settings):
    key = ApiKey("orders-team", "orders-secret-0123456789", ("orders*",))
    settings = make_settings(api_keys=(key,))
    authorize_topics(settings, key, {"orders", "orders.eu"})
    with pytest.raises(Forbidden, match="API key 'orders-team' may not write to topic 'payments'"):
        authorize_topics(settings, key, {"orders", "payments"})
    wildcard = ApiKey("admin", "admin-secret-0123456789", ("*",))
    with pytest.raises(Forbidden, match="topic '__transaction_state' is not allowed"):
        authorize_topics(make_settings(api_keys=(wildcard,)), wildcard, {"__transaction_state"})


def test_the_first_forbidden_topic_in_name_order_is_named(make_settings):
    with pytest.raises(Forbidden, match="topic '__a'"):
        authorize_topics(make_settings(), None, {"ok", "__z", "__a"})
