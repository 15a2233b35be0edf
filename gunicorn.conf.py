"""gunicorn settings for the producer API; every value comes from producer_api.config (the environment)."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gunicorn import glogging

from producer_api import green, gunicorn_http, heap, response_send
from producer_api.balance import ConnectionBalance
from producer_api.client_timeout import ClientTimeout
from producer_api.config import STOP_KEEPALIVE_LINGER_S, ConfigError, Settings
from producer_api.keepalive import KeepAliveOnThread
from producer_api.logs import logging_config, skip_unused_record_details

try:
    settings = Settings.from_env()
except ConfigError as error:
    # A clear one-line reason instead of a traceback from inside gunicorn's config loader.
    sys.exit(f"producer-api: configuration error: {error}")

# Server socket
bind = f"{settings.host}:{settings.port}"

# Workers: threads (gthread) or greenlets (gevent) let one worker wait on several Kafka acknowledgements at
# once, and kafka-python batches the messages of concurrent requests together.
workers = settings.workers
worker_class = settings.worker_class
threads = settings.threads
worker_connections = settings.worker_connections
timeout = 60
graceful_timeout = settings.graceful_timeout
keepalive = 5
# gunicorn 27's control socket has one default path per user, which two services on one machine would fight
# over; nothing here uses it.
control_socket_disable = True
# Made here, in the master before it forks, so that every worker shares it (producer_api/balance.py).
connection_balance = ConnectionBalance(settings.workers)

# Logging: every line one JSON object on stderr (producer_api/logs.py); the app writes the access lines.
loglevel = settings.log_level
accesslog = None
errorlog = "-"
logconfig_dict = logging_config(settings.log_level)
skip_unused_record_details()  # inherited by the workers


class ErrorOnlyLogger(glogging.Logger):
    """gunicorn's logger without its access log, which the app writes itself.

    With accesslog=None and a logconfig_dict, gunicorn still builds every request's access-log fields and then
    drops them: about 25 us a request, 20 % of single-message throughput in a profile.
    """

    def access(self, resp, req, environ, request_time):
        """Write nothing: producer_api/logs.py writes the access line."""


logger_class = ErrorOnlyLogger

# Metrics: prometheus_client's multiprocess mode, so /metrics counts every worker. The library reads
# PROMETHEUS_MULTIPROC_DIR when first imported, so on_starting sets it before any worker forks.
# A directory made here is marked, so that on_exit removes it even after a reload re-read this file.
_OWN_METRICS_DIR_MARK = ".made-by-producer-api"


# Hooks
def on_starting(server):
    """Give the workers an empty metrics directory: METRICS_MULTIPROC_DIR, or a fresh private temporary one."""
    directory = settings.metrics_multiproc_dir
    if directory is None:
        directory = tempfile.mkdtemp(prefix="producer-api-metrics-")  # mode 0700
        Path(directory, _OWN_METRICS_DIR_MARK).touch()
        # on_exit does not run when start-up fails after this hook (the port in use, a worker that cannot boot).
        atexit.register(_remove_own_metrics_dir, directory, os.getpid())
    else:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    for stale in Path(directory).glob("*.db"):  # counters of an earlier run
        stale.unlink()
    # Inherited by every worker: prometheus_client reads the first, the workers' Settings the second.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["METRICS_MULTIPROC_DIR"] = directory
    server.log.info("metrics of every worker in %s", directory)


def pre_fork(server, worker):
    """Take the worker's balance slot before it exists, so that workers already serving leave it connections."""
    connection_balance.expect(worker)


def post_fork(server, worker):
    """Create this worker's Kafka producer and metrics sampler: their threads must start after the fork."""
    green.patch_for(settings.worker_class)  # first: what follows must start greenlets, not threads (green.py)
    from producer_api import kafka_producer, metrics

    kafka_producer.open_worker_producer(settings)
    metrics.start_sampler(kafka_producer.worker_producer)
    worker.log.info("worker %s: Kafka producer for %s ready", worker.pid, settings.bootstrap_servers)


def post_worker_init(worker):
    """Bound client silence, balance connections, let a stopping gevent worker's idle connections go, keep
    kept-alive ones on their thread (gthread), join headers and body, freeze the heap; log it."""
    bounded = ClientTimeout.install(worker, settings.client_timeout_s)  # first: it replaces gevent's handle()
    balanced = connection_balance.join(worker) or connection_balance.join_green(worker)
    green.close_idle_connections_on_stop(worker, STOP_KEEPALIVE_LINGER_S)
    on_thread = KeepAliveOnThread.install(worker)
    one_send = response_send.install()
    json_errors = gunicorn_http.install(settings.max_body_bytes)
    frozen = heap.freeze_startup_objects()  # last: what the lines above made lives as long as the worker
    worker.log.info("worker %s: serving%s%s%s%s%s (%d start-up objects frozen out of full garbage collections)",
                    worker.pid,
                    " (new connections balanced over workers)" if balanced else "",
                    f" (clients silent for {settings.client_timeout_s} s mid-request cut off)" if bounded else "",
                    " (a kept-alive connection's next request served on its thread)" if on_thread else "",
                    " (headers and body sent together)" if one_send else "",
                    " (gunicorn's own errors as JSON, no 100 Continue over the body limit)" if json_errors else "",
                    frozen)


def pre_request(worker, req):
    """Move a kept-alive connection to a less busy worker when this one holds too many more (balance.py)."""
    connection_balance.shed_if_busier(worker, req)


def post_request(worker, req, environ, resp):
    """In a gevent worker, let the other ready connections take their turn (green.py; threads take turns anyway)."""
    green.yield_to_other_connections()


def worker_exit(server, worker):
    """Flush and close this worker's producer, within a timeout shorter than graceful_timeout."""
    from producer_api import kafka_producer

    kafka_producer.close_worker_producer(settings.close_timeout_ms / 1000)
    worker.log.info("worker %s: Kafka producer flushed and closed", worker.pid)


def child_exit(server, worker):
    """Free the worker's balance slot and drop its gauges (even after SIGKILL); its counters stay in the sums."""
    from prometheus_client import multiprocess

    connection_balance.leave(worker)
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if on_starting made it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        _remove_own_metrics_dir(directory, os.getpid())


def _remove_own_metrics_dir(directory: str, master_pid: int) -> None:
    """Remove the metrics directory on_starting made, from the master only (workers inherit its exit handlers)."""
    if os.getpid() == master_pid and Path(directory, _OWN_METRICS_DIR_MARK).exists():
        shutil.rmtree(directory, ignore_errors=True)
