"""kafka-python's I/O thread waits for a response, not spinning, while a broker has all the requests it may."""

from types import SimpleNamespace

from producer_api.kafka.tuning import no_spin_when_full


def test_a_connected_broker_is_waited_for_and_a_disconnected_one_keeps_its_backoff():
    connections = {1: SimpleNamespace(connected=True), 2: SimpleNamespace(connected=False)}
    client = SimpleNamespace(_manager=SimpleNamespace(_conns=connections), connection_delay=lambda node_id: 0.25)
    no_spin_when_full.apply(SimpleNamespace(_sender=SimpleNamespace(_client=client)))
    assert client.connection_delay(1) == float("inf")  # every request in flight: wait for a response
    assert client.connection_delay(2) == 0.25  # reconnecting: kafka-python's own backoff
    assert client.connection_delay(3) == 0.25  # no connection yet
