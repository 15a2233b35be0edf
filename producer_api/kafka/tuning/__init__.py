"""Changes to kafka-python's internals, each in a module of its own that says what it replaces (docs/tuning.md).

Each applies only where producer_api.tuning.enabled() says so: switched on, not skipped, and kafka-python the
version it was verified on. Otherwise kafka-python works as shipped.
"""

from __future__ import annotations

from kafka.net.transport import KafkaTCPTransport

from producer_api import tuning
from producer_api.kafka.tuning import send_before_wait


def set_up_process(settings) -> None:
    """Install or take back the process-wide changes to kafka-python's connections, as settings say."""
    tuned = tuning.enabled("send_before_wait", settings)
    KafkaTCPTransport._write_to_sock = (send_before_wait.write_to_sock_sending_first if tuned
                                        else send_before_wait.AS_SHIPPED)


def appends_batches(settings) -> bool:
    """Whether waited-for records are appended straight into kafka-python's batches (batch_append)."""
    return tuning.enabled("batch_append", settings)
