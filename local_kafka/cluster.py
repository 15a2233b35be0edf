"""Fetch Kafka's jars with Maven and run an N-node KRaft cluster (combined broker+controller nodes) on this machine."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
STATE_DIR = REPO_DIR / ".kafka"
LIBS_DIR = STATE_DIR / "libs"
POM_FILE = PACKAGE_DIR / "pom.xml"
LOG4J2_FILE = PACKAGE_DIR / "log4j2.properties"
HOST = "127.0.0.1"
SECURITY_MODES = ("plaintext", "sasl_ssl")
CLIENT_AUTH_MODES = ("none", "requested", "required")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Names and passwords go unquoted into StorageTool's --add-scram and quoted into a JAAS line: keep them simple.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._-]+")
# The broker's PKCS12 keystore sits beside its unencrypted PEM key under .kafka/<name>/tls: nothing to protect.
KEYSTORE_PASSWORD = "local-kafka"



def new_cluster_id() -> str:
    """A random UUID as Kafka writes it (22 characters of URL-safe base64), never starting with '-'.

    kafka-storage's argument parser reads an id starting with '-' as an option ("--cluster-id: expected one
    argument"), which is why Kafka's own Uuid.randomUuid() skips such ids too; 1 id in 64 starts with '-'.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

class ClusterError(RuntimeError):
    """The local Kafka could not be fetched, started or stopped; the message says why."""


def _pom_digest() -> str:
    return hashlib.sha256(POM_FILE.read_bytes()).hexdigest()


