"""Integration fixtures: a real Kafka broker, topics, a consumer that reads messages back, and gunicorn."""

from __future__ import annotations

import dataclasses
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
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from local_kafka import Cluster
from producer_api import create_app
from producer_api.kafka.producer import MessageProducer

REPO_DIR = Path(__file__).resolve().parents[2]
KAFKA_IMAGE = "apache/kafka:4.1.1"


@dataclass
class Broker:
    """A Kafka the tests talk to; `cluster` is set when it is the project's own, which tests may pause."""

    bootstrap_servers: str
    cluster: Cluster | None = None

    @contextmanager
    def paused(self):
        """Freeze the broker process (SIGSTOP) so it accepts nothing and answers nothing, then resume it."""
        pid = self.cluster.nodes[0].pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait_until_stopped(pid)
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def _wait_until_stopped(pid: int, timeout_s: float = 10.0) -> None:
    """Return once every thread of the process is stopped.

    kill() returns before the signal has stopped threads running on another core; on this VM a broker thread
    was seen to answer one more produce request after kill() returned (CI: 21 messages accepted for a limit of 20).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                continue  # the thread exited meanwhile
        if states and all(state in ("T", "t", "Z", "X") for state in states):  # stopped, or exited
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"broker {pid} not stopped after {timeout_s} s: thread states {sorted(set(states))}")
        time.sleep(0.005)


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False  # asking anyway leaks the docker client's socket
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no daemon, no socket, no permission: all mean "not here"
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _container_broker():
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = _free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://localhost:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"localhost:{port}"


@pytest.fixture(scope="session")
def broker():
    """KAFKA_BOOTSTRAP_SERVERS if set; else a testcontainers broker if Docker answers; else our own broker."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    elif _docker_answers():
        with _container_broker() as bootstrap:
            yield Broker(bootstrap)
    else:
        # Its own name and port, so a developer's broker on 9092 is never touched; auto-create is off so the
        # 404 path is real.
        cluster = Cluster("test", nodes=1, base_port=int(os.environ.get("TEST_KAFKA_PORT", "19092")),
                          auto_create_topics=False)
        started = cluster.start()
        yield Broker(cluster.bootstrap_servers, cluster)
        if started:
            cluster.stop()


@pytest.fixture
def own_broker(broker):
    """The project's own broker, for tests that pause it; skips against any other broker."""
    if broker.cluster is None:
        pytest.skip("needs the project's own local broker (it pauses the broker process)")
    return broker


@pytest.fixture(scope="session")
def admin(broker):
    """A Kafka admin client."""
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=10000)
    yield client
    client.close()


@pytest.fixture(scope="session")
def broker_auto_creates_topics(admin) -> bool:
    """Whether the broker creates topics on first use (then the 404 path cannot be reached)."""
    node_id = str(admin.describe_cluster()["brokers"][0]["broker_id"])
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, node_id)], config_filter="all")
    return configs["broker"][node_id]["auto.create.topics.enable"]["value"] == "true"


@pytest.fixture
def new_topic(admin):
    """Create a uniquely named topic (3 partitions by default) and wait until it has leaders."""

    def create(partitions: int = 3, **configs: str) -> str:
        name = f"it-{uuid.uuid4().hex[:12]}"
        topic_configs = {key.replace("_", "."): value for key, value in configs.items()}
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=topic_configs)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = admin.describe_topics([name])[0]
            if described["error_code"] == 0 and len(described["partitions"]) == partitions and all(
                partition["leader_id"] >= 0 for partition in described["partitions"]
            ):
                return name
            time.sleep(0.1)
        raise AssertionError(f"topic {name} did not get leaders")

    return create


@pytest.fixture
def read_topic(broker):
    """Read every record of a topic from the beginning, waiting until at least `expected` have arrived."""

    def read(topic: str, expected: int, timeout: float = 30.0, settle: float = 1.0):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False,
                                 group_id=None, consumer_timeout_ms=500)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            records, deadline = [], time.monotonic() + timeout
            while len(records) < expected and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
            # A little longer, so records beyond the expected ones (duplicates, rejected writes) are seen too.
            settle_until = time.monotonic() + settle
            while time.monotonic() < settle_until:
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
            return sorted(records, key=lambda record: (record.partition, record.offset))
        finally:
            consumer.close()

    return read


@pytest.fixture
def end_offsets(broker):
    """The end offset of every partition of a topic (how many records each holds, from an empty start)."""

    def offsets(topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None)
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    return offsets


@pytest.fixture(scope="module")
def live_settings(broker):
    """Settings for a producer on the test broker."""
    from producer_api.config import Settings

    return dataclasses.replace(Settings.from_env({"PRODUCER_TUNING": os.environ.get("PRODUCER_TUNING", "on")}),
                               bootstrap_servers=broker.bootstrap_servers, max_block_ms=3000)


@pytest.fixture(scope="module")
def live_producer(live_settings):
    """A real MessageProducer on the test broker, shared by a module's tests."""
    producer = MessageProducer(live_settings)
    yield producer
    producer.close(5)


@pytest.fixture
def live_client(live_settings, live_producer):
    """A Flask test client whose app writes to the real broker."""
    return create_app(live_settings, producer=live_producer).test_client()


def tuning_applied(log: str) -> list[str]:
    """The names of the tuning every worker's "serving" line says it applied, all workers' together."""
    return [name for names in re.findall(r": serving \(tuning: ([^;]*);", log) for name in names.split(", ")]


def http(method: str, url: str, body: bytes | str | None = None, headers: dict | None = None, timeout=30):
    """Send one HTTP request; returns (status, headers, parsed JSON or raw text)."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, response_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, raw = error.code, error.headers, error.read()
    try:
        return status, response_headers, json.loads(raw)
    except ValueError:
        return status, response_headers, raw.decode(errors="replace")


@dataclass
class Gunicorn:
    """A running `gunicorn -c gunicorn.conf.py wsgi:app` and where to reach it."""

    process: subprocess.Popen
    url: str
    log_file: Path

    def log(self) -> str:
        """Everything gunicorn has written so far."""
        return self.log_file.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The pids of the master's children, its workers."""
        pids = set()
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            except OSError:
                continue
            if fields.get("PPid", "").strip() == str(self.process.pid):
                pids.add(int(status.parent.name))
        return pids


@pytest.fixture
def start_gunicorn(tmp_path):
    """Start the service as deployed (gunicorn.conf.py, post_fork producers) with extra environment.

    It returns once every worker serves, or only `serving_workers` of them.
    """
    started = []

    def start(bootstrap_servers: str, config: str = "gunicorn.conf.py", serving_workers: int | None = None,
              **environment: str) -> Gunicorn:
        port = _free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "PRODUCER_PORT": str(port),
               "PRODUCER_HOST": "127.0.0.1", "PRODUCER_WORKERS": "2", **environment}
        log_file = tmp_path / f"gunicorn-{port}.log"
        with open(log_file, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", config, "wsgi:app"],
                                       cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Gunicorn(process, f"http://127.0.0.1:{port}", log_file)
        started.append(server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {process.returncode}:\n{server.log()}")
            # Every worker must be serving: a SIGTERM that reaches a worker still booting is missed by gunicorn,
            # which then waits the whole graceful timeout for it.
            if server.log().count(": serving") >= (serving_workers or int(env["PRODUCER_WORKERS"])):
                http("GET", server.url + "/", timeout=5)
                return server
            time.sleep(0.2)
        raise AssertionError(f"gunicorn did not answer within 30 s:\n{server.log()}")

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=40)
