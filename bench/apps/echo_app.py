"""Ceiling B, the WSGI limit: reads and answers like POST /produce, with the service's JSON handling, no Kafka.

Served with the project's own gunicorn.conf.py (same worker class, workers and threads), whose post_fork also opens
the service's producer in each worker; it stays idle here unless an app sends with it (ceiling K).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask

from producer_api.api.bodies import read_json
from producer_api.core.delivery import SENT
from producer_api.core.messages import iso_utc


def create_echo_app(place: Callable[[dict], tuple[int, int]] | None = None) -> Flask:
    """An app answering POST /produce in the service's shape; place(document) gives (partition, offset) if set."""
    app = Flask(__name__)
    app.json.sort_keys = False  # as the service's create_app sets it

    @app.get("/health")
    def health():
        """Answer that the app is up (the benchmark checks Kafka itself)."""
        return {"status": "healthy"}

    @app.post("/produce")
    def produce():
        """Parse the body as the service does and answer a response of the service's shape and size."""
        document = read_json()
        partition, offset = place(document) if place is not None else (0, 0)
        return {"success": True, "message": SENT, "topic": document["topic"], "partition": partition,
                "offset": offset, "timestamp": iso_utc(time.time())}

    return app


app = create_echo_app()
