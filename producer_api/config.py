"""Settings from environment variables: the only place the service reads the environment."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from producer_api.tuning import NAMES as TUNING_NAMES

COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")
# How long a stopping gthread worker (gunicorn 27) still answers requests on its kept-alive connections; a gevent
# worker closes them as late (producer_api/server/tuning/idle_close_on_stop.py).
STOP_KEEPALIVE_LINGER_S = 2.0
# The module kafka-python imports for a codec, and the package that provides it; gzip is in the standard library.
_COMPRESSION_PACKAGES = {
    "snappy": (("snappy",), "python-snappy"),
    "lz4": (("lz4", "lz4f", "lz4framed"), "lz4"),  # kafka-python takes any of the three
    "zstd": (("zstandard",), "zstandard"),
}
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
WORKER_CLASSES = ("gevent", "gthread")


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
    """The choice that raw names, ignoring case, spelled as in choices."""
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _pem_head(path: str) -> str:
    """The text of a PEM file, enough of it to find its first markers; empty if it cannot be read as text."""
    try:
        with open(path, encoding="ascii", errors="replace") as pem:
            return pem.read(1 << 20)
    except OSError:
        return ""


def _read_password_file(name: str, path: str) -> str:
    """The secret held in a file (one trailing newline ignored); the error names the file, never its content."""
    try:
        password = Path(path).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{name}: cannot read {path!r} ({type(error).__name__})") from None
    if not password:
        raise ConfigError(f"{name}: {path!r} is empty")
    return password


def _bootstrap_servers(name: str, raw: str) -> str:
    servers = [server.strip() for server in raw.split(",") if server.strip()]
    if not servers:
        raise ConfigError(f"{name} must list at least one host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} entries must be host:port, got {server!r}")
    return ",".join(servers)


def _patterns(name: str, raw: str) -> tuple[str, ...]:
    return tuple(pattern.strip() for pattern in raw.split(",") if pattern.strip())


def _tuning_names(name: str, raw: str) -> tuple[str, ...]:
    names = _patterns(name, raw)
    unknown = sorted(set(names) - TUNING_NAMES)
    if unknown:
        raise ConfigError(f"{name} names no tuning called {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(TUNING_NAMES))})")
    return names


@dataclass(frozen=True)
class ApiKey:
    """A client credential: a name that is safe to log, the secret, and the topic patterns it may write."""

    name: str
    secret: str = field(repr=False)
    topics: tuple[str, ...] = ("*",)


def _api_keys(name: str, raw: str) -> tuple[ApiKey, ...]:
    """Parse `[{"name": ..., "key": ..., "topics": ["glob", ...]}, ...]`; errors never quote a key."""
    try:
        entries = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"{name} must be a JSON list of {{name, key, topics}} objects: {error}") from None
    if not isinstance(entries, list):
        raise ConfigError(f"{name} must be a JSON list of {{name, key, topics}} objects")
    keys = []
    for index, entry in enumerate(entries):
        where = f"{name} entry {index}"
        if not isinstance(entry, dict) or set(entry) - {"name", "key", "topics"}:
            raise ConfigError(f"{where} must be an object with name, key and topics")
        key_name, secret, topics = entry.get("name"), entry.get("key"), entry.get("topics", ["*"])
        if not isinstance(key_name, str) or not key_name.strip():
            raise ConfigError(f"{where} needs a non-empty name")
        if not isinstance(secret, str) or len(secret) < 16:
            raise ConfigError(f"{where} ({key_name}) needs a key of at least 16 characters")
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t for t in topics):
            raise ConfigError(f"{where} ({key_name}) needs topics: a non-empty list of topic patterns")
        keys.append(ApiKey(key_name.strip(), secret, tuple(topics)))
    if len({key.name for key in keys}) != len(keys) or len({key.secret for key in keys}) != len(keys):
        raise ConfigError(f"{name} names and keys must each be unique")
    return tuple(keys)


def _read_api_keys_file(name: str, path: str) -> tuple[ApiKey, ...]:
    try:
        raw = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path}: {error.strerror}") from None
    return _api_keys(name, raw)


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
    # No linger and at most 2 produce requests in flight per broker: a lone request leaves at once, and under load
    # what arrives while 2 requests are in flight waits and leaves together (docs/performance.md).
    linger_ms: int = field(default=0, metadata={"env": "KAFKA_LINGER_MS"})
    max_in_flight: int = field(default=2, metadata={"env": "KAFKA_MAX_IN_FLIGHT_REQUESTS"})
    batch_size: int = field(default=16384, metadata={"env": "KAFKA_BATCH_SIZE"})
    compression_type: str = field(default="none", metadata={"env": "KAFKA_COMPRESSION_TYPE"})
    max_request_size: int = field(default=1048576, metadata={"env": "KAFKA_MAX_REQUEST_SIZE"})
    max_block_ms: int = field(default=5000, metadata={"env": "KAFKA_MAX_BLOCK_MS"})
    request_timeout_ms: int = field(default=5000, metadata={"env": "KAFKA_REQUEST_TIMEOUT_MS"})
    delivery_timeout_ms: int = field(default=9500, metadata={"env": "KAFKA_DELIVERY_TIMEOUT_MS"})
    health_timeout_ms: int = field(default=2000, metadata={"env": "KAFKA_HEALTH_TIMEOUT_MS"})
    close_timeout_ms: int = field(default=10000, metadata={"env": "KAFKA_CLOSE_TIMEOUT_MS"})
    # Kafka connection security
    security_protocol: str = field(default="PLAINTEXT", metadata={"env": "KAFKA_SECURITY_PROTOCOL"})
    sasl_mechanism: str | None = field(default=None, metadata={"env": "KAFKA_SASL_MECHANISM"})
    sasl_username: str | None = field(default=None, metadata={"env": "KAFKA_SASL_USERNAME"})
    # Never shown: repr=False keeps it out of repr(settings), and so out of logs and tracebacks.
    sasl_password: str | None = field(default=None, repr=False, metadata={"env": "KAFKA_SASL_PASSWORD"})
    sasl_password_file: str | None = field(default=None, metadata={"env": "KAFKA_SASL_PASSWORD_FILE"})
    ssl_cafile: str | None = field(default=None, metadata={"env": "KAFKA_SSL_CAFILE"})
    ssl_certfile: str | None = field(default=None, metadata={"env": "KAFKA_SSL_CERTFILE"})
    ssl_keyfile: str | None = field(default=None, metadata={"env": "KAFKA_SSL_KEYFILE"})
    ssl_key_password: str | None = field(default=None, repr=False, metadata={"env": "KAFKA_SSL_KEY_PASSWORD"})
    ssl_key_password_file: str | None = field(default=None, metadata={"env": "KAFKA_SSL_KEY_PASSWORD_FILE"})
    ssl_check_hostname: bool = field(default=True, metadata={"env": "KAFKA_SSL_CHECK_HOSTNAME"})
    # HTTP service
    host: str = field(default="0.0.0.0", metadata={"env": "PRODUCER_HOST"})
    port: int = field(default=8001, metadata={"env": "PRODUCER_PORT"})
    workers: int = field(default=2, metadata={"env": "PRODUCER_WORKERS"})
    # gevent: up to PRODUCER_WORKER_CONNECTIONS connections on greenlets in one thread per worker; gthread:
    # PRODUCER_THREADS requests at once on threads. gevent is the default: it serves more single messages with a
    # lower p99 (docs/performance.md).
    worker_class: str = field(default="gevent", metadata={"env": "PRODUCER_WORKER_CLASS"})
    threads: int = field(default=16, metadata={"env": "PRODUCER_THREADS"})
    worker_connections: int = field(default=1000, metadata={"env": "PRODUCER_WORKER_CONNECTIONS"})
    graceful_timeout: int = field(default=30, metadata={"env": "PRODUCER_GRACEFUL_TIMEOUT"})
    client_timeout_s: int = field(default=10, metadata={"env": "PRODUCER_CLIENT_TIMEOUT"})
    max_body_bytes: int = field(default=5 * 1024 * 1024, metadata={"env": "PRODUCER_MAX_BODY_BYTES"})
    max_batch_messages: int = field(default=5000, metadata={"env": "PRODUCER_MAX_BATCH_MESSAGES"})
    max_pending_messages: int = field(default=20000, metadata={"env": "PRODUCER_MAX_PENDING_MESSAGES"})
    log_level: str = field(default="info", metadata={"env": "LOG_LEVEL"})
    metrics_multiproc_dir: str | None = field(default=None, metadata={"env": "METRICS_MULTIPROC_DIR"})
    # Who may write where
    api_keys: tuple[ApiKey, ...] = field(default=(), repr=False, metadata={"env": "PRODUCER_API_KEYS"})
    api_keys_file: str | None = field(default=None, metadata={"env": "PRODUCER_API_KEYS_FILE"})
    topic_allow: tuple[str, ...] = field(default=("*",), metadata={"env": "PRODUCER_TOPIC_ALLOW"})
    topic_deny: tuple[str, ...] = field(default=("__*",), metadata={"env": "PRODUCER_TOPIC_DENY"})
    protect_docs: bool = field(default=False, metadata={"env": "PRODUCER_PROTECT_DOCS"})
    protect_metrics: bool = field(default=False, metadata={"env": "PRODUCER_PROTECT_METRICS"})
    # Changes to libraries' internals (producer_api/tuning.py, docs/tuning.md): all of them, or none
    tuning: bool = field(default=True, metadata={"env": "PRODUCER_TUNING"})
    tuning_skip: tuple[str, ...] = field(default=(), metadata={"env": "PRODUCER_TUNING_SKIP"})

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
        if "api_keys_file" in values:
            # Read once, here at start-up; the file wins over PRODUCER_API_KEYS.
            values["api_keys"] = _read_api_keys_file("PRODUCER_API_KEYS_FILE", values["api_keys_file"])
        if "sasl_password_file" in values:
            # Read once, here at start-up; the file wins over KAFKA_SASL_PASSWORD.
            values["sasl_password"] = _read_password_file("KAFKA_SASL_PASSWORD_FILE", values["sasl_password_file"])
        if "ssl_key_password_file" in values:
            # Read once, here at start-up; the file wins over KAFKA_SSL_KEY_PASSWORD.
            values["ssl_key_password"] = _read_password_file("KAFKA_SSL_KEY_PASSWORD_FILE",
                                                             values["ssl_key_password_file"])
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
        # On SIGTERM a worker first lets its requests finish, then flushes, all within the graceful timeout, after
        # which gunicorn kills it: a request still waiting on Kafka, or a client still silent, must leave the flush
        # its whole timeout.
        drain_ms = round(max(self.longest_request_s, self.client_timeout_s + STOP_KEEPALIVE_LINGER_S) * 1000)
        if self.close_timeout_ms + drain_ms >= self.graceful_timeout * 1000:
            raise ConfigError(
                "KAFKA_CLOSE_TIMEOUT_MS plus the longest a stopping worker waits for its requests (KAFKA_MAX_BLOCK_MS "
                "+ KAFKA_DELIVERY_TIMEOUT_MS + 4250 ms, or PRODUCER_CLIENT_TIMEOUT + 2 s) must be below "
                "PRODUCER_GRACEFUL_TIMEOUT, so that the producer is flushed before gunicorn kills the worker (got "
                f"{self.close_timeout_ms} + {drain_ms} ms and {self.graceful_timeout} s)"
            )
        for name, protected in (("PRODUCER_PROTECT_DOCS", self.protect_docs),
                                ("PRODUCER_PROTECT_METRICS", self.protect_metrics)):
            if protected and not self.api_keys:
                raise ConfigError(f"{name} is true but no API key is configured (PRODUCER_API_KEYS or "
                                  "PRODUCER_API_KEYS_FILE), so it would protect nothing")
        if not self.topic_allow:
            raise ConfigError("PRODUCER_TOPIC_ALLOW names no topic pattern, so every topic would be refused "
                              "(leave it unset to allow all: *)")
        package = _COMPRESSION_PACKAGES.get(self.compression_type)
        if package is not None and not any(importlib.util.find_spec(module) for module in package[0]):
            raise ConfigError(f"KAFKA_COMPRESSION_TYPE {self.compression_type} needs the Python package "
                              f"{package[1]}, which is not installed (pip install {package[1]} into the service's "
                              "environment, or choose none or gzip)")
        if self.max_pending_messages < self.max_batch_messages:
            # A batch the pending limit can never hold would be told to retry (429) for ever.
            raise ConfigError(
                "PRODUCER_MAX_PENDING_MESSAGES must be at least PRODUCER_MAX_BATCH_MESSAGES, or the largest "
                f"batches could never be sent (got {self.max_pending_messages} and {self.max_batch_messages})"
            )
        self._check_security()

    def _check_security(self) -> None:
        protocol = self.security_protocol
        sasl = {"KAFKA_SASL_MECHANISM": self.sasl_mechanism, "KAFKA_SASL_USERNAME": self.sasl_username,
                "KAFKA_SASL_PASSWORD": self.sasl_password, "KAFKA_SASL_PASSWORD_FILE": self.sasl_password_file}
        tls_files = {"KAFKA_SSL_CAFILE": self.ssl_cafile, "KAFKA_SSL_CERTFILE": self.ssl_certfile,
                     "KAFKA_SSL_KEYFILE": self.ssl_keyfile, "KAFKA_SSL_KEY_PASSWORD_FILE": self.ssl_key_password_file}
        if protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ConfigError(f"KAFKA_SASL_MECHANISM must be set when KAFKA_SECURITY_PROTOCOL is {protocol} "
                                  f"(one of {', '.join(SASL_MECHANISMS)})")
            if not self.sasl_username:
                raise ConfigError(f"KAFKA_SASL_USERNAME must be set when KAFKA_SECURITY_PROTOCOL is {protocol}")
            if not self.sasl_password:
                raise ConfigError("KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE must be set when "
                                  f"KAFKA_SECURITY_PROTOCOL is {protocol}")
        else:
            # Credentials given for a protocol that would not use them: most likely the protocol was forgotten.
            for name, value in sasl.items():
                if value is not None:
                    raise ConfigError(f"{name} is set but KAFKA_SECURITY_PROTOCOL is {protocol}, which does not use "
                                      "SASL; set KAFKA_SECURITY_PROTOCOL to SASL_PLAINTEXT or SASL_SSL")
        if not protocol.endswith("SSL"):
            for name, value in {**tls_files, "KAFKA_SSL_KEY_PASSWORD": self.ssl_key_password}.items():
                if value is not None:
                    raise ConfigError(f"{name} is set but KAFKA_SECURITY_PROTOCOL is {protocol}, which does not use "
                                      "TLS; set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE, the certificate it belongs to")
        if self.ssl_key_password is not None and self.ssl_certfile is None:
            raise ConfigError("KAFKA_SSL_KEY_PASSWORD is set without KAFKA_SSL_CERTFILE, whose key it decrypts")
        for name, path in {**tls_files, "KAFKA_SASL_PASSWORD_FILE": self.sasl_password_file}.items():
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name} names {path!r}, which is not a file")
        # What OpenSSL would refuse at every connection attempt, refused once here with the variable named.
        for name, path, marker in (("KAFKA_SSL_CAFILE", self.ssl_cafile, "CERTIFICATE-----"),
                                   ("KAFKA_SSL_CERTFILE", self.ssl_certfile, "CERTIFICATE-----"),
                                   ("KAFKA_SSL_KEYFILE", self.ssl_keyfile, "PRIVATE KEY-----")):
            if path is not None and marker not in _pem_head(path):
                raise ConfigError(f"{name} names {path!r}, which holds no PEM {marker.removesuffix('-----').lower()} "
                                  f"(a file starting with -----BEGIN ...{marker})")

    @property
    def metadata_wait_s(self) -> float:
        """The longest a produce request waits before its messages go out (an atomic batch's transaction start too).

        A second's check that Kafka answers, the wait for metadata, another second's check.
        """
        return 1.0 + self.max_block_ms / 1000 + 1.0

    @property
    def produce_wait_s(self) -> float:
        """The longest any produce request, atomic batches included, waits on Kafka: metadata, then delivery."""
        return self.metadata_wait_s + self.delivery_timeout_ms / 1000 + 0.25

    @property
    def longest_request_s(self) -> float:
        """The longest a produce request can take once a stopping worker has stopped accepting.

        Up to the keep-alive linger of a stopping gthread worker for it to arrive, then its wait on Kafka.
        """
        return STOP_KEEPALIVE_LINGER_S + self.produce_wait_s


_PARSERS = {
    "bootstrap_servers": _bootstrap_servers,
    "client_id": lambda name, raw: raw,
    "api_version": _api_version,
    "linger_ms": lambda name, raw: _integer(name, raw, 0, 60000),
    "max_in_flight": lambda name, raw: _integer(name, raw, 1, 5),  # idempotence keeps order only up to 5
    "batch_size": lambda name, raw: _integer(name, raw, 1),
    "compression_type": lambda name, raw: _choice(name, raw, COMPRESSION_TYPES),
    "max_request_size": lambda name, raw: _integer(name, raw, 1024),
    "max_block_ms": lambda name, raw: _integer(name, raw, 100, 120000),
    "request_timeout_ms": lambda name, raw: _integer(name, raw, 100, 120000),
    "delivery_timeout_ms": lambda name, raw: _integer(name, raw, 100, 300000),
    "health_timeout_ms": lambda name, raw: _integer(name, raw, 100, 2900),
    "close_timeout_ms": lambda name, raw: _integer(name, raw, 0, 600000),
    "security_protocol": lambda name, raw: _choice(name, raw, SECURITY_PROTOCOLS),
    "sasl_mechanism": lambda name, raw: _choice(name, raw, SASL_MECHANISMS),
    "sasl_username": lambda name, raw: raw,
    "sasl_password": lambda name, raw: raw,
    "sasl_password_file": lambda name, raw: raw,
    "ssl_cafile": lambda name, raw: raw,
    "ssl_certfile": lambda name, raw: raw,
    "ssl_keyfile": lambda name, raw: raw,
    "ssl_key_password": lambda name, raw: raw,
    "ssl_key_password_file": lambda name, raw: raw,
    "ssl_check_hostname": _boolean,
    "api_keys": _api_keys,
    "api_keys_file": lambda name, raw: raw,
    "topic_allow": _patterns,
    "topic_deny": _patterns,
    "protect_docs": _boolean,
    "protect_metrics": _boolean,
    "tuning": _boolean,
    "tuning_skip": _tuning_names,
    "host": lambda name, raw: raw,
    "port": lambda name, raw: _integer(name, raw, 1, 65535),
    "workers": lambda name, raw: _integer(name, raw, 1, 64),
    "worker_class": lambda name, raw: _choice(name, raw, WORKER_CLASSES),
    "threads": lambda name, raw: _integer(name, raw, 1, 256),
    "worker_connections": lambda name, raw: _integer(name, raw, 1, 100000),
    "graceful_timeout": lambda name, raw: _integer(name, raw, 1, 600),
    "client_timeout_s": lambda name, raw: _integer(name, raw, 1, 3600),
    "max_body_bytes": lambda name, raw: _integer(name, raw, 1024),
    "max_batch_messages": lambda name, raw: _integer(name, raw, 1),
    "max_pending_messages": lambda name, raw: _integer(name, raw, 1),
    "log_level": lambda name, raw: _choice(name, raw, ("debug", "info", "warning", "error", "critical")),
    "metrics_multiproc_dir": lambda name, raw: raw,
}
