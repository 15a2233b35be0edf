"""kafka-python's KafkaProducer as the service builds it: its options, and its changes to kafka-python.

Every change here reaches into the pinned kafka-python version's internals; tests/unit/test_kafka_client.py
checks each against that version.
"""

from __future__ import annotations

import functools
import logging
import select
import selectors
import socket
import time
from contextlib import contextmanager

import kafka.errors as kafka_errors
from kafka import KafkaProducer
from kafka.net.transport import KafkaTCPTransport
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

from producer_api.config import Settings
from producer_api.logs import ThrottledLog

log = logging.getLogger(__package__)
# kafka-python builds a TLS context, and so asks for the key's pass phrase, at every connection attempt.
_KEY_PASSWORD_LOG = ThrottledLog(log, interval_s=60.0)


def _io_selector() -> type:
    """The selector class for kafka-python's I/O loop, chosen when a producer is built: after gevent's patching
    (producer_api/green.py) epoll is gone and gevent's own selector is the one that lets other greenlets run."""
    if hasattr(select, "epoll") and hasattr(selectors, "EpollSelector"):
        from producer_api.selector import DeferredUnregisterSelector  # defined on epoll, so only where it exists

        return DeferredUnregisterSelector
    return selectors.DefaultSelector  # gevent's; on macOS and the BSDs kafka-python's default


MAX_CACHED_KEY_BYTES = 256  # keys are cached with their hash: at most 4,096 x 256 bytes


@functools.lru_cache(maxsize=4096)
def _cached_key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


class KeyHashCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner, with the murmur2 hash of recent keys remembered.

    The hash is pure Python, 3 us for an 8-byte key, and the default partitioner also builds two partition lists
    per message: together about a quarter of send()'s cost here. Keys go to the same partitions as with the
    default (and the Java client); messages without a key are placed exactly as the default does.
    """

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        """The partition for a message: its key's hash modulo the topic's partitions, as kafka-python does."""
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        return _partition_for_key(bytes(serialized_key), sorted(partitions))


def _partition_for_key(key: bytes, partitions: list[int]) -> int:
    """The partition the default partitioner (kafka-python's and the Java client's) gives a key: murmur2 modulo."""
    key_hash = _cached_key_hash(key) if len(key) <= MAX_CACHED_KEY_BYTES else murmur2(key) & 0x7FFFFFFF
    return partitions[key_hash % len(partitions)]


def _producer_config(settings: Settings) -> dict:
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
        # kafka-python's own metrics cost the I/O thread about 5 us a message and nothing here reads them.
        "metrics_enabled": False,
        "partitioner": KeyHashCachingPartitioner(),
        "selector": _io_selector(),
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


class _CoalescedWakeup:
    """Wakes kafka-python's I/O thread with one byte however many threads ask before it next looks.

    kafka-python 3.0.12 wakes its I/O thread (a byte on a socketpair) after every send() that finds more than one
    batch queued for its partition, which under load is nearly every send(): a system call in the sending thread
    and a turn of the I/O loop for each message, about a third of the client's CPU per message here. A wake-up
    asked for while an earlier byte is still unread changes nothing the I/O thread would see, so it is skipped.
    The flag is cleared just after the I/O thread read the byte; whatever a skipped wake-up was for was done
    before that, so the loop turn that follows the read sees it.
    """

    def __init__(self, selector):
        self._selector = selector
        self._unread = False
        self._process_events = selector._process_events
        selector.wakeup = self.wakeup
        selector._process_events = self.process_events

    def wakeup(self) -> None:
        """Write the wake-up byte unless one is already waiting to be read."""
        if self._unread:
            return
        self._unread = True
        try:
            self._selector._wakeup_w.send(b"\x00")
        except OSError:  # full (cannot happen with one byte at a time) or closed: ignored, as kafka-python does
            self._unread = False  # no byte went out, so the next wake-up must try again

    def process_events(self, events) -> None:
        """Let kafka-python handle the ready sockets; once it has read the wake-up byte, clear the flag."""
        wakeup_socket = self._selector._wakeup_r
        woken = any(key.fileobj is wakeup_socket for key, _ in events)
        self._process_events(events)
        if woken:
            # Only after the read: cleared before it, a byte written in between would be read with the flag
            # still set, and the wake-ups skipped after that read would wait for a byte nobody writes.
            self._unread = False


async def _write_to_sock_sending_first(self) -> None:
    """kafka-python's KafkaTCPTransport._write_to_sock, trying the send before waiting for the socket.

    kafka-python 3.0.12 waits for the socket to be writable before every request it sends, although a connected
    socket almost always is: one more turn of its I/O loop (about 150 us of CPU here) and two epoll changes per
    produce request, a tenth of a single message's cost. This tries the send first and waits only for what the
    socket did not take. Writes start only once the connection (and its TLS handshake) is complete.
    """
    try:
        while self._write_buffer:
            total_bytes, err = self._sock_send()
            if err:
                return self.abort(error=err)
            if total_bytes:
                self.last_write = time.monotonic()
                if self._protocol and self._protocol._sensors:
                    self._protocol._sensors.bytes_sent.record(total_bytes)
            if self._write_buffer:
                await self._net.wait_write(self._sock)
    finally:
        self._writing = False
    if self._closed:
        self._close()
    elif not self._write:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


_RECEIVE_SIZE = 4096  # as kafka-python reads


def _sock_recv_until_short(self) -> tuple[bytes, Exception | None]:
    """kafka-python's KafkaTCPTransport._sock_recv, stopping at a read shorter than asked for.

    kafka-python 3.0.12 reads a readable socket until a read fails with EAGAIN: one more system call and one
    more raised exception for every response, and the system call lets go of the GIL, which the I/O thread then
    queues for behind the request threads before it can handle the response. A read that returns less than
    asked for has emptied the socket's buffer when it ran; what arrives after it makes the socket readable again,
    and the next select() reports it. (The TLS transport has its own reader, which must read on: the TLS layer can
    hold decrypted bytes the socket no longer shows.)
    """
    received = []
    while True:
        try:
            data = self._sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            break
        except Exception as error:  # noqa: BLE001 - kafka-python's reader turns this into closing the connection
            log.exception("%s: Error receiving network data closing socket", self)
            return b"".join(received), kafka_errors.KafkaConnectionError(error)
        if not data:
            log.error("%s: socket disconnected", self)
            return b"".join(received), kafka_errors.KafkaConnectionError("socket disconnected")
        received.append(data)
        if len(data) < _RECEIVE_SIZE:
            break
    return b"".join(received), None


# Every connection of kafka-python in this process (pinned version), the SSL transport's included.
_write_to_sock_as_shipped = KafkaTCPTransport._write_to_sock  # the benchmark's ceiling A0 puts it back
KafkaTCPTransport._write_to_sock = _write_to_sock_sending_first
# Plain-TCP connections only: KafkaSSLTransport overrides _sock_recv with its own.
_sock_recv_as_shipped = KafkaTCPTransport._sock_recv
KafkaTCPTransport._sock_recv = _sock_recv_until_short


def _new_kafka_producer(settings: Settings, **options) -> KafkaProducer:
    """A KafkaProducer with the service's settings, wake-ups coalesced and no spinning (pinned version)."""
    producer = KafkaProducer(**_producer_config(settings), **options)
    network = producer._sender._client._net
    _CoalescedWakeup(network)
    _wait_while_requests_fill_the_connection(producer._sender._client)
    return producer


