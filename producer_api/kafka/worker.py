"""The producer of this gunicorn worker: opened after fork (a producer's threads do not survive fork), closed at
exit."""

from __future__ import annotations

from producer_api.config import Settings
from producer_api.kafka.producer import MessageProducer

_worker_producer: MessageProducer | None = None


def open_worker_producer(settings: Settings) -> MessageProducer:
    """Create this worker's producer; called from gunicorn's post_fork hook."""
    global _worker_producer
    _worker_producer = MessageProducer(settings)
    return _worker_producer


def worker_producer() -> MessageProducer | None:
    """This worker's producer, or None before post_fork or after worker_exit."""
    return _worker_producer


def close_worker_producer(timeout: float) -> None:
    """Flush and close this worker's producer; called from gunicorn's worker_exit hook."""
    global _worker_producer
    producer, _worker_producer = _worker_producer, None
    if producer is not None:
        producer.close(timeout)
