"""Ceiling K, the single-message limit of this stack: ceiling B's app plus the Kafka round trip, nothing else.

It reads the body as ceiling B does, then sends the message with the service's own producer (acks=all, idempotent,
every change the service makes to kafka-python) and waits for Kafka's answer before it replies. No validation,
access control, access line or metrics: what any service on gunicorn, Flask and kafka-python must at least do to
answer a single message only after Kafka acknowledged it. Served with the project's gunicorn.conf.py, whose
post_fork opens the worker's producer.
"""

from __future__ import annotations

import time

from flask import Flask

from producer_api.bodies import read_json
from producer_api.delivery import SENT
from producer_api.kafka_producer import worker_producer
from producer_api.messages import iso_utc, to_outgoing

app = Flask(__name__)
app.json.sort_keys = False  # as the service's create_app sets it


@app.get("/health")
def health():
    """Answer that the app is up (the benchmark checks Kafka itself)."""
    return {"status": "healthy"}


@app.post("/produce")
def produce():
    """Send the body's message to Kafka, wait for the acknowledgement, answer as the service does."""
    document = read_json()
    delivery = worker_producer().send_all([to_outgoing(document, "ceiling-k")])[0]
    if not delivery.succeeded:
        return {"detail": delivery.error.detail}, delivery.error.status
    return {"success": True, "message": SENT, "topic": document["topic"], "partition": delivery.partition,
            "offset": delivery.offset, "timestamp": iso_utc(time.time())}
