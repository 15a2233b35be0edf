"""README, Dockerfile and docker-compose.yml stay in step with the code, since Docker cannot run here."""

import dataclasses
import re
from pathlib import Path

from local_kafka import Cluster
from producer_api.config import Settings

REPO = Path(__file__).resolve().parents[2]


def test_readme_documents_every_environment_variable():
    readme = (REPO / "README.md").read_text()
    for setting in dataclasses.fields(Settings):
        assert f"| `{setting.metadata['env']}` |" in readme, setting.metadata["env"]


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


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / name).read_text().splitlines():
            if line and not line.startswith(("#", "-r")):
                assert "==" in line, f"{name}: {line}"
