"""gunicorn settings for the producer API; every value comes from producer_api.config (the environment)."""

import sys

from producer_api.config import ConfigError, Settings

try:
    settings = Settings.from_env()
except ConfigError as error:
    # A clear one-line reason instead of a traceback from inside gunicorn's config loader.
    sys.exit(f"producer-api: configuration error: {error}")

# Server socket
bind = f"{settings.host}:{settings.port}"

# Workers: threads let one worker wait on several Kafka acknowledgements at once, and kafka-python
# batches the messages of concurrent requests together.
workers = settings.workers
worker_class = "gthread"
threads = settings.threads
timeout = 60
graceful_timeout = settings.graceful_timeout
keepalive = 5
# gunicorn 27's control socket has one default path per user, which two services on one machine would fight
# over; nothing here uses it.
control_socket_disable = True

# Logging
loglevel = settings.log_level
accesslog = "-"
errorlog = "-"


# Hooks
def post_fork(server, worker):
    """Create this worker's Kafka producer: its I/O thread must start after the fork."""
    from producer_api import kafka_producer

    kafka_producer.open_worker_producer(settings)
    worker.log.info("worker %s: Kafka producer for %s ready", worker.pid, settings.bootstrap_servers)


def post_worker_init(worker):
    """Log that the worker has its signal handlers and app, so it can serve and shut down cleanly."""
    worker.log.info("worker %s: serving", worker.pid)


def worker_exit(server, worker):
    """Flush and close this worker's producer, within a timeout shorter than graceful_timeout."""
    from producer_api import kafka_producer

    kafka_producer.close_worker_producer(settings.close_timeout_ms / 1000)
    worker.log.info("worker %s: Kafka producer flushed and closed", worker.pid)
