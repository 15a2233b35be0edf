"""kafka-python's KafkaProducer as the service builds it: its options, and the tuning the settings switch on."""


import pytest
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaTCPTransport

from producer_api.kafka.internals import close_quietly
from producer_api.kafka.options import new_kafka_producer
from producer_api.kafka.partitioner import KeyHashCachingPartitioner
from producer_api.kafka.tuning import recv_until_short, send_before_wait
from producer_api.kafka.tuning.coalesced_wakeup import CoalescedWakeup


@pytest.fixture
def transport_restored(monkeypatch):
    """What building a producer installs on kafka-python's transport for the whole process, taken back after."""
    monkeypatch.setattr(KafkaTCPTransport, "_write_to_sock", KafkaTCPTransport._write_to_sock)
    monkeypatch.setattr(KafkaTCPTransport, "_sock_recv", KafkaTCPTransport._sock_recv)


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


# The kafka-python tuning a producer's construction applies (batch_append is MessageProducer's: test_producer.py).
KAFKA_TUNING = ("send_before_wait", "recv_until_short", "coalesced_wakeup", "no_spin_when_full")


def tuned(producer) -> dict[str, bool]:
    """Which tuning this producer (and the process's transport) has."""
    client = producer._sender._client
    network = client._net
    return {
        "send_before_wait": KafkaTCPTransport._write_to_sock is send_before_wait.write_to_sock_sending_first,
        "recv_until_short": KafkaTCPTransport._sock_recv is recv_until_short.sock_recv_until_short,
        "coalesced_wakeup": isinstance(getattr(network.wakeup, "__self__", None), CoalescedWakeup),
        "no_spin_when_full": "connection_delay" in vars(client),  # replaced on this client only
    }


def test_a_producer_gets_the_services_options(build):
    config = build(max_in_flight=3).config
    assert config["acks"] in ("all", -1) and config["enable_idempotence"] is True
    assert config["api_version"] == (4, 1) and config["bootstrap_servers"] == ["127.0.0.1:1"]
    assert config["max_in_flight_requests_per_connection"] == 3 and config["metrics_enabled"] is False
    assert isinstance(config["partitioner"], KeyHashCachingPartitioner)


def test_with_tuning_on_every_change_is_applied(build):
    assert tuned(build(tuning=True)) == dict.fromkeys(KAFKA_TUNING, True)


def test_with_tuning_off_kafka_python_works_as_shipped(build):
    build(tuning=True)  # a tuned producer first: the process-wide changes it installed are taken back
    producer = build(tuning=False)
    assert tuned(producer) == dict.fromkeys(KAFKA_TUNING, False)
    network = producer._sender._client._net
    assert network.wakeup.__func__ is NetworkSelector.wakeup
    assert KafkaTCPTransport._write_to_sock is send_before_wait.AS_SHIPPED
    assert KafkaTCPTransport._sock_recv is recv_until_short.AS_SHIPPED


@pytest.mark.parametrize("skipped", KAFKA_TUNING)
def test_a_skipped_tuning_alone_is_left_out(build, skipped):
    assert tuned(build(tuning=True, tuning_skip=(skipped,))) == {name: name != skipped for name in KAFKA_TUNING}
