"""Settings from environment variables: the only place the service reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use; the message names the variable."""


def _integer(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _bootstrap_servers(name: str, raw: str) -> str:
    servers = [server.strip() for server in raw.split(",") if server.strip()]
    if not servers:
        raise ConfigError(f"{name} must list at least one host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} entries must be host:port, got {server!r}")
    return ",".join(servers)


def _api_version(name: str, raw: str) -> tuple[int, ...]:
    try:
        version = tuple(int(part) for part in raw.split("."))
    except ValueError:
        raise ConfigError(f"{name} must look like 4.1, got {raw!r}") from None
    if len(version) < 2 or version < (2, 1):
        raise ConfigError(f"{name} must be 2.1 or newer (e.g. 4.1), got {raw!r}")
    return version


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; field metadata names its environment variable and parser."""

    # Kafka connection and producer
    bootstrap_servers: str = field(default="localhost:9092", metadata={"env": "KAFKA_BOOTSTRAP_SERVERS"})
    client_id: str = field(default="python-producer-api", metadata={"env": "KAFKA_CLIENT_ID"})
    api_version: tuple[int, ...] = field(default=(4, 1), metadata={"env": "KAFKA_API_VERSION"})
    linger_ms: int = field(default=1, metadata={"env": "KAFKA_LINGER_MS"})
    batch_size: int = field(default=16384, metadata={"env": "KAFKA_BATCH_SIZE"})
    compression_type: str = field(default="none", metadata={"env": "KAFKA_COMPRESSION_TYPE"})
    max_request_size: int = field(default=1048576, metadata={"env": "KAFKA_MAX_REQUEST_SIZE"})
    max_block_ms: int = field(default=5000, metadata={"env": "KAFKA_MAX_BLOCK_MS"})
    request_timeout_ms: int = field(default=5000, metadata={"env": "KAFKA_REQUEST_TIMEOUT_MS"})
    delivery_timeout_ms: int = field(default=10000, metadata={"env": "KAFKA_DELIVERY_TIMEOUT_MS"})
    health_timeout_ms: int = field(default=2000, metadata={"env": "KAFKA_HEALTH_TIMEOUT_MS"})
    close_timeout_ms: int = field(default=10000, metadata={"env": "KAFKA_CLOSE_TIMEOUT_MS"})
    # HTTP service
    host: str = field(default="0.0.0.0", metadata={"env": "PRODUCER_HOST"})
    port: int = field(default=8001, metadata={"env": "PRODUCER_PORT"})
    workers: int = field(default=2, metadata={"env": "PRODUCER_WORKERS"})
    threads: int = field(default=16, metadata={"env": "PRODUCER_THREADS"})
    graceful_timeout: int = field(default=30, metadata={"env": "PRODUCER_GRACEFUL_TIMEOUT"})
    max_body_bytes: int = field(default=5 * 1024 * 1024, metadata={"env": "PRODUCER_MAX_BODY_BYTES"})
    max_batch_messages: int = field(default=5000, metadata={"env": "PRODUCER_MAX_BATCH_MESSAGES"})
    log_level: str = field(default="info", metadata={"env": "LOG_LEVEL"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment, raising ConfigError that names the first bad variable."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            name = setting.metadata["env"]
            raw = environ.get(name, "").strip()
            if raw:
                values[setting.name] = _PARSERS[setting.name](name, raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Reject combinations of values that Kafka or gunicorn would refuse or that would break a bound."""
        if self.delivery_timeout_ms < self.request_timeout_ms + self.linger_ms:
            raise ConfigError(
                "KAFKA_DELIVERY_TIMEOUT_MS must be at least KAFKA_REQUEST_TIMEOUT_MS + KAFKA_LINGER_MS "
                f"({self.request_timeout_ms + self.linger_ms}), got {self.delivery_timeout_ms}"
            )
        if self.close_timeout_ms >= self.graceful_timeout * 1000:
            raise ConfigError(
                "KAFKA_CLOSE_TIMEOUT_MS must be below PRODUCER_GRACEFUL_TIMEOUT so the producer is flushed "
                f"before gunicorn kills the worker (got {self.close_timeout_ms} ms and {self.graceful_timeout} s)"
            )

    @property
    def produce_timeout_s(self) -> float:
        """The longest a produce request waits for Kafka: metadata, then delivery, plus a margin."""
        return (self.max_block_ms + self.delivery_timeout_ms) / 1000 + 1.0


_PARSERS = {
    "bootstrap_servers": _bootstrap_servers,
    "client_id": lambda name, raw: raw,
    "api_version": _api_version,
    "linger_ms": lambda name, raw: _integer(name, raw, 0, 60000),
    "batch_size": lambda name, raw: _integer(name, raw, 1),
    "compression_type": lambda name, raw: _choice(name, raw, COMPRESSION_TYPES),
    "max_request_size": lambda name, raw: _integer(name, raw, 1024),
    "max_block_ms": lambda name, raw: _integer(name, raw, 100, 120000),
    "request_timeout_ms": lambda name, raw: _integer(name, raw, 100, 120000),
    "delivery_timeout_ms": lambda name, raw: _integer(name, raw, 100, 300000),
    "health_timeout_ms": lambda name, raw: _integer(name, raw, 100, 2900),
    "close_timeout_ms": lambda name, raw: _integer(name, raw, 0, 600000),
    "host": lambda name, raw: raw,
    "port": lambda name, raw: _integer(name, raw, 1, 65535),
    "workers": lambda name, raw: _integer(name, raw, 1, 64),
    "threads": lambda name, raw: _integer(name, raw, 1, 256),
    "graceful_timeout": lambda name, raw: _integer(name, raw, 1, 600),
    "max_body_bytes": lambda name, raw: _integer(name, raw, 1024),
    "max_batch_messages": lambda name, raw: _integer(name, raw, 1),
    "log_level": lambda name, raw: _choice(name, raw, ("debug", "info", "warning", "error", "critical")),
}