def fetch_jars(quiet: bool = False) -> Path:
    """Copy the broker's runtime jars from Maven Central into .kafka/libs, once per pom.xml version."""
    stamp = LIBS_DIR / ".pom-sha256"
    if stamp.is_file() and stamp.read_text().strip() == _pom_digest():
        return LIBS_DIR
    if shutil.which("mvn") is None:
        raise ClusterError("Maven (mvn) is not on PATH: install Maven to fetch the Kafka jars")
    if not quiet:
        print("local_kafka: fetching Kafka jars from Maven Central (first run only) ...", file=sys.stderr)
    staging = STATE_DIR / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    command = [
        "mvn", "-q", "-B", "-f", str(POM_FILE), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    result = _run(command, timeout_s=1800, what="mvn fetching the Kafka jars")
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise ClusterError(f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n{tail}")
    (staging / ".pom-sha256").write_text(_pom_digest())
    shutil.rmtree(LIBS_DIR, ignore_errors=True)
    staging.rename(LIBS_DIR)
    return LIBS_DIR



def _run(command: list[str], timeout_s: float, what: str, **options) -> subprocess.CompletedProcess:
    """Run a tool to completion, its output captured; a tool that hangs past timeout_s is killed and reported."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, **options)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what} did not finish within {timeout_s:g} s and was stopped") from None

# --- the Kafka wire protocol, just enough for a readiness check and leader lookup (Metadata v4) ---

class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value[0]

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.pos:self.pos + length].decode()
        self.pos += length
        return value

    def array(self, read_item):
        return [read_item() for _ in range(max(self.take(">i"), 0))]


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterMetadata:
    """A Metadata response: live brokers and, for the topics asked about, their partitions."""

    brokers: dict[int, tuple[str, int]]
    controller_id: int
    topics: dict[str, dict[int, PartitionState]]
    topic_errors: dict[str, int]


def fetch_metadata(host: str, port: int, topics: list[str] | None = (), timeout: float = 2.0) -> ClusterMetadata:
    """Send one Metadata request to host:port and decode the answer (raises OSError if nothing answers)."""
    client_id = b"local-kafka-check"
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    if topics is None:
        body += struct.pack(">i", -1)
    else:
        body += struct.pack(">i", len(topics))
        for name in topics:
            encoded = name.encode()
            body += struct.pack(">h", len(encoded)) + encoded
    body += struct.pack(">b", 0)  # allow_auto_topic_creation: a check must not create topics
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        reader = _Reader(_recv_exactly(sock, size))
    reader.take(">i")  # correlation id
    reader.take(">i")  # throttle time
    brokers = {}
    for node_id, broker_host, broker_port in reader.array(
        lambda: (reader.take(">i"), reader.string(), reader.take(">i"), reader.string())[:3]
    ):
        brokers[node_id] = (broker_host, broker_port)
    reader.string()  # cluster id
    controller_id = reader.take(">i")
    topic_partitions, topic_errors = {}, {}

    def read_partition():
        reader.take(">h")
        index, leader = reader.take(">i"), reader.take(">i")
        replicas = tuple(reader.array(lambda: reader.take(">i")))
        isr = tuple(reader.array(lambda: reader.take(">i")))
        return index, PartitionState(leader, replicas, isr)

    def read_topic():
        error, name = reader.take(">h"), reader.string()
        reader.take(">b")  # is_internal
        topic_errors[name] = error
        topic_partitions[name] = dict(reader.array(read_partition))

    reader.array(read_topic)
    return ClusterMetadata(brokers, controller_id, topic_partitions, topic_errors)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- nodes and clusters ---

@dataclass(frozen=True)
class Node:
    """One combined broker+controller process of a local cluster."""

    node_id: int
    broker_port: int
    controller_port: int
    directory: Path
    internal_port: int | None = None  # a secured cluster's PLAINTEXT listener for brokers and readiness checks

    @property
    def config_file(self) -> Path:
        """The node's server.properties."""
        return self.directory / "server.properties"

    @property
    def data_dir(self) -> Path:
        """Where the node keeps its log segments and KRaft metadata."""
        return self.directory / "data"

    @property
    def log_dir(self) -> Path:
        """Where the node's own application logs go."""
        return self.directory / "logs"

    @property
    def pid_file(self) -> Path:
        """The file holding the node's process id while it runs."""
        return self.directory / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        """The node's client address, as clients name it."""
        return f"localhost:{self.broker_port}"

    @property
    def plaintext_port(self) -> int:
        """The port that answers PLAINTEXT requests: the client port, or a secured cluster's internal one."""
        return self.internal_port if self.internal_port is not None else self.broker_port

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port this node listens on."""
        return tuple(port for port in (self.broker_port, self.controller_port, self.internal_port) if port)

    def pid(self) -> int | None:
        """The pid of this node's running process, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        if state in ("Z", "X"):
            return None  # exited, not yet reaped
        if not cmdline:
            return pid  # between setsid's exec and java's: the command line reads empty for a moment
        if str(self.config_file).encode() not in cmdline:
            return None  # the pid was reused by some other process
        return pid

    @property
    def start_offset_file(self) -> Path:
        """Where the size of server.log before the node's last start is kept, to find what that start logged."""
        return self.directory / "server.log.start-offset"

    def first_error_of_last_start(self) -> str | None:
        """The first ERROR or FATAL line the node logged since it was last started (the cause of a failed start)."""
        log = self.log_dir / "server.log"
        try:
            offset = int(self.start_offset_file.read_text())
            with log.open("rb") as server_log:
                server_log.seek(offset)
                logged = server_log.read().decode(errors="replace")
        except (OSError, ValueError):
            return None
        return next((line for line in logged.splitlines() if "] ERROR " in line or "] FATAL " in line), None)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node's server log and console output."""
        parts = []
        for name in ("stdout.log", "server.log"):
            path = self.log_dir / name
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log written)"


class Cluster:
    """A local KRaft cluster of N combined nodes with static controller voters, kept under .kafka/<name>.

    With security="sasl_ssl" the client port is a SASL_SSL listener (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
    for `users`, a name -> password mapping; TLS from a CA made at set-up time, see `ca_file`), and
    `client_auth` sets whether the broker asks for client certificates ("none", "requested", "required").
    Controller and inter-broker traffic stay PLAINTEXT on 127.0.0.1.
    """

    def __init__(self, name: str = "dev", nodes: int = 1, base_port: int = 9092,
                 heap: str = "512m", auto_create_topics: bool = True, partitions: int = 3, *,
                 security: str = "plaintext", users: Mapping[str, str] | None = None, client_auth: str = "none"):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        if client_auth not in CLIENT_AUTH_MODES:
            raise ValueError(f"client_auth must be one of {', '.join(CLIENT_AUTH_MODES)}, got {client_auth!r}")
        users = dict(users or {})
        if security == "sasl_ssl" and not users:
            raise ValueError("a sasl_ssl cluster needs at least one user (name -> password)")
        if security == "plaintext" and (users or client_auth != "none"):
            raise ValueError("users and client_auth need security='sasl_ssl'")
        for credential in (*users, *users.values()):
            if not _CREDENTIAL.fullmatch(credential):
                raise ValueError("user names and passwords may hold only letters, digits, '.', '_' and '-'")
        self.name = name
        self.directory = STATE_DIR / name
        self.heap = heap
        self.auto_create_topics = auto_create_topics
        self.partitions = partitions
        self.security = security
        self.users = users
        self.client_auth = client_auth
        # Node i listens on base+2i (clients) and base+2i+1 (controller quorum); in a secured cluster also on
        # base+2N+i (PLAINTEXT, for inter-broker traffic and the readiness check), after every node's pair.
        secured = security != "plaintext"
        self.nodes = [
            Node(i + 1, base_port + 2 * i, base_port + 2 * i + 1, self.directory / f"node-{i + 1}",
                 base_port + 2 * nodes + i if secured else None)
            for i in range(nodes)
        ]

    @property
    def tls_dir(self) -> Path:
        """Where a secured cluster's CA, broker and client certificates are made (git-ignored)."""
        return self.directory / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) a client trusts to reach a secured cluster."""
        return self.tls_dir / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        """A client certificate (PEM) the CA signed, for client_auth="requested" or "required"."""
        return self.tls_dir / "client.pem"

    @property
    def client_key_file(self) -> Path:
        """The unencrypted private key (PEM) of client_cert_file."""
        return self.tls_dir / "client.key"

    @property
    def bootstrap_servers(self) -> str:
        """The comma-separated bootstrap list a client should use."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> Node:
        """The node with this id."""
        return self.nodes[node_id - 1]

    def _properties(self, node: Node) -> str:
        count = len(self.nodes)
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        replication = min(3, count)
        min_isr = 2 if count >= 3 else 1
        settings = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{node.broker_port},CONTROLLER://{HOST}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{node.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.data_dir,
            "num.partitions": self.partitions,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.retention.hours": 24,
            "log.segment.bytes": 64 * 1024 * 1024,
        }
        if self.security == "sasl_ssl":
            settings.update(self._sasl_ssl_properties(node))
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _sasl_ssl_properties(self, node: Node) -> dict:
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        scram_module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            "listeners": f"SASL_SSL://{HOST}:{node.broker_port},CONTROLLER://{HOST}:{node.controller_port},"
                         f"INTERNAL://{HOST}:{node.internal_port}",
            "advertised.listeners": f"SASL_SSL://{HOST}:{node.broker_port},INTERNAL://{HOST}:{node.internal_port}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            # PLAIN checks the passwords listed here; SCRAM checks the credentials written at format time.
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram_module,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_module,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": self.tls_dir / "broker.p12",
            "ssl.keystore.password": KEYSTORE_PASSWORD,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca_file,
            # Kafka ignores a plain ssl.client.auth on SASL listeners (KIP-684): only the listener's own counts.
            "listener.name.sasl_ssl.ssl.client.auth": self.client_auth,
        }

    def _make_tls(self) -> None:
        """Make the CA, the broker's keystore and a client certificate under tls/, once per cluster."""
        if (self.tls_dir / "broker.p12").is_file():
            return
        if shutil.which("openssl") is None:
            raise ClusterError("openssl is not on PATH: it makes the certificates of a sasl_ssl cluster")
        staging = self.directory / "tls.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, mode=0o700)

        def openssl(*args: str) -> None:
            result = _run(["openssl", *args], timeout_s=60, what=f"openssl {args[0]}", cwd=staging)
            if result.returncode != 0:
                raise ClusterError(f"openssl {args[0]} failed:\n{result.stdout}{result.stderr}")

        def signed(name: str, subject: str, extensions: str) -> None:
            (staging / f"{name}.ext").write_text(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                f"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n{extensions}\n"
            )
            openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                    "-out", f"{name}.csr", "-subj", subject)
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-days", "3650", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
            for leftover in (f"{name}.csr", f"{name}.ext"):
                (staging / leftover).unlink()

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                "-days", "3650", "-sha256", "-subj", f"/CN=local_kafka CA {self.name}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        # Clients reach a node as localhost (bootstrap) and as 127.0.0.1 (advertised): both are in the name list,
        # so hostname verification stays on.
        signed("broker", "/CN=localhost", "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1")
        signed("client", "/CN=local-kafka-client", "extendedKeyUsage=clientAuth")
        openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
                "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}")
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        staging.rename(self.tls_dir)

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise ClusterError("Java (>= 17) is not on PATH: install a JDK 17 or set JAVA_HOME")
        return java

    def _classpath_command(self, main_class: str, *args: str, heap: str = "256m") -> list[str]:
        return [self._java(), f"-Xmx{heap}", "-cp", f"{LIBS_DIR}/*", f"-Dkafka.logs.dir={STATE_DIR / 'tool-logs'}",
                f"-Dlog4j2.configurationFile={LOG4J2_FILE}", main_class, *args]

    def _cluster_id(self) -> str:
        id_file = self.directory / "cluster.id"
        if id_file.is_file():
            return id_file.read_text().strip()
        cluster_id = new_cluster_id()
        self.directory.mkdir(parents=True, exist_ok=True)
        id_file.write_text(cluster_id)
        return cluster_id

    def _format(self, node: Node) -> None:
        node.log_dir.mkdir(parents=True, exist_ok=True)
        if self.security == "sasl_ssl":
            self._make_tls()
        node.config_file.write_text(self._properties(node))
        if (node.data_dir / "meta.properties").is_file():
            return
        # SCRAM credentials live in the cluster metadata: KRaft writes them when the log dir is formatted.
        scram = [
            argument
            for name, password in self.users.items()
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]
        result = _run(
            self._classpath_command("kafka.tools.StorageTool", "format", "-t", self._cluster_id(),
                                    "-c", str(node.config_file), "--ignore-formatted", *scram),
            timeout_s=180, what=f"formatting node {node.node_id}",
        )
        if result.returncode != 0:
            raise ClusterError(f"formatting node {node.node_id} failed:\n{result.stdout}{result.stderr}")

    def start_node(self, node: Node) -> bool:
        """Start one node unless it runs already; refuse if another process holds its ports. True if started."""
        if node.pid() is not None:
            return False
        for port in node.ports:
            if _port_open(port):
                raise ClusterError(
                    f"port {port} is already in use by another process; node {node.node_id} of cluster "
                    f"'{self.name}' was not started (stop that process or choose another port)"
                )
        fetch_jars()
        self._format(node)
        server_log = node.log_dir / "server.log"
        node.start_offset_file.write_text(str(server_log.stat().st_size if server_log.is_file() else 0))
        command = [
            self._java(), f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={node.log_dir}",
            f"-Dlog4j2.configurationFile={LOG4J2_FILE}", "-cp", f"{LIBS_DIR}/*",
            "kafka.Kafka", str(node.config_file),
        ]
        # Launched through a shell that exits at once, so the broker is nobody's child: it outlives the
        # command that started it, and stopping it never depends on who started it.
        launcher = 'setsid "$@" >>"$0" 2>&1 </dev/null & echo $!'
        result = _run(["sh", "-c", launcher, str(node.log_dir / "stdout.log"), *command], timeout_s=30,
                      what=f"launching node {node.node_id}")
        if result.returncode != 0:
            raise ClusterError(f"launching node {node.node_id} failed:\n{result.stdout}{result.stderr}")
        node.pid_file.write_text(result.stdout.strip())
        return True

    def start(self, timeout: float = 120.0) -> list[int]:
        """Start every node that is not running and wait until the cluster answers; returns the started ids."""
        self.directory.mkdir(parents=True, exist_ok=True)
        started = [node.node_id for node in self.nodes if self.start_node(node)]
        self.wait_ready(timeout)
        return started

    def wait_ready(self, timeout: float = 120.0, nodes: list[Node] | None = None) -> None:
        """Wait until each running node answers a Metadata request listing every running node.

        The request goes to each node's PLAINTEXT port: in a secured cluster that is the internal listener, which
        the broker opens together with its SASL_SSL one (whose port is checked to accept connections too), so the
        check needs no TLS or SASL of its own.
        """
        deadline = time.monotonic() + timeout
        expected = nodes or [node for node in self.nodes if node.pid() is not None]
        expected_ids = {node.node_id for node in expected}
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            dead = [node for node in expected if node.pid() is None]
            if dead:
                time.sleep(0.5)  # a second look, so a process caught mid-exec is not taken for a dead one
                dead = [node for node in dead if node.pid() is None]
            if dead:
                cause = dead[0].first_error_of_last_start()
                raise ClusterError(
                    f"Kafka node {dead[0].node_id} exited during start-up"
                    + (f": {cause}" if cause else "") + f"\n{dead[0].log_tail()}"
                )
            try:
                seen = [set(fetch_metadata(HOST, node.plaintext_port).brokers) for node in expected]
                closed = [node.broker_port for node in expected
                          if node.plaintext_port != node.broker_port and not _port_open(node.broker_port)]
                if all(expected_ids <= brokers for brokers in seen) and not closed:
                    return
                last_error = f"brokers registered so far: {sorted(set.union(*seen))}; client ports closed: {closed}"
            except OSError as error:
                last_error = str(error)
            time.sleep(0.25)
        tails = "\n".join(node.log_tail() for node in expected)
        raise ClusterError(f"Kafka did not become ready within {timeout:.0f} s ({last_error}):\n{tails}")

    def kill_node(self, node: Node) -> None:
        """Stop one node hard (SIGKILL), as a crash would."""
        pid = node.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(node, pid, 10.0)

    def stop_node(self, node: Node, timeout: float = 30.0) -> None:
        """Stop one node cleanly (SIGTERM), and SIGKILL it if it has not exited within the timeout."""
        pid = node.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(node, pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(node, pid, 10.0)

    def _wait_gone(self, node: Node, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.pid() is None:
                break
            time.sleep(0.1)
        else:
            return False
        node.pid_file.unlink(missing_ok=True)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node of the cluster (brokers first is unnecessary: each node is both)."""
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for node in self.nodes:
            self.stop_node(node, timeout)

    def running(self) -> list[int]:
        """Ids of the nodes whose process is alive."""
        return [node.node_id for node in self.nodes if node.pid() is not None]

    def metadata(self, topics: list[str] | None = ()) -> ClusterMetadata:
        """Ask the first answering node for cluster metadata."""
        last_error: Exception | None = None
        for node in self.nodes:
            try:
                return fetch_metadata(HOST, node.plaintext_port, topics)
            except OSError as error:
                last_error = error
        raise ClusterError(f"no node of cluster '{self.name}' answers: {last_error}")

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node id leading this topic partition (-1 while it has none)."""
        state = self.metadata([topic]).topics.get(topic, {}).get(partition)
        if state is None:
            raise ClusterError(f"topic {topic} partition {partition} is unknown to the cluster")
        return state.leader

    def destroy(self) -> None:
        """Stop the cluster and delete its data."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
