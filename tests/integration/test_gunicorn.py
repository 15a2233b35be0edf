"""The service as deployed: gunicorn with gunicorn.conf.py, a producer per worker from post_fork, the seed's curls."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

import pytest

from producer_api.config import WORKER_CLASSES
from tests.integration.conftest import http, tuning_applied

SEED_SINGLE = """{
    "topic": "%s",
    "key": "message-1",
    "message": {
      "user_id": 123,
      "action": "login",
      "data": "Hello from API!"
    },
    "partition": 0
  }"""


@pytest.fixture(params=WORKER_CLASSES)
def service(request, broker, start_gunicorn):
    """The service under gunicorn with each worker class, writing to the test broker."""
    return start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=request.param)


@pytest.mark.stock_path
def test_seed_root_and_health(service):
    status, _, body = http("GET", service.url + "/")
    assert status == 200
    assert body == {"message": "Kafka Producer API Server", "version": "1.0.0",
                    "endpoints": {"health": "/health", "produce": "/produce", "docs": "/docs"}}
    status, _, body = http("GET", service.url + "/health")
    assert status == 200
    assert body["status"] == "healthy" and body["kafka_connected"] is True


@pytest.mark.stock_path
def test_seed_single_message_is_read_back(service, new_topic, read_topic):
    topic = new_topic()
    status, _, body = http("POST", service.url + "/produce", SEED_SINGLE % topic,
                           {"Content-Type": "application/json"})
    assert status == 200, body
    assert body["success"] is True and body["partition"] == 0 and body["message"] == "Message sent successfully"
    [record] = read_topic(topic, 1)
    assert (record.partition, record.offset, record.key) == (0, body["offset"], b"message-1")
    assert json.loads(record.value)["data"] == "Hello from API!"


@pytest.mark.stock_path
def test_seed_batch_without_content_type_is_read_back(service, new_topic, read_topic):
    topic = new_topic()
    batch = json.dumps([{"topic": topic, "message": {"id": 1}}, {"topic": topic, "message": {"id": 2}}])
    status, _, body = http("POST", service.url + "/produce/batch", batch)
    assert status == 200, body
    assert body["messages_sent"] == 2
    records = read_topic(topic, 2)
    assert sorted(json.loads(record.value)["id"] for record in records) == [1, 2]
    assert {(r["partition"], r["offset"]) for r in body["results"]} == {(r.partition, r.offset) for r in records}


@pytest.mark.stock_path
def test_concurrent_requests_on_both_workers_are_all_in_kafka(service, new_topic, read_topic):
    from concurrent.futures import ThreadPoolExecutor

    topic = new_topic()

    def send(n):
        return http("POST", service.url + "/produce", json.dumps({"topic": topic, "message": {"n": n}}))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(200)))
    assert all(status == 200 for status, _, _ in results)
    acknowledged = {(body["partition"], body["offset"]) for _, _, body in results}
    records = read_topic(topic, 200)
    assert len(records) == 200
    assert {(record.partition, record.offset) for record in records} == acknowledged
    assert sorted(json.loads(record.value)["n"] for record in records) == list(range(200))


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/produce", '{"invalid": "json"', 400),
        ("POST", "/produce", '{"topic": "test-topic"}', 422),
        ("GET", "/nowhere", None, 404),
        ("DELETE", "/produce", None, 405),
        ("POST", "/produce", '{"topic": "t", "message": {"x": "' + "y" * 6000 + '"}}', 413),
        ("POST", "/produce/batch", '[' + ', '.join(['{"topic": "t", "message": {}}'] * 4) + ']', 422),
    ],
)
def test_errors_are_json_with_detail(broker, start_gunicorn, method, path, body, status):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_MAX_BODY_BYTES="4096", PRODUCER_MAX_BATCH_MESSAGES="3")
    got, headers, payload = http(method, service.url + path, body)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert isinstance(payload, dict) and payload["detail"]


def test_docs_and_openapi(service):
    status, headers, page = http("GET", service.url + "/docs")
    assert status == 200 and "swagger-ui-bundle.js" in page
    status, _, spec = http("GET", service.url + "/openapi.json")
    assert status == 200 and "/produce/batch" in spec["paths"]


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_broker_down_at_start_workers_still_boot_and_answer_503(start_gunicorn, worker_class):
    service = start_gunicorn("127.0.0.1:1", KAFKA_MAX_BLOCK_MS="1000", PRODUCER_WORKER_CLASS=worker_class)
    started = time.monotonic()
    status, _, body = http("GET", service.url + "/health")
    assert status == 503 and body["kafka_connected"] is False
    assert time.monotonic() - started < 3.0
    status, headers, body = http("POST", service.url + "/produce", '{"topic": "t", "message": {}}')
    assert status == 503 and headers["Retry-After"] and body["detail"]


@pytest.mark.stock_path
def test_sigterm_flushes_and_exits_within_the_graceful_timeout(service):
    http("GET", service.url + "/health")
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=35) == 0, service.log()
    assert service.log().count("Kafka producer flushed and closed") == 2, service.log()


def test_a_stopping_worker_lets_idle_kept_alive_connections_go_within_seconds(service):
    # config.py counts on it: the flush after SIGTERM keeps its time within the graceful timeout only if a stopping
    # worker does not wait out the keep-alive time of each idle connection and serve what comes meanwhile.
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    connection = HTTPConnection(host, int(port), timeout=15)
    connection.request("GET", "/")
    connection.getresponse().read()
    service.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert connection.sock.recv(1) == b""  # closed by the worker, without an answer
    assert time.monotonic() - started < 4
    connection.close()
    assert service.process.wait(timeout=35) == 0, service.log()


def test_bad_configuration_stops_start_up_with_the_variable_named(broker, tmp_path):
    import os
    import subprocess
    import sys

    from tests.integration.conftest import REPO_DIR

    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=REPO_DIR, env={**os.environ, "PRODUCER_WORKERS": "many"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "PRODUCER_WORKERS must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def _read_response(stream) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a socket's file, leaving what follows unread."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, stream.read(length)


def test_a_kept_alive_connection_serves_requests_at_once_after_a_pause_and_pipelined(service, new_topic,
                                                                                     read_topic):
    # A pool thread serves the next request of its connection if it follows within a moment, and hands the
    # connection back to gunicorn's poller otherwise: both paths, on one connection.
    topic = new_topic(partitions=1)
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    connection = HTTPConnection(host, int(port), timeout=30)
    try:
        offsets = []
        for n in range(6):
            if n == 3:
                time.sleep(0.2)  # far past the linger time: the poller has the connection again
            connection.request("POST", "/produce", json.dumps({"topic": topic, "message": {"n": n}}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Connection") != "close"
            offsets.append(json.loads(response.read())["offset"])
        connection.sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n" * 2)  # pipelined
        stream = connection.sock.makefile("rb")
        for _ in range(2):
            status, body = _read_response(stream)
            assert status == 200 and json.loads(body)["status"] == "healthy"
    finally:
        connection.close()
    assert offsets == list(range(6))
    assert [json.loads(record.value)["n"] for record in read_topic(topic, 6)] == list(range(6))


def test_workers_send_headers_and_body_together_and_clients_read_them(service):
    # producer_api/server/tuning/headers_with_body.py, applied in post_worker_init: every worker, and responses
    # still parse.
    assert tuning_applied(service.log()).count("headers_with_body") == 2
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = connection.makefile("rb")
        health, root = _read_response(stream), _read_response(stream)
    assert health[0] == 200 and json.loads(health[1])["status"] == "healthy"
    assert root[0] == 200 and json.loads(root[1])


def test_workers_freeze_their_start_up_objects_out_of_full_collections(service):
    # producer_api/server/heap.py, last in post_worker_init: the app, kafka-python and the producer are all loaded
    # by then.
    frozen = [int(count) for count in
              re.findall(r"(\d+) start-up objects frozen out of full garbage collections\)", service.log())]
    assert len(frozen) == 2
    assert min(frozen) > 20000  # about 50,000 here: Flask, marshmallow, kafka-python and the producer


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on a connection until it closes it (at most 10 s)."""
    sock.settimeout(10)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_stalled_clients_are_cut_off_and_never_stop_the_service(broker, start_gunicorn, new_topic, end_offsets,
                                                                 worker_class):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKERS="1", PRODUCER_THREADS="2",
                             PRODUCER_CLIENT_TIMEOUT="1", PRODUCER_WORKER_CLASS=worker_class,
                             **({"PRODUCER_WORKER_CONNECTIONS": "2"} if worker_class == "gevent" else {}))
    address = service.url.removeprefix("http://").split(":")
    topic = new_topic()
    body = json.dumps({"topic": topic, "message": {"n": 1}}).encode()
    head = b"POST /produce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    stalled_headers, stalled_bodies = [], []
    for _ in range(3):  # three times the threads (or gevent's connections): each holds one while it stalls
        stalled_headers.append(socket.create_connection((address[0], int(address[1]))))
        stalled_headers[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: headers unfinished
        stalled_bodies.append(socket.create_connection((address[0], int(address[1]))))
        stalled_bodies[-1].sendall(head % len(body) + body[:5])
    started = time.monotonic()
    status, _, _ = http("GET", service.url + "/health", timeout=15)
    assert status == 200 and time.monotonic() - started < 6
    for sock in stalled_headers:
        assert read_until_closed(sock) == b""  # closed without an answer: no request was received
        sock.close()
    for sock in stalled_bodies:
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
        assert detail == "Request body not received: the client sent nothing for 1 s (PRODUCER_CLIENT_TIMEOUT)"
        sock.close()
    # A client that closes its side mid-body is told so, not that its JSON is bad.
    with socket.create_connection((address[0], int(address[1]))) as closing:
        closing.sendall(head % len(body) + body[:5])
        closing.shutdown(socket.SHUT_WR)
        answer = read_until_closed(closing)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert f"Request body ended after 5 of the {len(body)} bytes".encode() in answer
    assert sum(end_offsets(topic).values()) == 0
    log = service.log()
    assert "closed a connection whose client sent or read nothing for too long" in log
    assert "Socket error processing request" not in log


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_client_timeout_below_the_keep_alive_time_still_keeps_idle_connections(broker, start_gunicorn,
                                                                                 worker_class):
    # PRODUCER_CLIENT_TIMEOUT bounds a client's silence mid-request; between requests keep-alive (5 s) rules.
    # A gevent worker waits for the next request on the socket that carries the client timeout: it used to cut
    # idle connections off after 1 s here, and log them as stalled clients.
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKERS="1", PRODUCER_CLIENT_TIMEOUT="1",
                             PRODUCER_WORKER_CLASS=worker_class)
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        stream = connection.makefile("rb")
        for pause in (0, 2.5, 0.5):
            time.sleep(pause)
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            status, body = _read_response(stream)
            assert status == 200 and json.loads(body)["status"] == "healthy"
        assert "closed a connection whose client sent or read nothing for too long" not in service.log()
        # A later request whose head stalls is still let go, without an answer: after the client timeout
        # (gthread) or the keep-alive time (gevent), no later than an idle connection would be.
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        assert stream.read() == b""
        assert time.monotonic() - started < 7


