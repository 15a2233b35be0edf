"""The key-hash cache: keys go to the partitions kafka-python's default partitioner (and the Java client) picks."""

import pytest
from kafka.partitioner import DefaultPartitioner

from producer_api.kafka.partitioner import MAX_CACHED_KEY_BYTES, KeyHashCachingPartitioner, partition_for_key


class FakeCluster:
    """The two questions a partitioner asks of kafka-python's cluster metadata."""

    def __init__(self, partitions: dict[str, set[int]]):
        self._partitions = partitions

    def topics(self):
        return set(self._partitions)

    def partitions_for_topic(self, topic):
        return self._partitions.get(topic)

    def available_partitions_for_topic(self, topic):
        return self._partitions.get(topic)


@pytest.mark.parametrize("partition_count", [1, 2, 3, 7, 12])
def test_keys_go_to_the_partitions_the_default_partitioner_chooses(partition_count):
    cluster = FakeCluster({"t": set(range(partition_count))})
    keys = [f"user-{n}".encode() for n in range(500)] + [b"", b"\xff" * 300, bytes(range(256))]
    ours, default = KeyHashCachingPartitioner(), DefaultPartitioner()
    for _ in range(2):  # the second round answers from the cache
        assert [ours.partition("t", key, key, b"v", b"v", cluster) for key in keys] == [
            default.partition("t", key, key, b"v", b"v", cluster) for key in keys
        ]


def test_keys_follow_the_java_clients_murmur2():
    # The Java client's murmur2 of these keys, from Apache Kafka's UtilsTest.testMurmur2 (as signed ints).
    cluster = FakeCluster({"t": {0, 1, 2}})
    partitioner = KeyHashCachingPartitioner()
    assert partitioner.partition("t", b"21", b"21", None, None, cluster) == (-973932308 & 0x7FFFFFFF) % 3
    assert partitioner.partition("t", b"foobar", b"foobar", None, None, cluster) == (-790332482 & 0x7FFFFFFF) % 3


def test_messages_without_a_key_use_a_known_partition():
    cluster = FakeCluster({"t": {0, 1, 2}})
    partitioner = KeyHashCachingPartitioner()
    assert {partitioner.partition("t", None, None, b"v", b"v", cluster) for _ in range(200)} == {0, 1, 2}


def test_a_topic_without_metadata_is_refused():
    with pytest.raises(ValueError):
        KeyHashCachingPartitioner().partition("unknown", b"k", b"k", b"v", b"v", FakeCluster({}))


@pytest.mark.parametrize("size", [0, 1, MAX_CACHED_KEY_BYTES, MAX_CACHED_KEY_BYTES + 1, 20_000])
def test_a_key_is_placed_alike_whether_its_hash_is_cached_or_not(size):
    # Keys over MAX_CACHED_KEY_BYTES are hashed afresh each time; both ways give the default's partition.
    cluster = FakeCluster({"t": {0, 1, 2, 3, 4}})
    key = bytes(index % 251 for index in range(size))
    expected = DefaultPartitioner().partition("t", key, key, b"v", b"v", cluster)
    assert partition_for_key(key, [0, 1, 2, 3, 4]) == expected == partition_for_key(key, [0, 1, 2, 3, 4])
