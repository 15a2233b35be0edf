"""Producing validated requests to Kafka and reporting each outcome in the API's response shape."""

from __future__ import annotations

import time
from collections.abc import Callable

from producer_api.core import turns
from producer_api.core.errors import APIError
from producer_api.core.messages import Delivery, OutgoingMessage, iso_utc, to_outgoing
from producer_api.observability import metrics

SENT = "Message sent successfully"
QUEUED = "Queued for delivery"


def outgoing_messages(requests: list[dict], source: str) -> list[OutgoingMessage]:
    """The Kafka records of validated requests, all accepted at one time; errors name the message's index."""
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
        if index % turns.YIELD_EVERY == turns.YIELD_EVERY - 1:
            turns.give_turn()
    return outgoing


def produce_one(producer: Callable, request: dict, source: str, wait: bool = True) -> tuple[dict, int]:
    """Write one message with producer() and return where Kafka stored it (or, without wait, that it is queued).

    producer is called once the message is encoded: a message that cannot be is refused whatever Kafka's state.
    """
    outgoing = outgoing_messages([request], source)
    sender = producer()
    started = time.perf_counter()
    delivery = metrics.record_deliveries(sender.send_all(outgoing, wait=wait), wait, started)[0]
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


def produce_batch(producer: Callable, requests: list[dict], source: str, wait: bool = True,
                  atomic: bool = False) -> tuple[dict, int]:
    """Write a batch with producer(); 200 if all were written, 207 with per-message results if some were, else
    the error."""
    wait = wait or atomic  # a transaction's outcome is only known once it commits
    outgoing = outgoing_messages(requests, source)
    sender = producer()
    started = time.perf_counter()
    deliveries = sender.send_atomic(outgoing) if atomic else sender.send_all(outgoing, wait=wait)
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
