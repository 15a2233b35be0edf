"""Baseline C, the straightforward implementation: a producer per worker, send().get() per message.

It is what a first version usually looks like: Flask's request.get_json and jsonify, kafka-python's defaults
with acks='all', each message waited for before the next is sent, and a flush after every batch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Flask, jsonify, request
from kafka import KafkaProducer
from kafka.errors import KafkaError

app = Flask(__name__)
producer: KafkaProducer | None = None


def open_producer(bootstrap_servers: str) -> None:
    """Create this worker's producer; bench/apps/naive_conf.py calls it from post_fork."""
    global producer
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers.split(","),
        acks="all",
        key_serializer=lambda key: None if key is None else key.encode(),
        value_serializer=lambda value: json.dumps(value).encode(),
    )


def close_producer() -> None:
    """Flush and close this worker's producer; bench/apps/naive_conf.py calls it from worker_exit."""
    if producer is not None:
        producer.close(timeout=10)


def _send(item: dict) -> dict:
    message = dict(item["message"], timestamp=datetime.now(UTC).isoformat(), source="naive-producer-api")
    metadata = producer.send(item["topic"], key=item.get("key"), value=message).get(timeout=10)
    return {"topic": metadata.topic, "partition": metadata.partition, "offset": metadata.offset}


@app.get("/health")
def health():
    """Report whether this worker has its producer (its constructor reached a broker to learn its version)."""
    ready = producer is not None
    return jsonify({"status": "healthy" if ready else "unhealthy"}), 200 if ready else 503


@app.post("/produce")
def produce():
    """Write one message and wait for Kafka's acknowledgement."""
    try:
        result = _send(request.get_json())
    except KafkaError as error:
        return jsonify({"success": False, "error": str(error)}), 500
    return jsonify({"success": True, "message": "Message sent successfully", **result,
                    "timestamp": datetime.now(UTC).isoformat()})


@app.post("/produce/batch")
def produce_batch():
    """Write the messages one at a time, each waited for, then flush."""
    try:
        results = [_send(item) for item in request.get_json()]
        producer.flush()
    except KafkaError as error:
        return jsonify({"success": False, "error": str(error)}), 500
    return jsonify({"success": True, "messages_sent": len(results), "results": results})
