"""The project's own broker tooling: starting twice is safe, ports in use are refused, metadata is real."""

import pytest

from local_kafka import Cluster, ClusterError
from local_kafka.cluster import fetch_metadata


def test_starting_a_running_cluster_starts_nothing_and_keeps_it_answering(own_broker, new_topic):
    topic = new_topic()
    cluster = own_broker.cluster
    pid = cluster.nodes[0].pid()
    assert cluster.start(timeout=30) == []
    assert cluster.nodes[0].pid() == pid
    assert topic in cluster.metadata([topic]).topics


def test_another_cluster_on_the_same_ports_is_refused(own_broker):
    intruder = Cluster("intruder", base_port=own_broker.cluster.nodes[0].broker_port)
    with pytest.raises(ClusterError, match="already in use"):
        intruder.start(timeout=5)
    assert own_broker.cluster.running() == [1]


def test_metadata_lists_the_broker_and_topic_leaders(own_broker, new_topic):
    topic = new_topic(partitions=2)
    node = own_broker.cluster.nodes[0]
    metadata = fetch_metadata("127.0.0.1", node.broker_port, [topic])
    assert metadata.brokers == {1: ("127.0.0.1", node.broker_port)}
    assert set(metadata.topics[topic]) == {0, 1}
    assert own_broker.cluster.leader(topic, 1) == 1
