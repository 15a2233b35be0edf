"""Turning a validated request into the record Kafka stores: metadata enrichment and encoding."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from producer_api.errors import InvalidRequest


@dataclass(frozen=True)
class OutgoingMessage:
    """A record ready for Kafka: topic, optional partition, key and value as bytes, timestamp in ms."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    timestamp_ms: int
    accepted_at: str


def enrich(message: dict, source: str, now: float) -> dict:
    """Add timestamp, source and server_time to a message, keeping any field the client already set."""
    enriched = dict(message)
    enriched.setdefault("timestamp", iso_utc(now))
    enriched.setdefault("source", source)
    enriched.setdefault("server_time", now)
    return enriched


def iso_utc(epoch_seconds: float) -> str:
    """Format epoch seconds as ISO 8601 in UTC with microseconds."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="microseconds")


def encode_json(document) -> bytes:
    """Serialise a JSON document compactly as UTF-8 (NaN and Infinity are refused: they are not JSON)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def to_outgoing(request: dict, source: str, now: float | None = None) -> OutgoingMessage:
    """Build the Kafka record for one validated produce request."""
    now = time.time() if now is None else now
    key = request.get("key")
    try:
        key_bytes = None if key is None else key.encode()
        value = encode_json(enrich(request["message"], source, now))
    except UnicodeEncodeError:
        # JSON can carry lone surrogates (e.g. "\ud800") that have no UTF-8 form.
        raise InvalidRequest("Failed to produce message: Invalid message format: text is not valid Unicode") from None
    return OutgoingMessage(
        topic=request["topic"],
        key=key_bytes,
        value=value,
        partition=request.get("partition"),
        timestamp_ms=int(now * 1000),
        accepted_at=iso_utc(now),
    )
