"""gunicorn's own error answers (requests it cannot parse) as JSON {"detail": ...} instead of an HTML page."""

import json
import socket
from types import SimpleNamespace

import pytest
from gunicorn import util
from gunicorn.http.errors import InvalidRequestLine, LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.base import Worker

from producer_api.server.tuning import json_error_pages
from tests.unit.conftest import received


def answer(write_error, status: int, reason: str, mesg: str) -> tuple[list[str], bytes]:
    """The head lines and the body a client receives from write_error."""
    ours, peer = socket.socketpair()
    try:
        write_error(ours, status, reason, mesg)
        data = received(peer)
    finally:
        ours.close()
        peer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), body


@pytest.mark.parametrize(("status", "reason", "mesg", "detail"), [
    (400, "Bad Request", "Invalid Request Line 'GET'", "Bad Request: Invalid Request Line 'GET'"),
    (431, "Request Header Fields Too Large", "", "Request Header Fields Too Large"),
    (400, "Bad Request", "<script>\"quoted\"</script>", "Bad Request: <script>\"quoted\"</script>"),
])
def test_an_error_gunicorn_answers_itself_is_json_with_a_detail(status, reason, mesg, detail):
    head, body = answer(json_error_pages.write_json_error, status, reason, mesg)
    assert head[0] == f"HTTP/1.1 {status} {reason}"
    assert set(head[1:]) == {"Connection: close", "Content-Type: application/json", f"Content-Length: {len(body)}"}
    assert json.loads(body) == {"detail": detail}


def test_gunicorn_as_shipped_answers_with_an_html_page():
    head, body = answer(util.write_error, 400, "Bad Request", "Invalid Request Line 'GET'")
    assert "Content-Type: text/html" in head and body.lstrip().startswith(b"<html>")


@pytest.mark.parametrize(("error", "status"), [
    (InvalidRequestLine("GET"), 400),
    (LimitRequestLine(5000, 4094), 414),
    (LimitRequestHeaders("too many"), 431),
])
def test_once_applied_the_workers_error_path_writes_json(monkeypatch, error, status):
    monkeypatch.setattr(util, "write_error", util.write_error)  # restored after the test
    json_error_pages.apply()
    assert util.write_error is json_error_pages.write_json_error
    worker = SimpleNamespace(log=SimpleNamespace(warning=lambda *args: None, exception=lambda *args: None,
                                                 debug=lambda *args: None), cfg=None)
    ours, peer = socket.socketpair()
    try:
        Worker.handle_error(worker, None, ours, ("127.0.0.1", 1), error)  # what gunicorn does with a bad request
        head, _, body = received(peer).partition(b"\r\n\r\n")
    finally:
        ours.close()
        peer.close()
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) and isinstance(json.loads(body)["detail"], str)
