"""The bodies of gunicorn's hooks for this service; gunicorn.conf.py names each in one line."""

from __future__ import annotations

import os

from gunicorn import glogging

from producer_api import tuning
from producer_api.config import Settings
from producer_api.server import green, heap, metrics_dir
from producer_api.server import tuning as server_tuning


class ErrorOnlyLogger(glogging.Logger):
    """gunicorn's logger without its access log, which the app writes itself.

    With accesslog=None and a logconfig_dict, gunicorn still builds every request's access-log fields and then
    drops them, a large part of a single message's cost.
    """

    def access(self, resp, req, environ, request_time):
        """Write nothing: producer_api/api/observe.py writes the access line."""


class Hooks:
    """What the service does at each of gunicorn's hooks, for one configuration read by the master."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def on_starting(self, server) -> None:
        """Give the workers an empty metrics directory, and say which tuning this library version does not get."""
        directory = metrics_dir.prepare(self.settings.metrics_multiproc_dir)
        # Inherited by every worker: prometheus_client reads the first, the workers' Settings the second.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["METRICS_MULTIPROC_DIR"] = directory
        server.log.info("metrics of every worker in %s", directory)
        tuning.warn_about_versions(server.log, self.settings)

    def post_fork(self, server, worker) -> None:
        """Create this worker's Kafka producer and metrics sampler: their threads must start after the fork."""
        green.patch_for(self.settings.worker_class)  # first: what follows must start greenlets, not threads
        from producer_api.kafka import worker as kafka_worker
        from producer_api.observability import metrics

        kafka_worker.open_worker_producer(self.settings)
        metrics.start_sampler(kafka_worker.worker_producer)
        worker.log.info("worker %s: Kafka producer for %s ready", worker.pid, self.settings.bootstrap_servers)

    def post_worker_init(self, worker) -> None:
        """Apply the worker's tuning, then freeze the heap; log what applies."""
        applied = server_tuning.install_in_worker(worker, self.settings)
        frozen = heap.freeze_startup_objects()  # last: what the lines above made lives as long as the worker
        worker.log.info("worker %s: serving (tuning: %s; %d start-up objects frozen out of full garbage "
                        "collections)", worker.pid, ", ".join(applied) or "none", frozen)

    def post_request(self, worker, req, environ, resp) -> None:
        """In a gevent worker, let the other ready connections take their turn (threads take turns anyway)."""
        green.yield_to_other_connections()

    def worker_exit(self, server, worker) -> None:
        """Flush and close this worker's producer, within a timeout shorter than graceful_timeout."""
        from producer_api.kafka import worker as kafka_worker

        kafka_worker.close_worker_producer(self.settings.close_timeout_ms / 1000)
        worker.log.info("worker %s: Kafka producer flushed and closed", worker.pid)

    def child_exit(self, server, worker) -> None:
        """Drop the worker's live gauges (even after SIGKILL); its counters stay in the sums."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def on_exit(self, server) -> None:
        """Remove the metrics directory if on_starting made it."""
        directory = metrics_dir.prepared()
        if directory is not None:
            metrics_dir.remove_own(directory, os.getpid())
