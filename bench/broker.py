"""The benchmark's own Kafka (cluster 'bench' on port 19192), its topics, and counting what was written."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bench import procstat
from local_kafka.cluster import Cluster

BROKER_PORT = 19192
BOOTSTRAP = f"127.0.0.1:{BROKER_PORT}"
PARTITIONS = 3
TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS error code
# Benchmark messages are worth nothing after the run: an hour's retention keeps the broker's disk use bounded.
TOPIC_CONFIGS = {"retention.ms": str(3600 * 1000)}


class BrokerError(RuntimeError):
    """The benchmark topics could not be created as needed; the message says why."""


def bench_cluster() -> Cluster:
    """The local cluster the benchmark uses; never the developers' 'dev' cluster."""
    return Cluster(name="bench", nodes=1, base_port=BROKER_PORT)


def broker_cpu_seconds(cluster: Cluster) -> float:
    """CPU time the broker's JVM has used so far (0.0 if it is not running)."""
    pid = cluster.node(1).pid()
    return procstat.cpu_seconds(pid) if pid is not None else 0.0


def create_topics(names: list[str]) -> None:
    """Create the topics with PARTITIONS partitions unless they exist, and wait until each has a leader."""
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="bench-admin")
    try:
        response = admin.create_topics(
            {name: {"num_partitions": PARTITIONS, "replication_factor": 1, "configs": TOPIC_CONFIGS} for name in names},
            raise_errors=False,
        )
        for topic in response["topics"]:
            if topic["error_code"] not in (0, TOPIC_EXISTS):
                raise BrokerError(f"creating topic {topic['name']} failed with Kafka error {topic['error_code']}")
        admin.wait_for_topics(names, timeout_ms=30000)
        for topic in admin.describe_topics(names):
            if len(topic["partitions"]) != PARTITIONS:
                raise BrokerError(f"topic {topic['name']} has {len(topic['partitions'])} partitions, not "
                                  f"{PARTITIONS}: delete it (or the 'bench' cluster) and run again")
    finally:
        admin.close()


class OffsetCounter:
    """Counts the messages in the benchmark topics from their end offsets."""

    def __init__(self):
        self._consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, client_id="bench-counter")

    def total(self, topic: str) -> int:
        """Sum of the topic's end offsets: every message ever written to it."""
        partitions = [TopicPartition(topic, index) for index in range(PARTITIONS)]
        return sum(self._consumer.end_offsets(partitions, timeout_ms=10000).values())

    def settled_total(self, topic: str, max_wait_s: float = 15.0) -> int:
        """The topic's total once it stopped growing for half a second (requests in flight have landed)."""
        deadline = time.monotonic() + max_wait_s
        previous = self.total(topic)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.total(topic)
            if current == previous:
                return current
            previous = current
        return previous

    def close(self) -> None:
        """Close the consumer's connections."""
        self._consumer.close()
