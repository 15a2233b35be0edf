"""The service's errors: each one an HTTP status and a detail a client can act on, raised by the core and the
Kafka side, answered by producer_api/api/errors.py."""

from __future__ import annotations


class APIError(Exception):
    """An error with an HTTP status and a detail a client can act on."""

    status = 500
    retry_after: int | None = None
    close_connection = False  # True: the answer closes the connection (an unread or untrusted body is left on it)

    def __init__(self, detail: str, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class InvalidJSON(APIError):
    """The body is not well-formed JSON."""

    status = 400


class RequestTimeout(APIError):
    """The client stopped sending its body for longer than PRODUCER_CLIENT_TIMEOUT."""

    status = 408


class UnsupportedMediaType(APIError):
    """The body is compressed (Content-Encoding), which the service does not read."""

    status = 415


class InvalidRequest(APIError):
    """The body is JSON but breaks the schema; `extra["errors"]` holds the field messages."""

    status = 422


class PayloadTooLarge(APIError):
    """The body or one message is larger than the service or Kafka accepts."""

    status = 413


class TopicNotFound(APIError):
    """The topic does not exist and the cluster does not create topics on demand."""

    status = 404


class UnknownPartition(APIError):
    """The request names a partition the topic does not have: a resource that does not exist, like a topic."""

    status = 404


class Unauthorized(APIError):
    """No valid API key was presented."""

    status = 401


class Forbidden(APIError):
    """The caller, or the service's topic policy, may not write to this topic."""

    status = 403


class TopicNotAuthorized(APIError):
    """The cluster refuses this service write access to the topic."""

    status = 403


class KafkaUnavailable(APIError):
    """Kafka cannot take the message now (no broker answers, too few in-sync replicas, ...); retry later."""

    status = 503
    retry_after = 5


class TooManyPending(APIError):
    """This worker already waits on Kafka for as many messages as it may hold; retry later."""

    status = 429
    retry_after = 1


class DeliveryTimeout(APIError):
    """Kafka did not acknowledge in time; the message may or may not have been written."""

    status = 504


class KafkaRejected(APIError):
    """The broker refused the message for a reason that retrying will not fix."""

    status = 502


class KafkaNotReached(KafkaUnavailable):
    """A message's delivery timeout passed before it was ever sent to a broker: certainly not written."""


class ProducerNotInitialized(KafkaUnavailable):
    """This worker has no Kafka producer (it is starting or shutting down)."""

    def __init__(self):
        super().__init__("Producer not initialized")
