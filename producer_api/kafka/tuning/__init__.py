"""Changes to kafka-python's internals, each in a module of its own that says what it replaces (docs/tuning.md).

Each applies only where producer_api.tuning.enabled() says so: switched on, not skipped, and kafka-python the
version it was verified on. Otherwise kafka-python works as shipped.
"""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.net.transport import KafkaTCPTransport

from producer_api import tuning
from producer_api.kafka.tuning import coalesced_wakeup, no_spin_when_full, recv_until_short, send_before_wait


def set_up_process(settings) -> None:
    """Install or take back the process-wide changes to kafka-python's connections, as settings say."""
    send = send_before_wait.write_to_sock_sending_first
    if not tuning.enabled("send_before_wait", settings):
        send = send_before_wait.AS_SHIPPED
    receive = recv_until_short.sock_recv_until_short
    if not tuning.enabled("recv_until_short", settings):
        receive = recv_until_short.AS_SHIPPED
    KafkaTCPTransport._write_to_sock, KafkaTCPTransport._sock_recv = send, receive


def tune_producer(producer: KafkaProducer, settings) -> KafkaProducer:
    """Apply the per-producer changes to a freshly built producer."""
    if tuning.enabled("coalesced_wakeup", settings):
        coalesced_wakeup.apply(producer)
    if tuning.enabled("no_spin_when_full", settings):
        no_spin_when_full.apply(producer)
    return producer


def appends_batches(settings) -> bool:
    """Whether waited-for records are appended straight into kafka-python's batches (batch_append)."""
    return tuning.enabled("batch_append", settings)
