"""Ceiling K, the single-message limit of this stack: ceiling B's app plus the Kafka round trip, nothing else.

It reads the body as ceiling B does, then sends the message with the service's own producer (acks=all, idempotent,
every change the service makes to kafka-python) and waits for Kafka's answer before it replies. No validation,
access control, access line or metrics: what any service on gunicorn, Flask and kafka-python must at least do to
answer a single message only after Kafka acknowledged it. Served with the project's gunicorn.conf.py, whose
post_fork opens the worker's producer.
"""

from __future__ import annotations

from bench.apps.echo_app import create_echo_app
from producer_api.core.messages import to_outgoing
from producer_api.kafka.worker import worker_producer


def send_and_wait(document: dict) -> tuple[int, int]:
    """Send the body's message with the worker's producer and return where Kafka stored it."""
    delivery = worker_producer().send_all([to_outgoing(document, "ceiling-k")])[0]
    if delivery.error is not None:
        raise delivery.error  # answered as a 500 by this benchmark-only app: wrk counts it as an error
    return delivery.partition, delivery.offset


app = create_echo_app(send_and_wait)