def test_a_client_expecting_100_continue_is_asked_for_its_body_unless_it_is_over_the_limit(service, new_topic,
                                                                                            read_topic):
    # curl sends "Expect: 100-continue" with large bodies and uploads once told "100 Continue": gunicorn said so
    # before the app ran, so a body announced over PRODUCER_MAX_BODY_BYTES (5 MiB) was uploaded only to be refused.
    assert tuning_applied(service.log()).count("no_continue_over_limit") == 2
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    head = "POST /produce HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.format(5 * 1024 * 1024 + 1).encode())
        answer = read_until_closed(connection)  # the body never sent: the answer comes anyway, then the close
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    assert detail == "Request body too large: the limit is 5242880 bytes"
    topic = new_topic()
    body = json.dumps({"topic": topic, "message": {"n": 1}}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.format(len(body)).encode())
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        status, answer = _read_response(connection.makefile("rb"))
    assert status == 200 and json.loads(answer)["topic"] == topic
    assert [json.loads(record.value)["n"] for record in read_topic(topic, 1)] == [1]


def raw_exchange(url: str, request: bytes) -> tuple[int, dict, bytes, bool]:
    """Send raw bytes, read one response; returns status, headers (lower-case names), body, and whether the
    server closed the connection after it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer: {received!r}"
            received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
        while len(body) < int(headers.get("content-length", 0)):
            body += sock.recv(65536)
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = isinstance(sys.exc_info()[1], ConnectionResetError)
        return int(status_line.split()[1]), headers, body, closed


def chunked(body: bytes, size: int = 1000) -> bytes:
    """A body in HTTP/1.1 chunked encoding."""
    pieces = [body[start:start + size] for start in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def test_bodies_and_requests_gunicorn_or_werkzeug_would_mishandle(broker, start_gunicorn, new_topic, end_offsets,
                                                                 read_topic):
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_MAX_BODY_BYTES="4096")
    topic = new_topic()
    document = json.dumps({"topic": topic, "message": {"n": 1}}).encode()
    post = b"POST /produce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    cases = {
        # A document that parses within the limit, and more past it: werkzeug alone stopped at the limit (200).
        "chunked over the limit": (post + b"Transfer-Encoding: chunked\r\n\r\n"
                                   + chunked(document + b" " * 5000 + b"garbage"), 413, True),
        "a malformed chunk": (post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, True),
        "over the limit by Content-Length": (post + b"Content-Length: 5000\r\n\r\n" + b" " * 5000, 413, True),
        "a compressed body": (post + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(document), document), 415, True),  # refused unread: closed
        # Refused by gunicorn before the app sees them: an HTML page before.
        "a header over gunicorn's limit": (post + b"X-Big: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
                                           431, True),
        "a URI over gunicorn's limit": (b"GET /health?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, True),
        "a Content-Length that is no number": (post + b"Content-Length: abc\r\n\r\n", 400, True),
    }
    for name, (request, status, closes) in cases.items():
        got, headers, body, closed = raw_exchange(service.url, request)
        assert (got, headers["content-type"]) == (status, "application/json"), (name, got, body[:300])
        assert json.loads(body)["detail"], name
        assert closed is closes and (headers.get("connection") == "close") is closes, (name, headers)
    got, _, body, closed = raw_exchange(service.url, post + b"Transfer-Encoding: chunked\r\n\r\n"
                                        + chunked(document, size=7))
    assert got == 200 and not closed, body
    assert [json.loads(record.value)["n"] for record in read_topic(topic, 1)] == [1]  # and nothing else


def test_a_start_that_fails_leaves_no_metrics_directory_behind(broker, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "PRODUCER_HOST": "127.0.0.1",
                   "PRODUCER_PORT": str(taken.getsockname()[1]), "TMPDIR": str(tmp_path)}
    with taken:
        result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                cwd=Path(__file__).resolve().parents[2], env=environment, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode != 0 and "Connection in use" in result.stderr + result.stdout
    assert list(tmp_path.glob("producer-api-metrics-*")) == []


def _urlopen_status(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    """POST body with urllib.request, which sends all of it before it reads the answer: the status and JSON."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_client_that_uploads_before_it_reads_gets_its_413_or_401(broker, start_gunicorn, new_topic, end_offsets,
                                                                  worker_class):
    # The body is refused unread, then drained (producer_api/api/lingering_close.py): without that, the close
    # reset the connection under the upload and urllib saw ConnectionResetError or BrokenPipeError, not the 413.
    keys = json.dumps([{"name": "team", "key": "0123456789abcdef-key", "topics": ["*"]}])
    service = start_gunicorn(broker.bootstrap_servers, PRODUCER_WORKER_CLASS=worker_class, PRODUCER_API_KEYS=keys)
    topic = new_topic()
    key = {"X-API-Key": "0123456789abcdef-key"}
    huge = json.dumps({"topic": topic, "message": {"blob": "y" * 20_000_000}}).encode()
    status, body = _urlopen_status(service.url + "/produce", huge, key)
    assert status == 413 and "Request body too large" in body["detail"]
    batch = json.dumps([{"topic": topic, "message": {"n": n}} for n in range(200_000)]).encode()
    assert len(batch) > 5 * 1024 * 1024
    status, body = _urlopen_status(service.url + "/produce/batch", batch, key)
    assert status == 413 and "Request body too large" in body["detail"]
    status, body = _urlopen_status(service.url + "/produce", huge)  # no key: refused before the body is read
    assert status == 401 and body["detail"].startswith("Missing API key")
    status, body = _urlopen_status(service.url + "/produce", json.dumps({"topic": topic, "message": {}}).encode(),
                                   key)
    assert status == 200  # the service still serves after draining
    time.sleep(0.5)
    assert sum(end_offsets(topic).values()) == 1  # only the last, accepted message reached Kafka
