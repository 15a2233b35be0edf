"""The gevent worker class: the standard library made cooperative before a worker opens its Kafka producer.

gunicorn's gevent worker patches the standard library (threads, locks, sockets, select) only in its own start-up,
after post_fork has run; a producer opened in post_fork before that would run kafka-python's I/O on a real thread
and real epoll, which blocks the worker's one thread, and its futures' events would be waited on by greenlets from
another thread. So post_fork patches first: kafka-python's I/O thread becomes a greenlet, and a request waiting
for Kafka's answer lets the worker serve other connections meanwhile. What was made before the patching and
waits on a lock or an event (the log writer's) must not be used by greenlets.
"""

from __future__ import annotations

import functools
import logging
import sys

from producer_api.core import turns
from producer_api.observability import logs

log = logging.getLogger(__name__)

def patch_for(worker_class: str) -> bool:
    """Patch this worker's standard library for gevent (once, before anything starts threads); False otherwise."""
    if worker_class != "gevent":
        return False
    from gevent import monkey

    early = imported_before_patching()
    if early:
        # Their threads, locks and sockets stay the kernel's: a producer waits out KAFKA_CLOSE_TIMEOUT_MS when its
        # worker stops, and a request waiting on it could stop the whole worker. Seen with the benchmark's own app.
        log.warning("%s imported before gevent patched this worker (gunicorn --preload, or a config that imports "
                    "them early?): run with PRODUCER_WORKER_CLASS=gthread, or import them only after post_fork",
                    ", ".join(early))
    monkey.patch_all()
    logs.use_no_writer_thread()
    from gevent import sleep

    turns.install(functools.partial(sleep, 0))
    return True


def imported_before_patching() -> list[str]:
    """The modules that must start after gevent's patching (kafka-python, the producer) already imported."""
    return [name for name in ("kafka", "producer_api.kafka.producer") if name in sys.modules]


def yield_to_other_connections() -> None:
    """In a gevent worker, let its other ready connections run now; with threads, which take turns anyway, nothing.

    gevent switches only where a greenlet waits. It reads a socket without switching when its data is already
    there, so a client that sent its next request as soon as it had an answer kept its greenlet running, and the
    worker's other connections waited: post_request calls this after every request.
    """
    turns.give_turn()  # nothing until patch_for installed gevent's switch
