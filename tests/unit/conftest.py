"""Unit-test fixtures: the app with a fake producer, so no broker is needed."""

import socket

import pytest

from producer_api import create_app
from producer_api.errors import APIError
from producer_api.kafka_producer import Delivery


class FakeProducer:
    """Stands in for MessageProducer: records what it was asked to send and answers as told."""

    def __init__(self):
        self.sent = []
        self.connected = True
        self.fail_with: dict[int, APIError] = {}
        self.raise_before_send: APIError | None = None
        self.last_call = None

    def send_all(self, messages, wait=True):
        if self.raise_before_send is not None:
            raise self.raise_before_send
        self.last_call = "wait" if wait else "queue"
        deliveries = []
        for index, message in enumerate(messages):
            if index in self.fail_with:
                deliveries.append(Delivery(message, error=self.fail_with[index]))
            else:
                self.sent.append(message)
                offset = len(self.sent) - 1
                deliveries.append(Delivery(message, partition=0, offset=offset) if wait else Delivery(message))
        return deliveries

    def send_atomic(self, messages):
        deliveries = self.send_all(messages)
        self.last_call = "atomic"
        return deliveries

    def is_connected(self, timeout):
        return self.connected


@pytest.fixture
def producer():
    """A fake producer that records sent messages."""
    return FakeProducer()


@pytest.fixture
def app(make_settings, producer):
    """The app wired to the fake producer, with small limits so limit tests stay small."""
    return create_app(make_settings(max_body_bytes=64 * 1024, max_batch_messages=10), producer=producer)


@pytest.fixture
def client(app):
    """A Flask test client for the app."""
    return app.test_client()


def received(sock: socket.socket) -> bytes:
    """Everything a socket has received so far, without waiting for more."""
    sock.setblocking(False)
    chunks = []
    while True:
        try:
            chunks.append(sock.recv(1 << 20))
        except BlockingIOError:
            return b"".join(chunks)
