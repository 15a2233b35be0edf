"""Settings come only from the environment and bad values are named."""

import pytest

from producer_api.config import ConfigError, Settings


def test_defaults_match_the_seed_guide():
    settings = Settings.from_env({})
    assert settings.port == 8001
    assert settings.bootstrap_servers == "localhost:9092"
    assert settings.client_id == "python-producer-api"
    assert settings.batch_size == 16384
    assert settings.linger_ms == 1


def test_values_are_read_from_the_environment():
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092, other:9092",
        "PRODUCER_PORT": "9000",
        "KAFKA_COMPRESSION_TYPE": "GZIP",
        "KAFKA_API_VERSION": "3.9",
    })
    assert settings.bootstrap_servers == "kafka:29092,other:9092"
    assert settings.port == 9000
    assert settings.compression_type == "gzip"
    assert settings.api_version == (3, 9)


def test_blank_values_fall_back_to_defaults():
    assert Settings.from_env({"PRODUCER_PORT": "  "}).port == 8001


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRODUCER_PORT", "eighty"),
        ("PRODUCER_PORT", "70000"),
        ("PRODUCER_WORKERS", "0"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("KAFKA_BOOTSTRAP_SERVERS", ","),
        ("KAFKA_COMPRESSION_TYPE", "brotli"),
        ("KAFKA_API_VERSION", "0.10"),
        ("KAFKA_API_VERSION", "four"),
        ("KAFKA_HEALTH_TIMEOUT_MS", "5000"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_delivery_timeout_must_cover_request_timeout():
    with pytest.raises(ConfigError, match="KAFKA_DELIVERY_TIMEOUT_MS"):
        Settings.from_env({"KAFKA_REQUEST_TIMEOUT_MS": "8000", "KAFKA_DELIVERY_TIMEOUT_MS": "5000"})


def test_close_timeout_must_fit_in_the_graceful_timeout():
    with pytest.raises(ConfigError, match="KAFKA_CLOSE_TIMEOUT_MS"):
        Settings.from_env({"PRODUCER_GRACEFUL_TIMEOUT": "5", "KAFKA_CLOSE_TIMEOUT_MS": "5000"})


def test_every_request_wait_is_bounded_below_a_minute():
    assert Settings.from_env({}).produce_timeout_s < 60
