"""kafka-python's KafkaProducer as the service builds it: its options, and the tuning the settings switch on."""

import pytest
from kafka.net.transport import KafkaTCPTransport

from producer_api.kafka.internals import close_quietly
from producer_api.kafka.options import new_kafka_producer
from producer_api.kafka.partitioner import KeyHashCachingPartitioner
from producer_api.kafka.tuning import send_before_wait


@pytest.fixture
def transport_restored(monkeypatch):
    """What building a producer installs on kafka-python's transport for the whole process, taken back after."""
    monkeypatch.setattr(KafkaTCPTransport, "_write_to_sock", KafkaTCPTransport._write_to_sock)


@pytest.fixture
def build(make_settings, transport_restored):
    """Build a KafkaProducer as the service does, for settings overridden so; closed after the test."""
    built = []

    def new(**overrides):
        # Nothing listens on port 1: the explicit api_version keeps the constructor from contacting a broker.
        producer = new_kafka_producer(make_settings(bootstrap_servers="127.0.0.1:1", **overrides))
        built.append(producer)
        return producer

    yield new
    for producer in built:
        close_quietly(producer, 0.0)


def test_a_producer_gets_the_services_options(build):
    config = build(max_in_flight=3).config
    assert config["acks"] in ("all", -1) and config["enable_idempotence"] is True
    assert config["api_version"] == (4, 1) and config["bootstrap_servers"] == ["127.0.0.1:1"]
    assert config["max_in_flight_requests_per_connection"] == 3 and config["metrics_enabled"] is False
    assert isinstance(config["partitioner"], KeyHashCachingPartitioner)


# The kafka-python tuning a producer's construction applies (batch_append is MessageProducer's: test_producer.py).
def test_with_tuning_on_every_process_wide_change_is_applied(build):
    build(tuning=True)
    assert KafkaTCPTransport._write_to_sock is send_before_wait.write_to_sock_sending_first


@pytest.mark.parametrize("off", [{"tuning": False}, {"tuning": True, "tuning_skip": ("send_before_wait",)}],
                         ids=["tuning off", "skipped"])
def test_without_tuning_kafka_python_works_as_shipped(build, off):
    build(tuning=True)  # a tuned producer first: the process-wide change it installed is taken back
    build(**off)
    assert KafkaTCPTransport._write_to_sock is send_before_wait.AS_SHIPPED
