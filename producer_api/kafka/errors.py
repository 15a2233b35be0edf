"""kafka-python's exceptions as the API errors a client sees."""

from __future__ import annotations

import kafka.errors as kafka_errors

from producer_api.core.errors import (
    APIError,
    DeliveryTimeout,
    KafkaRejected,
    KafkaUnavailable,
    PayloadTooLarge,
    TopicNotAuthorized,
    TopicNotFound,
)


def as_api_error(error: Exception, topic: str) -> APIError:
    """Translate an exception raised by kafka-python for one message into the API error a client sees."""
    text = str(error) or type(error).__name__
    if isinstance(error, kafka_errors.MessageSizeTooLargeError):
        return PayloadTooLarge(f"Failed to produce message: Message too large for topic '{topic}': {text}")
    if isinstance(error, kafka_errors.UnknownTopicOrPartitionError):
        return TopicNotFound(f"Failed to produce message: Topic '{topic}' does not exist")
    if isinstance(error, kafka_errors.TopicAuthorizationFailedError):
        return TopicNotAuthorized(f"Failed to produce message: Not authorized to write to topic '{topic}'")
    if isinstance(error, kafka_errors.KafkaTimeoutError):
        return DeliveryTimeout(
            f"Failed to produce message: Timed out waiting for Kafka to acknowledge the message ({text}); "
            "it may or may not have been written"
        )
    if isinstance(error, (kafka_errors.NotEnoughReplicasError, kafka_errors.NotEnoughReplicasAfterAppendError)):
        return KafkaUnavailable(f"Failed to produce message: Not enough in-sync replicas for topic '{topic}'")
    # kafka-python fails a producer-id or transaction request it cannot classify, a request timeout included, with
    # a plain KafkaError and a fatal state; the service replaces such a producer, so a retry can succeed.
    if (isinstance(error, (kafka_errors.RetriableError, kafka_errors.IllegalStateError))
            or type(error) is kafka_errors.KafkaError):
        return KafkaUnavailable(f"Failed to produce message: Kafka is unavailable: {text}")
    return KafkaRejected(f"Failed to produce message: Kafka refused the message: {text}")
