"""README, Dockerfile and docker-compose.yml stay in step with the code, since Docker cannot run here."""

import dataclasses
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from local_kafka import Cluster
from producer_api.config import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_configuration_guide_documents_every_environment_variable():
    # The README's table holds the variables most deployments set first and links to the guide, which has them all.
    assert "(docs/configuration.md)" in (REPO / "README.md").read_text()
    guide = (REPO / "docs" / "configuration.md").read_text()
    for setting in dataclasses.fields(Settings):
        assert f"| `{setting.metadata['env']}` |" in guide, setting.metadata["env"]


def test_compose_broker_matches_the_local_broker_settings():
    compose = (REPO / "docker-compose.yml").read_text()
    environment = dict(re.findall(r"^\s+KAFKA_([A-Z_]+): \"?([^\"\n]+)\"?$", compose, re.MULTILINE))
    local = dict(line.split("=", 1) for line in Cluster()._properties(Cluster().nodes[0]).splitlines())
    for key in ("num.partitions", "offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor",
                "share.coordinator.state.topic.min.isr", "group.initial.rebalance.delay.ms",
                "auto.create.topics.enable", "process.roles"):
        assert environment[key.upper().replace(".", "_")] == local[key], key
    assert environment["BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert "apache/kafka:4.1.1" in compose
    assert "4.1.1" in (REPO / "local_kafka" / "pom.xml").read_text()


def test_dockerfile_ships_the_service_as_gunicorn_runs_it():
    dockerfile = (REPO / "Dockerfile").read_text()
    for needed in ("COPY producer_api/ producer_api/", "wsgi.py", "gunicorn.conf.py", "-r requirements.txt",
                   "USER producer", "HEALTHCHECK", "/health"):
        assert needed in dockerfile, needed
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]' in dockerfile


class _HealthyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    """An HTTP server on a free port whose /health answers 200."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_image_health_check_asks_the_port_the_service_listens_on(health_server):
    dockerfile = (REPO / "Dockerfile").read_text()
    command = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (.+)$", dockerfile, re.MULTILINE).group(1)
    command = command.replace("python ", f"{sys.executable} ", 1)

    def check(port: str) -> int:
        environment = {**os.environ, "PRODUCER_PORT": port}
        return subprocess.run(["sh", "-c", command], env=environment, capture_output=True, timeout=10).returncode

    assert check(str(health_server)) == 0
    with socket.socket() as bound_not_listening:  # held, so no one else takes the port meanwhile
        bound_not_listening.bind(("127.0.0.1", 0))
        assert check(str(bound_not_listening.getsockname()[1])) != 0


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / name).read_text().splitlines():
            if line and not line.startswith(("#", "-r")):
                assert "==" in line, f"{name}: {line}"
