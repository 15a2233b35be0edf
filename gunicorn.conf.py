"""gunicorn settings for the producer API; every value comes from producer_api.config (the environment), and every
hook is one line that calls producer_api/server/hooks.py."""

import sys

from producer_api.config import ConfigError, Settings
from producer_api.observability.logs import logging_config, skip_unused_record_details
from producer_api.server.hooks import ErrorOnlyLogger, Hooks

try:
    settings = Settings.from_env()
except ConfigError as error:
    # A clear one-line reason instead of a traceback from inside gunicorn's config loader.
    sys.exit(f"producer-api: configuration error: {error}")
hooks = Hooks(settings)

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

# Logging: every line one JSON object on stderr (producer_api/observability/logs.py); the app writes the access
# lines, so gunicorn's logger writes none.
loglevel = settings.log_level
accesslog = None
errorlog = "-"
logconfig_dict = logging_config(settings.log_level)
logger_class = ErrorOnlyLogger
skip_unused_record_details()  # inherited by the workers


# Hooks
def on_starting(server):
    """Give the workers a metrics directory; warn about tuning a library's version does not get."""
    hooks.on_starting(server)


def post_fork(server, worker):
    """Create this worker's Kafka producer (its threads must start after the fork)."""
    hooks.post_fork(server, worker)


def post_worker_init(worker):
    """Apply the worker's tuning and freeze its start-up heap."""
    hooks.post_worker_init(worker)


def post_request(worker, req, environ, resp):
    """Give a gevent worker's other connections their turn."""
    hooks.post_request(worker, req, environ, resp)


def worker_exit(server, worker):
    """Flush and close this worker's producer."""
    hooks.worker_exit(server, worker)


def child_exit(server, worker):
    """Drop the worker's live gauges."""
    hooks.child_exit(server, worker)


def on_exit(server):
    """Remove the metrics directory on_starting made."""
    hooks.on_exit(server)
