"""Headers and body in one send: the same bytes as gunicorn writes, in one system call."""

import re
import socket
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from producer_api.server.tuning import headers_with_body
from tests.unit.conftest import received


class CountingSocket:
    """A socket that counts the sendall() calls made on it."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.sends = 0

    def sendall(self, data: bytes) -> None:
        self.sends += 1
        self._sock.sendall(data)


def respond(write, status: str, headers: list, body_parts: list, method: str = "POST") -> tuple[bytes, int]:
    """What a client receives for a response written with write(), and how many sendall() calls it took."""
    ours, peer = socket.socketpair()
    counting = CountingSocket(ours)
    request = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    response = wsgi.Response(request, counting, Config())
    response.start_response(status, headers)
    for part in body_parts:
        write(response, part)
    response.close()
    data = received(peer)
    ours.close()
    peer.close()
    return re.sub(rb"Date: [^\r]*\r\n", b"", data), counting.sends  # the clock may tick between the two


@pytest.mark.parametrize("status, headers, body_parts, method, shipped_sends, our_sends", [
    ("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")], [b'{"ok":true}'], "POST", 2, 1),
    ("200 OK", [("Content-Length", "6")], [b"abc", b"def"], "POST", 3, 2),  # later writes as gunicorn's
    ("200 OK", [("Content-Type", "text/plain")], [b"chunk one", b"chunk two"], "POST", 4, 4),  # chunked
    ("204 No Content", [], [b""], "POST", 1, 1),
    ("200 OK", [("Content-Length", "4")], [b"body"], "HEAD", 1, 1),
    ("200 OK", [("Content-Length", "3")], [b"abcdef"], "POST", 2, 2),  # longer than announced: cut by gunicorn
    ("200 OK", [("Content-Length", "16384")], [b"x" * 16384], "POST", 2, 1),
    ("200 OK", [("Content-Length", "16385")], [b"x" * 16385], "POST", 2, 2),  # too large to copy behind headers
])
def test_responses_are_the_bytes_gunicorn_sends(status, headers, body_parts, method, shipped_sends, our_sends):
    shipped, shipped_count = respond(headers_with_body._write_as_shipped, status, headers, body_parts, method)
    ours, our_count = respond(headers_with_body._write_headers_with_body, status, headers, body_parts, method)
    assert ours == shipped
    assert (shipped_count, our_count) == (shipped_sends, our_sends)


def test_install_replaces_gunicorns_write(monkeypatch):
    monkeypatch.setattr(wsgi.Response, "write", headers_with_body._write_as_shipped)
    assert headers_with_body.install() is True
    assert wsgi.Response.write is headers_with_body._write_headers_with_body
