"""Producing validated requests to Kafka and reporting each outcome in the API's response shape."""

from __future__ import annotations

import time

from flask import current_app

from producer_api import green, logs, metrics
from producer_api.auth import authorize_topics
from producer_api.errors import APIError
from producer_api.kafka_producer import Delivery, current_producer
from producer_api.messages import OutgoingMessage, iso_utc, to_outgoing

SENT = "Message sent successfully"
QUEUED = "Queued for delivery"


def _outgoing(requests: list[dict]) -> list[OutgoingMessage]:
    logs.note_messages((request["topic"] for request in requests), len(requests))
    authorize_topics({request["topic"] for request in requests})
    source = current_app.config["PRODUCER_SETTINGS"].client_id
    now = time.time()  # one arrival time for the whole request, formatted once
    now_iso = iso_utc(now)
    outgoing = []
    for index, request in enumerate(requests):
        try:
            outgoing.append(to_outgoing(request, source, now, now_iso))
        except APIError as error:
            if len(requests) > 1:
                error.detail = f"{error.detail} (message at index {index})"
            raise
        if index % green.YIELD_EVERY == green.YIELD_EVERY - 1:
            green.yield_to_other_connections()
    return outgoing


def produce_one(request: dict, wait: bool = True) -> tuple[dict, int]:
    """Write one message and return where Kafka stored it (or, without wait, that it is queued)."""
    outgoing = _outgoing([request])
    started = time.perf_counter()
    delivery = metrics.record_deliveries(current_producer().send_all(outgoing, wait=wait), wait, started)[0]
    if delivery.error is not None:
        raise delivery.error
    if not wait:
        return {"success": True, "message": QUEUED, "topic": delivery.message.topic,
                "timestamp": delivery.message.accepted_at}, 202
    return {
        "success": True,
        "message": SENT,
        "topic": delivery.message.topic,
        "partition": delivery.partition,
        "offset": delivery.offset,
        "timestamp": delivery.message.accepted_at,
    }, 200


def _batch_result(delivery: Delivery, wait: bool) -> dict:
    if delivery.error is not None:
        return {"success": False, "topic": delivery.message.topic, "message": "Message not sent",
                "error": delivery.error.detail}
    if not wait:
        return {"success": True, "topic": delivery.message.topic, "message": QUEUED}
    return {"success": True, "topic": delivery.message.topic, "message": SENT,
            "partition": delivery.partition, "offset": delivery.offset}


def produce_batch(requests: list[dict], wait: bool = True, atomic: bool = False) -> tuple[dict, int]:
    """Write a batch; 200 if all were written, 207 with per-message results if some were, else the error."""
    wait = wait or atomic  # a transaction's outcome is only known once it commits
    outgoing = _outgoing(requests)
    producer = current_producer()
    started = time.perf_counter()
    deliveries = producer.send_atomic(outgoing) if atomic else producer.send_all(outgoing, wait=wait)
    metrics.record_deliveries(deliveries, wait, started)
    sent = sum(delivery.succeeded for delivery in deliveries)
    body = {"success": sent == len(deliveries), "messages_sent": sent,
            "results": [_batch_result(delivery, wait) for delivery in deliveries]}
    if sent == len(deliveries):
        return body, 200 if wait else 202
    if sent:
        return body, 207
    first_error = next(delivery.error for delivery in deliveries)
    first_error.extra = body
    raise first_error
