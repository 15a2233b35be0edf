"""kafka-python's plain-TCP socket reads stop at a read shorter than asked for.

Replaces kafka.net.transport.KafkaTCPTransport._sock_recv for the whole process (kafka-python 3.0.12;
KafkaSSLTransport has its own reader, left as it is: the TLS layer can hold decrypted bytes the socket no longer
shows). kafka-python reads a readable socket until a read fails with EAGAIN: one more system call and one more
raised exception for every response, and the system call lets go of the GIL, which the I/O thread then queues for
behind the request threads before it can handle the response. A read that returns less than asked for has emptied
the socket's buffer when it ran; what arrives after it makes the socket readable again, and the next select()
reports it.
"""

from __future__ import annotations

import logging

import kafka.errors as kafka_errors
from kafka.net.transport import KafkaTCPTransport

log = logging.getLogger(__name__)

AS_SHIPPED = KafkaTCPTransport._sock_recv
_RECEIVE_SIZE = 4096  # as kafka-python reads


def sock_recv_until_short(self) -> tuple[bytes, Exception | None]:
    """KafkaTCPTransport._sock_recv, stopping at a read shorter than asked for."""
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
