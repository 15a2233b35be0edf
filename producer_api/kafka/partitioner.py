"""kafka-python's default partitioner with the murmur2 hash of recent keys remembered (through its public
`partitioner` option)."""

from __future__ import annotations

import functools

from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

MAX_CACHED_KEY_BYTES = 256  # keys are cached with their hash: at most 4,096 x 256 bytes


@functools.lru_cache(maxsize=4096)
def _cached_key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


class KeyHashCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner, with the murmur2 hash of recent keys remembered.

    The hash is pure Python, and the default partitioner also builds two partition lists per message: together a
    large part of send()'s cost. Keys go to the same partitions as with the default (and the Java client);
    messages without a key are placed exactly as the default does.
    """

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        """The partition for a message: its key's hash modulo the topic's partitions, as kafka-python does."""
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        return partition_for_key(bytes(serialized_key), sorted(partitions))


def partition_for_key(key: bytes, partitions: list[int]) -> int:
    """The partition the default partitioner (kafka-python's and the Java client's) gives a key: murmur2 modulo."""
    key_hash = _cached_key_hash(key) if len(key) <= MAX_CACHED_KEY_BYTES else murmur2(key) & 0x7FFFFFFF
    return partitions[key_hash % len(partitions)]
