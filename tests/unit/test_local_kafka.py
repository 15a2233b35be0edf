"""The local cluster's configuration, without starting it: the default stays PLAINTEXT, sasl_ssl adds listeners."""

import time

import pytest

from local_kafka import Cluster
from local_kafka import cluster as cluster_module
from local_kafka.cluster import ClusterError, Node


def properties(cluster: Cluster, node: int = 1) -> dict[str, str]:
    return dict(line.split("=", 1) for line in cluster._properties(cluster.node(node)).splitlines())


def test_default_cluster_is_plaintext_on_two_ports_per_node():
    cluster = Cluster("unit", nodes=2, base_port=19350)
    assert [node.ports for node in cluster.nodes] == [(19350, 19351), (19352, 19353)]
    assert [node.plaintext_port for node in cluster.nodes] == [19350, 19352]
    config = properties(cluster)
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19350,CONTROLLER://127.0.0.1:19351"
    assert not [key for key in config if "sasl" in key or key.startswith(("ssl.", "listener.name."))]


def test_sasl_ssl_cluster_keeps_the_port_layout_and_adds_a_plaintext_port_after_it():
    cluster = Cluster("unit", nodes=3, base_port=19350, security="sasl_ssl", users={"alice": "alice-secret"})
    assert [node.ports for node in cluster.nodes] == [(19350, 19351, 19356), (19352, 19353, 19357),
                                                      (19354, 19355, 19358)]
    assert cluster.bootstrap_servers == "localhost:19350,localhost:19352,localhost:19354"
    config = properties(cluster, 2)
    assert config["listeners"] == ("SASL_SSL://127.0.0.1:19352,CONTROLLER://127.0.0.1:19353,"
                                   "INTERNAL://127.0.0.1:19357")
    assert config["inter.broker.listener.name"] == "INTERNAL"
    assert config["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert config["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert config["listener.name.sasl_ssl.ssl.client.auth"] == "none"
    assert config["ssl.keystore.location"].startswith(str(cluster.tls_dir))
    assert cluster.ca_file.parent == cluster.tls_dir == cluster.directory / "tls"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security": "ssl"}, "security must be one of"),
        ({"security": "sasl_ssl"}, "needs at least one user"),
        ({"users": {"alice": "pw"}}, "need security='sasl_ssl'"),
        ({"security": "sasl_ssl", "users": {"alice": "has space"}}, "only letters"),
        ({"security": "sasl_ssl", "users": {"alice": "pw"}, "client_auth": "maybe"}, "client_auth must be"),
    ],
)
def test_bad_security_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Cluster("unit", **options)


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    import uuid

    from local_kafka import cluster

    # 0xf8 makes the base64 text start with '-' (URL-safe alphabet: 62 is '-').
    ids = iter([uuid.UUID(bytes=bytes([0xF8]) + bytes(15)), uuid.UUID(bytes=bytes([0x10]) + bytes(15))])
    monkeypatch.setattr(cluster.uuid, "uuid4", lambda: next(ids))
    assert cluster.new_cluster_id() == "EAAAAAAAAAAAAAAAAAAAAA"


def test_a_tool_that_hangs_is_stopped_and_reported():
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"^sleeping did not finish within 0.2 s and was stopped$"):
        cluster_module._run(["sleep", "30"], timeout_s=0.2, what="sleeping")
    assert time.monotonic() - started < 5


def test_a_failed_start_is_told_by_the_first_error_it_logged(tmp_path):
    node = Node(node_id=1, broker_port=19594, controller_port=19595, directory=tmp_path)
    node.log_dir.mkdir()
    server_log = node.log_dir / "server.log"
    server_log.write_text("[2026-12-03 10:00:00,000] ERROR an error of an earlier run (kafka.Kafka$)\n")
    node.start_offset_file.write_text(str(server_log.stat().st_size))  # what start_node records before launching
    with server_log.open("a") as log:
        log.write("[2026-12-03 11:00:00,000] INFO starting (kafka.server.KafkaRaftServer)\n"
                  "[2026-12-03 11:00:01,000] ERROR [SocketServer listenerType=CONTROLLER, nodeId=1] Unable to start "
                  "acceptor for ListenerName(CONTROLLER): Socket server failed to bind to 127.0.0.1:19595: Address "
                  "already in use. (kafka.network.SocketServer)\n"
                  "[2026-12-03 11:00:01,100] ERROR shutdown noise (kafka.server.BrokerServer)\n")
    assert "failed to bind to 127.0.0.1:19595: Address already in use" in node.first_error_of_last_start()
