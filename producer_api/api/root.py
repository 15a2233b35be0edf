"""The service's own endpoints: what it is (GET /) and whether it can reach Kafka (GET /health)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g

from producer_api import __version__
from producer_api.api.openapi import describe
from producer_api.api.producer import current_producer
from producer_api.api.schemas import HealthSchema, RootSchema
from producer_api.core.errors import KafkaUnavailable, ProducerNotInitialized
from producer_api.core.messages import iso_utc

bp = Blueprint("root", __name__)


@bp.get("/")
@describe(responses={200: ("API information", RootSchema)})
def index():
    """Describe the API and list its endpoints."""
    return {
        "message": "Kafka Producer API Server",
        "version": __version__,
        "endpoints": {"health": "/health", "produce": "/produce", "docs": "/docs"},
    }


@bp.get("/health")
@describe(responses={200: ("Kafka answers", HealthSchema), 503: ("Kafka does not answer", HealthSchema)})
def health():
    """Report whether a Kafka broker answers right now (within a few seconds either way)."""
    timeout = current_app.config["PRODUCER_SETTINGS"].health_timeout_ms / 1000
    try:
        connected = current_producer().is_connected(timeout)
    except ProducerNotInitialized:
        connected = False
    body = {"status": "healthy" if connected else "unhealthy", "timestamp": iso_utc(time.time()),
            "kafka_connected": connected}
    if not connected:
        g.error_kind = "Unhealthy"  # its own kind in producer_errors_total and the access line, not a bare "503"
        return body, 503, {"Retry-After": str(KafkaUnavailable.retry_after)}
    return body, 200
