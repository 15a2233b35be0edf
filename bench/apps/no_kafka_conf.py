"""gunicorn settings of ceiling S: the service exactly as deployed, except that Kafka answers every message at once.

Benchmark only. Every setting and hook is the project's gunicorn.conf.py; after the project's post_fork has opened
the worker's producer, its send_all() is replaced by one that acknowledges each message at partition 0, offset 0
without touching Kafka. The service's single-message rate over this one's is what Kafka costs it; this one's over
ceiling B is what the service's own work (validation, access control, the access line, metrics) costs.
"""

import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
globals().update({name: value for name, value in _project.items() if not name.startswith("__")})
_project_post_fork = _project["post_fork"]


def post_fork(server, worker):
    """Open the worker's producer as the service does, then answer for Kafka."""
    _project_post_fork(server, worker)
    # Only now: imported before the project's post_fork patched the standard library for gevent, kafka-python kept
    # the unpatched threading, and a stopping worker's producer then waited out KAFKA_CLOSE_TIMEOUT_MS (10 s).
    from producer_api.core.messages import Delivery
    from producer_api.kafka.worker import worker_producer

    worker_producer().send_all = lambda messages, wait=True: [Delivery(message, 0, 0) for message in messages]
