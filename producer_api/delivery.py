"""Producing validated requests to Kafka and reporting each outcome in the API's response shape."""

from __future__ import annotations

from flask import current_app

from producer_api.errors import APIError
from producer_api.kafka_producer import Delivery, current_producer
from producer_api.messages import to_outgoing

SENT = "Message sent successfully"


def _source() -> str:
    return current_app.config["PRODUCER_SETTINGS"].client_id


def produce_one(request: dict) -> dict:
    """Write one message and return where Kafka stored it, or raise the error that kept it out."""
    delivery = current_producer().send_all([to_outgoing(request, _source())])[0]
    if delivery.error is not None:
        raise delivery.error
    return {
        "success": True,
        "message": SENT,
        "topic": delivery.message.topic,
        "partition": delivery.partition,
        "offset": delivery.offset,
        "timestamp": delivery.message.accepted_at,
    }


def _batch_result(delivery: Delivery) -> dict:
    if delivery.error is None:
        return {"success": True, "topic": delivery.message.topic, "message": SENT,
                "partition": delivery.partition, "offset": delivery.offset}
    return {"success": False, "topic": delivery.message.topic, "message": "Message not sent",
            "error": delivery.error.detail}


def produce_batch(requests: list[dict]) -> tuple[dict, int]:
    """Write a batch; 200 if all were written, 207 with per-message results if some were, else the error."""
    source = _source()
    outgoing = []
    for index, request in enumerate(requests):
        try:
            outgoing.append(to_outgoing(request, source))
        except APIError as error:
            error.detail = f"{error.detail} (message at index {index})"
            raise
    deliveries = current_producer().send_all(outgoing)
    sent = sum(delivery.succeeded for delivery in deliveries)
    body = {"success": sent == len(deliveries), "messages_sent": sent,
            "results": [_batch_result(delivery) for delivery in deliveries]}
    if sent == len(deliveries):
        return body, 200
    if sent:
        return body, 207
    first_error = next(delivery.error for delivery in deliveries)
    first_error.extra = body
    raise first_error
