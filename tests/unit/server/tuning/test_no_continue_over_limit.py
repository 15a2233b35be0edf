"""No "100 Continue" for a request body announced over PRODUCER_MAX_BODY_BYTES: the app refuses it unread."""

import socket

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from producer_api.server.tuning import no_continue_over_limit
from tests.unit.conftest import received

LIMIT = 1000


def continued(create, length: int | None, expect: bool = True) -> bytes:
    """What a client that sent this request's head receives once gunicorn builds the app's environ."""
    ours, peer = socket.socketpair()
    try:
        head = "POST /produce HTTP/1.1\r\nHost: t\r\n"
        head += "Expect: 100-continue\r\n" if expect else ""
        head += f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
        peer.sendall((head + "\r\n").encode())
        cfg = Config()
        request = next(RequestParser(cfg, ours, ("127.0.0.1", 1)))
        create(request, ours, ("127.0.0.1", 1), ("127.0.0.1", 8001), cfg)
        return received(peer)
    finally:
        ours.close()
        peer.close()


@pytest.mark.parametrize(("length", "asked"), [(LIMIT + 1, False), (LIMIT, True), (0, True), (None, True)])
def test_only_a_body_announced_within_the_limit_is_asked_for(length, asked):
    create = no_continue_over_limit.create_without_continue_over(LIMIT)
    assert continued(create, length) == (b"HTTP/1.1 100 Continue\r\n\r\n" if asked else b"")


def test_a_request_that_expects_nothing_is_told_nothing():
    assert continued(no_continue_over_limit.create_without_continue_over(LIMIT), 10, expect=False) == b""


def test_gunicorn_as_shipped_asks_for_any_body():
    assert continued(no_continue_over_limit.AS_SHIPPED, LIMIT + 1) == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_apply_replaces_gunicorns_create(monkeypatch):
    monkeypatch.setattr(wsgi, "create", wsgi.create)  # restored after the test
    no_continue_over_limit.apply(LIMIT)
    assert continued(wsgi.create, LIMIT + 1) == b""
