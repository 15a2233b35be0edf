"""The app's `Connection: close` closes the connection, and gunicorn's answer says so."""

import re
import socket
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from producer_api.server.tuning import close_when_asked
from tests.unit.conftest import received


def respond(headers: list) -> tuple[bytes, bool]:
    """The head a client receives for an answer with these headers, and whether gunicorn then closes."""
    ours, peer = socket.socketpair()
    try:
        request = SimpleNamespace(version=(1, 1), method="POST", should_close=lambda: False)
        response = wsgi.Response(request, ours, Config())
        response.start_response("413 Request Entity Too Large", [("Content-Length", "2"), *headers])
        response.write(b"{}")
        response.close()
        head = received(peer).partition(b"\r\n\r\n")[0]
    finally:
        ours.close()
        peer.close()
    return head, response.should_close()


@pytest.fixture
def honoured(monkeypatch):
    monkeypatch.setattr(wsgi.Response, "process_headers", wsgi.Response.process_headers)  # restored after the test
    close_when_asked.apply()
    assert wsgi.Response.process_headers is close_when_asked.process_headers_honouring_close


@pytest.mark.parametrize("value", ["close", "Close", " close "])
def test_the_apps_connection_close_closes_and_is_said(honoured, value):
    head, closes = respond([("Connection", value)])
    assert closes and re.search(rb"\r\nConnection: close\r\n", head)


def test_without_it_the_connection_is_kept_alive(honoured):
    head, closes = respond([("Content-Type", "application/json")])
    assert not closes and b"\r\nConnection: keep-alive\r\n" in head


def test_gunicorn_as_shipped_drops_the_apps_connection_close(monkeypatch):
    monkeypatch.setattr(wsgi.Response, "process_headers", close_when_asked.AS_SHIPPED)
    head, closes = respond([("Connection", "close")])
    assert not closes and b"\r\nConnection: keep-alive\r\n" in head
