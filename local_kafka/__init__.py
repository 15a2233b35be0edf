"""A real Apache Kafka (KRaft) broker or cluster run from Maven Central jars, for development and tests.

Standard library only, so it works before the service's virtualenv exists.
"""

from local_kafka.cluster import Cluster, ClusterError, fetch_jars

__all__ = ["Cluster", "ClusterError", "fetch_jars"]
