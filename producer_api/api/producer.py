"""Which producer serves this app's requests: the one given to create_app, else the gunicorn worker's own."""

from __future__ import annotations

from flask import Flask, current_app

from producer_api.core.errors import ProducerNotInitialized
from producer_api.kafka import worker


def init_app(app: Flask, producer=None) -> None:
    """Give the app a producer; without one it uses the worker's producer opened in post_fork."""
    app.extensions["kafka_producer"] = producer


def app_producer():
    """The producer serving this app, or None before post_fork or after worker_exit."""
    return current_app.extensions.get("kafka_producer") or worker.worker_producer()


def current_producer():
    """The producer serving this request, or ProducerNotInitialized (503) if there is none."""
    producer = app_producer()
    if producer is None:
        raise ProducerNotInitialized()
    return producer
