"""kafka-python's KafkaProducer as the service builds it: its options from the settings, and its tuning."""

from __future__ import annotations

import logging

from kafka import KafkaProducer

from producer_api.config import Settings
from producer_api.kafka import tuning
from producer_api.kafka.partitioner import KeyHashCachingPartitioner
from producer_api.observability.logs import ThrottledLog

log = logging.getLogger(__name__)
# kafka-python builds a TLS context, and so asks for the key's pass phrase, at every connection attempt.
_KEY_PASSWORD_LOG = ThrottledLog(log, interval_s=60.0)


def producer_config(settings: Settings) -> dict:
    """KafkaProducer's options for these settings: acks=all, idempotence, the service's limits and security."""
    config = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        # An explicit version keeps the constructor from contacting Kafka, so a worker starts even while the
        # broker is down; each connection still negotiates down to what its broker supports.
        "api_version": settings.api_version,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "max_in_flight_requests_per_connection": settings.max_in_flight,
        "batch_size": settings.batch_size,
        "compression_type": None if settings.compression_type == "none" else settings.compression_type,
        "max_request_size": settings.max_request_size,
        "max_block_ms": settings.max_block_ms,
        "request_timeout_ms": settings.request_timeout_ms,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "reconnect_backoff_max_ms": 1000,
        # kafka-python's own metrics cost its I/O thread time on every message, and nothing here reads them.
        "metrics_enabled": False,
        "partitioner": KeyHashCachingPartitioner(),
        "security_protocol": settings.security_protocol,
    }
    # Only the options the protocol uses (Settings.check() refuses the others).
    if settings.security_protocol.startswith("SASL_"):
        config.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_password)
    if settings.security_protocol.endswith("SSL"):
        config["ssl_check_hostname"] = settings.ssl_check_hostname
        # Without a CA file kafka-python trusts the system's default CAs.
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key) is not None:
                config[key] = getattr(settings, key)
        if settings.ssl_certfile is not None:
            # OpenSSL asks a terminal for the pass phrase of an encrypted key when given none: a worker started
            # from a shell would wait there for good. A callable answers instead (called only for such a key).
            config["ssl_password"] = (settings.ssl_key_password if settings.ssl_key_password is not None
                                      else _no_key_password)
    return config


def _no_key_password() -> bytes:
    """The pass phrase OpenSSL gets for an encrypted key when KAFKA_SSL_KEY_PASSWORD is unset: none."""
    _KEY_PASSWORD_LOG.error("KAFKA_SSL_KEYFILE (or KAFKA_SSL_CERTFILE) holds an encrypted private key: "
                            "set KAFKA_SSL_KEY_PASSWORD or KAFKA_SSL_KEY_PASSWORD_FILE")
    return b""


def new_kafka_producer(settings: Settings, **options) -> KafkaProducer:
    """A KafkaProducer with the service's options and whatever tuning the settings switch on."""
    tuning.set_up_process(settings)
    return KafkaProducer(**{**producer_config(settings), **options})
