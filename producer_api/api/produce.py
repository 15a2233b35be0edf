"""POST /produce and POST /produce/batch."""

from __future__ import annotations

from flask import Blueprint, current_app

from producer_api.api.auth import authorize_topics
from producer_api.api.bodies import load_many, load_one, load_query
from producer_api.api.observe import note_messages
from producer_api.api.openapi import describe
from producer_api.api.producer import current_producer
from producer_api.api.schemas import (
    BatchOptionsSchema,
    BatchResponseSchema,
    ProduceOptionsSchema,
    ProduceRequestSchema,
    ProduceResponseSchema,
    QueuedResponseSchema,
)
from producer_api.core.delivery import produce_batch, produce_one

bp = Blueprint("produce", __name__)

PRODUCE_ERRORS = (400, 401, 403, 404, 408, 413, 415, 422, 429, 502, 503, 504)

# Built once: a marshmallow schema keeps no state between loads, and building one costs more than a load.
PRODUCE_REQUEST = ProduceRequestSchema()
PRODUCE_OPTIONS = ProduceOptionsSchema()
BATCH_OPTIONS = BatchOptionsSchema()


@bp.post("/produce")
@describe(
    body=ProduceRequestSchema,
    query=ProduceOptionsSchema,
    responses={
        200: ("Written and acknowledged", ProduceResponseSchema),
        202: ("Queued for delivery (wait=false)", QueuedResponseSchema),
    },
    errors=PRODUCE_ERRORS,
)
def produce():
    """Write one message to Kafka and wait until the broker acknowledges it (acks=all)."""
    options = load_query(PRODUCE_OPTIONS)
    settings = current_app.config["PRODUCER_SETTINGS"]
    request = _admitted(settings, [load_one(PRODUCE_REQUEST)])[0]
    return produce_one(current_producer, request, settings.client_id, **options)


@bp.post("/produce/batch")
@describe(
    body=ProduceRequestSchema,
    array=True,
    query=BatchOptionsSchema,
    responses={
        200: ("Every message written and acknowledged", BatchResponseSchema),
        202: ("Every message queued for delivery (wait=false)", BatchResponseSchema),
        207: ("Some messages written: see each result", BatchResponseSchema),
    },
    errors=PRODUCE_ERRORS,
)
def produce_many():
    """Write a batch of messages, validated as a whole before any is sent, and report each message's result."""
    options = load_query(BATCH_OPTIONS)
    settings = current_app.config["PRODUCER_SETTINGS"]
    requests = _admitted(settings, load_many(PRODUCE_REQUEST, settings.max_batch_messages))
    return produce_batch(current_producer, requests, settings.client_id, **options)  # the client id is the source


def _admitted(settings, requests: list[dict]) -> list[dict]:
    """The requests, once the caller may write to every topic they name (noted for the access line)."""
    note_messages((request["topic"] for request in requests), len(requests))
    authorize_topics(settings, {request["topic"] for request in requests})
    return requests
