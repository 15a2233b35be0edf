"""Ceiling B, the WSGI limit: reads and answers like POST /produce, with the service's JSON handling, no Kafka.

Served with the project's own gunicorn.conf.py (gthread, same workers and threads), whose post_fork also opens
the service's producer in each worker; it stays idle here.
"""

from __future__ import annotations

import time

from flask import Flask

from producer_api.bodies import read_json
from producer_api.delivery import SENT
from producer_api.messages import iso_utc

app = Flask(__name__)
app.json.sort_keys = False  # as the service's create_app sets it


@app.get("/health")
def health():
    """Answer that the app is up: nothing stands behind it."""
    return {"status": "healthy"}


@app.post("/produce")
def produce():
    """Parse the body as the service does and answer a response of the service's shape and size."""
    document = read_json()
    return {"success": True, "message": SENT, "topic": document["topic"], "partition": 0, "offset": 0,
            "timestamp": iso_utc(time.time())}
