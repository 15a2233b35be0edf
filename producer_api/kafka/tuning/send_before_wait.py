"""kafka-python's socket writes try the send before waiting for the socket to be writable.

Replaces kafka.net.transport.KafkaTCPTransport._write_to_sock for the whole process (kafka-python 3.0.12), the
TLS transport's included. kafka-python waits for the socket to be writable before every request it sends,
although a connected socket almost always is: one more turn of its I/O loop and two epoll changes per produce
request. This tries the send first and waits only for what the socket did not take. Writes start only once the
connection (and its TLS handshake) is complete.
"""

from __future__ import annotations

import socket
import time

from kafka.net.transport import KafkaTCPTransport

AS_SHIPPED = KafkaTCPTransport._write_to_sock


async def write_to_sock_sending_first(self) -> None:
    """KafkaTCPTransport._write_to_sock, trying the send before waiting for the socket."""
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
