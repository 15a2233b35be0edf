"""kafka-python's exceptions map to the documented statuses."""

import kafka.errors as kafka_errors
import pytest

from producer_api.kafka.errors import as_api_error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (kafka_errors.MessageSizeTooLargeError("too big"), 413),
        (kafka_errors.UnknownTopicOrPartitionError("gone"), 404),
        (kafka_errors.TopicAuthorizationFailedError("no"), 403),
        (kafka_errors.KafkaTimeoutError("slow"), 504),
        (kafka_errors.NotEnoughReplicasError("isr"), 503),
        (kafka_errors.NotEnoughReplicasAfterAppendError("isr"), 503),
        (kafka_errors.KafkaConnectionError("down"), 503),
        (kafka_errors.NotLeaderForPartitionError("moved"), 503),
        (kafka_errors.InvalidRecordError("bad"), 502),
        # kafka-python's wrapping of a producer-id request that timed out: the replaced producer can retry it.
        (kafka_errors.KafkaError("Could not execute transactional request for unknown reasons: [Error 7] "
                                 "RequestTimedOutError"), 503),
    ],
)
def test_kafka_errors_map_to_statuses(error, status):
    api_error = as_api_error(error, "orders")
    assert api_error.status == status
    assert api_error.detail.startswith("Failed to produce message: ")


def test_unavailable_errors_carry_retry_after():
    assert as_api_error(kafka_errors.KafkaConnectionError("down"), "t").retry_after
