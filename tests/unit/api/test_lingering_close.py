"""The lingering close: the rest of a refused body is read and thrown away, within bounds, before the close."""

import socket
import threading

import pytest

from producer_api.api import lingering_close


@pytest.fixture
def pair():
    """A connected socket pair: the service's side and the client's."""
    service, client = socket.socketpair()
    yield service, client
    service.close()
    client.close()


def test_the_rest_of_the_body_is_drained_after_the_answer_until_the_client_closes(pair):
    service, client = pair
    service.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")

    def client_uploads_then_reads():
        client.sendall(b"x" * 3_000_000)  # more than the socket buffers hold: only a draining peer lets this end
        assert client.recv(100).startswith(b"HTTP/1.1 413")
        assert client.recv(100) == b""  # the service shut its write side: the answer is complete
        client.close()

    uploader = threading.Thread(target=client_uploads_then_reads)
    uploader.start()
    assert lingering_close.drain(service) == 3_000_000
    uploader.join(10)
    assert not uploader.is_alive()


def test_a_silent_client_is_left_after_the_silence_bound(pair, monkeypatch):
    service, client = pair
    monkeypatch.setattr(lingering_close, "MOST_SILENCE_S", 0.05)
    client.sendall(b"part of a body")
    assert lingering_close.drain(service) == len(b"part of a body")


def test_draining_stops_at_the_byte_bound(pair, monkeypatch):
    service, client = pair
    monkeypatch.setattr(lingering_close, "MOST_BYTES", 100_000)
    monkeypatch.setattr(lingering_close, "MOST_SILENCE_S", 0.5)
    def send_more_than_the_bound():
        try:
            client.sendall(b"y" * 200_000)
        except OSError:  # the service stopped reading and closed
            pass

    sender = threading.Thread(target=send_more_than_the_bound, daemon=True)
    sender.start()
    drained = lingering_close.drain(service)
    assert 100_000 <= drained < 200_000
    service.close()
    sender.join(10)


def test_draining_stops_at_the_time_bound(pair, monkeypatch):
    service, client = pair
    now = [0.0]
    monkeypatch.setattr(lingering_close, "MOST_SECONDS", 1.0)

    def clock():
        now[0] += 0.6  # each look at the clock is 0.6 s later: the second read is past the bound
        return now[0]

    client.sendall(b"a" * 10)
    assert lingering_close.drain(service, clock=clock) == 10


def test_nothing_lingers_outside_gunicorn():
    class Response:
        closers = []

        def call_on_close(self, function):
            self.closers.append(function)

    response = Response()
    lingering_close.linger_after(response, {})  # the Flask test client's environ has no gunicorn.socket
    assert response.closers == []
    lingering_close.linger_after(response, {"gunicorn.socket": object()})
    assert len(response.closers) == 1
