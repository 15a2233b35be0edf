"""Turning a validated request into the record Kafka stores (metadata enrichment and encoding), and what became
of it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from producer_api.core.errors import APIError, InvalidRequest

_STANDARD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(slots=True)  # not frozen: built once per message, where a frozen dataclass costs more
class OutgoingMessage:
    """A record ready for Kafka: topic, optional partition, key and value as bytes, timestamp in ms."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    timestamp_ms: int
    accepted_at: str


@dataclass(slots=True)
class Delivery:
    """What became of one message: where Kafka stored it, or the error that kept it out."""

    message: OutgoingMessage
    partition: int | None = None
    offset: int | None = None
    error: APIError | None = None

    @property
    def succeeded(self) -> bool:
        """True when the broker acknowledged the message."""
        return self.error is None


def enrich(message: dict, source: str, now: float, now_iso: str | None = None) -> dict:
    """Add timestamp, source and server_time to a message, keeping any field the client already set."""
    enriched = dict(message)
    enriched.setdefault("timestamp", iso_utc(now) if now_iso is None else now_iso)
    enriched.setdefault("source", source)
    enriched.setdefault("server_time", now)
    return enriched


def iso_utc(epoch_seconds: float) -> str:
    """Format epoch seconds as ISO 8601 in UTC with microseconds."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="microseconds")


def encode_json(document) -> bytes:
    """Serialise a document read from a request body compactly as UTF-8 JSON."""
    try:
        # orjson, many times faster than the standard library's encoder on every record.
        return orjson.dumps(document)
    except TypeError:
        # Integers beyond 64 bits and text with lone surrogates: the standard library writes the first and
        # fails on the second as it always did. (NaN and Infinity never get here: read_json refuses them.)
        return _STANDARD_ENCODER.encode(document).encode()


def to_outgoing(request: dict, source: str, now: float | None = None, now_iso: str | None = None) -> OutgoingMessage:
    """Build the Kafka record for one validated produce request, accepted at now (epoch seconds; now_iso)."""
    now = time.time() if now is None else now
    now_iso = iso_utc(now) if now_iso is None else now_iso
    key = request.get("key")
    try:
        key_bytes = None if key is None else key.encode()
        value = encode_json(enrich(request["message"], source, now, now_iso))
    except UnicodeEncodeError:
        # JSON can carry lone surrogates (e.g. "\ud800") that have no UTF-8 form.
        raise InvalidRequest("Failed to produce message: Invalid message format: text is not valid Unicode") from None
    return OutgoingMessage(
        topic=request["topic"],
        key=key_bytes,
        value=value,
        partition=request.get("partition"),
        timestamp_ms=int(now * 1000),
        accepted_at=now_iso,
    )