def _wait_while_requests_fill_the_connection(client) -> None:
    """Make kafka-python's I/O thread wait for a response, not spin, while a broker has all the requests it may.

    kafka-python 3.0.12 stops sending to a connection that has max_in_flight_requests_per_connection requests
    unanswered, and then asks connection_delay() how long to wait before it tries again. For a connected broker
    that answers 0 (kafka-python 2 answered "as long as it takes"), so the I/O thread polls with no timeout and
    turns its loop without a pause until a response comes: under load, whenever data waits behind the requests
    in flight. The wait still ends at once when a response arrives, a batch expires or a timer is due.
    """
    manager, connection_delay = client._manager, client.connection_delay

    def connection_delay_not_zero_when_connected(node_id):
        connection = manager._conns.get(node_id)
        if connection is not None and connection.connected:
            return float("inf")
        return connection_delay(node_id)

    client.connection_delay = connection_delay_not_zero_when_connected


def _end_transaction(producer: KafkaProducer, commit: bool, timeout_s: float) -> None:
    """commit_transaction() or abort_transaction(), but waiting at most timeout_s (pinned version).

    kafka-python 3.0.12 waits for the coordinator's answer to either with no timeout, so a coordinator that stops
    answering would hold the request thread, and the worker's transaction lock, for good.
    """
    manager = producer._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_s * 1000):
        raise kafka_errors.KafkaTimeoutError(f"Timeout after waiting for {timeout_s:g} secs.")


@contextmanager
def _blocking_at_most(producer: KafkaProducer, seconds: float):
    """Within the block, let init_transactions() and send() wait for Kafka at most seconds (pinned version).

    kafka-python reads max_block_ms from its config at each of those calls; an atomic batch shares one deadline
    among them. Only the thread holding the worker's transaction lock uses the transactional producer.
    """
    configured = producer.config["max_block_ms"]
    producer.config["max_block_ms"] = max(1, min(configured, round(seconds * 1000)))
    try:
        yield
    finally:
        producer.config["max_block_ms"] = configured


def _has_fatal_error(producer: KafkaProducer) -> bool:
    """Whether kafka-python has put this idempotent producer in a state it never leaves (pinned version)."""
    manager = producer._transaction_manager
    return manager is not None and manager.has_fatal_error()


def _close_quietly(producer: KafkaProducer, timeout: float) -> None:
    """Close a producer within the timeout; if its queue cannot be flushed in time, stop its I/O thread anyway."""
    try:
        producer.close(timeout=timeout)
    except kafka_errors.KafkaError as error:
        log.warning("Kafka producer could not flush within %.1f s (%s); closing it anyway", timeout, error)
        producer._sender.force_close()  # kafka-python's close() gives up before stopping its thread when flush fails
