"""kafka-python's I/O thread waits for a response, instead of spinning, while a broker has all the requests it may.

Replaces, on each producer the service builds, kafka.net.compat.KafkaNetClient.connection_delay (kafka-python
3.0.12). kafka-python stops sending to a connection that has max_in_flight_requests_per_connection requests
unanswered, and then asks connection_delay() how long to wait before it tries again. For a connected broker that
answers 0 (kafka-python 2 answered "as long as it takes"), so the I/O thread polls with no timeout and turns its
loop without a pause until a response comes: under load, whenever data waits behind the requests in flight. The
wait still ends at once when a response arrives, a batch expires or a timer is due.
"""

from __future__ import annotations


def apply(producer) -> None:
    """Make this producer's client answer 'until a response' for a connected broker's delay."""
    client = producer._sender._client
    manager, connection_delay = client._manager, client.connection_delay

    def connection_delay_not_zero_when_connected(node_id):
        connection = manager._conns.get(node_id)
        if connection is not None and connection.connected:
            return float("inf")
        return connection_delay(node_id)

    client.connection_delay = connection_delay_not_zero_when_connected
