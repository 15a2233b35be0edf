"""Kafka connection security end to end: the service on a SASL_SSL broker, configured only from the environment.

These tests start their own broker (not the shared test broker): one node whose client listener is SASL_SSL with
PLAIN and SCRAM users, a CA made at set-up time and client certificates required, on 127.0.0.1:19310-19312.
"""

import json
import logging
import os
import shutil
import subprocess
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from local_kafka import Cluster
from producer_api import create_app
from producer_api.config import WORKER_CLASSES, Settings
from producer_api.kafka.producer import MessageProducer
from tests.integration.conftest import http

PORT = int(os.environ.get("TEST_SECURE_KAFKA_PORT", "19310"))
USER = "producer-api"
PASSWORD = "s3cret-producer-pw-7f41c2"
WRONG_PASSWORD = "not-the-password-0b9e5d"
KEY_PASSWORD = "client-key-pass-5e0c"


@pytest.fixture(scope="module")
def secure_cluster():
    """A SASL_SSL broker of our own, with a fresh CA and users each run, deleted at the end."""
    for tool in ("java", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed to run a SASL_SSL broker")
    cluster = Cluster("test-sasl-ssl", base_port=PORT, auto_create_topics=False, security="sasl_ssl",
                      users={USER: PASSWORD}, client_auth="required")
    cluster.destroy()  # what a crashed earlier run of this module left: this cluster's own process and data only
    cluster.start()
    yield cluster
    cluster.destroy()


def client_security(cluster: Cluster, mechanism: str = "SCRAM-SHA-512", password: str = PASSWORD) -> dict:
    """kafka-python options for a test client (admin, consumer) on the secured broker."""
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism, "sasl_plain_username": USER,
            "sasl_plain_password": password, "ssl_cafile": str(cluster.ca_file),
            "ssl_certfile": str(cluster.client_cert_file), "ssl_keyfile": str(cluster.client_key_file)}


def service_environment(cluster: Cluster, **overrides: str | None) -> dict[str, str]:
    """The environment variables that point the service at the secured broker; None removes one."""
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CAFILE": str(cluster.ca_file),
        "KAFKA_SSL_CERTFILE": str(cluster.client_cert_file),
        "KAFKA_SSL_KEYFILE": str(cluster.client_key_file),
        "KAFKA_MAX_BLOCK_MS": "3000",
        **overrides,
    }
    return {name: value for name, value in environment.items() if value is not None}


@pytest.fixture
def secure_app():
    """Build the app with a real MessageProducer from an environment; every producer is closed afterwards."""
    producers = []

    def build(environment: dict[str, str]):
        settings = Settings.from_env(environment)
        producer = MessageProducer(settings)
        producers.append(producer)
        return settings, create_app(settings, producer=producer).test_client()

    yield build
    for producer in producers:
        producer.close(1)


@pytest.fixture(scope="module")
def secure_topic(secure_cluster):
    """A 3-partition topic on the secured broker, created over SASL_SSL."""
    admin = KafkaAdminClient(bootstrap_servers=secure_cluster.bootstrap_servers, request_timeout_ms=10000,
                             **client_security(secure_cluster))
    try:
        admin.create_topics([NewTopic("secured", 3, 1)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = admin.describe_topics(["secured"])[0]
            if described["error_code"] == 0 and all(p["leader_id"] >= 0 for p in described["partitions"]):
                return "secured"
            time.sleep(0.1)
        raise AssertionError("topic 'secured' did not get leaders")
    finally:
        admin.close()


def read_record(cluster: Cluster, topic: str, partition: int, offset: int, timeout: float = 20.0):
    """The record at topic/partition/offset, read over SASL_SSL with SCRAM-SHA-512."""
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, group_id=None, enable_auto_commit=False,
                             **client_security(cluster))
    try:
        where = TopicPartition(topic, partition)
        consumer.assign([where])
        consumer.seek(where, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                return records[0]
        raise AssertionError(f"no record at {topic}/{partition}@{offset} within {timeout} s")
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("mechanism", "password_in_file"),
    [("PLAIN", False), ("SCRAM-SHA-256", False), ("SCRAM-SHA-512", True)],
)
def test_message_written_over_sasl_ssl_is_read_back(secure_cluster, secure_topic, secure_app, tmp_path,
                                                     mechanism, password_in_file):
    overrides = {"KAFKA_SASL_MECHANISM": mechanism}
    if password_in_file:
        secret = tmp_path / "kafka-password"
        secret.write_text(PASSWORD + "\n")
        overrides.update(KAFKA_SASL_PASSWORD_FILE=str(secret), KAFKA_SASL_PASSWORD=WRONG_PASSWORD)  # the file wins
    _, client = secure_app(service_environment(secure_cluster, **overrides))

    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["kafka_connected"] is True
    message = {"user_id": 123, "mechanism": mechanism}
    response = client.post("/produce", json={"topic": secure_topic, "key": f"key-{mechanism}", "message": message,
                                             "partition": 1})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()

    record = read_record(secure_cluster, secure_topic, body["partition"], body["offset"])
    assert (record.topic, record.partition, record.offset) == (secure_topic, 1, body["offset"])
    assert record.key == f"key-{mechanism}".encode()
    value = json.loads(record.value)
    assert value == {**message, "timestamp": body["timestamp"], "source": "python-producer-api",
                     "server_time": value["server_time"]}


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)  # gevent: kafka-python's TLS on gevent's ssl
def test_service_under_gunicorn_reads_its_security_settings_from_the_environment(secure_cluster, secure_topic,
                                                                                  start_gunicorn, worker_class):
    environment = service_environment(secure_cluster)
    service = start_gunicorn(environment.pop("KAFKA_BOOTSTRAP_SERVERS"), PRODUCER_WORKER_CLASS=worker_class,
                             **environment)
    status, _, body = http("GET", service.url + "/health")
    assert status == 200 and body["kafka_connected"] is True
    status, _, body = http("POST", service.url + "/produce",
                           json.dumps({"topic": secure_topic, "key": "via-gunicorn", "message": {"n": 1}}))
    assert status == 200, body
    record = read_record(secure_cluster, secure_topic, body["partition"], body["offset"])
    assert record.key == b"via-gunicorn"
    assert PASSWORD not in service.log()


def test_wrong_password_is_a_quick_503_that_never_shows_the_password(secure_cluster, secure_topic, secure_app,
                                                                     caplog):
    caplog.set_level(logging.DEBUG)  # every log record of the service and of kafka-python, at every level
    settings, client = secure_app(service_environment(secure_cluster, KAFKA_SASL_PASSWORD=WRONG_PASSWORD))

    started = time.monotonic()
    health = client.get("/health")
    assert time.monotonic() - started < 3.0
    assert health.status_code == 503 and health.get_json()["kafka_connected"] is False

    started = time.monotonic()
    response = client.post("/produce", json={"topic": secure_topic, "message": {"n": 1}})
    assert time.monotonic() - started < settings.max_block_ms / 1000 + 2.0
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["detail"].startswith("Failed to produce message:")

    # The service's log shows the SASL exchange failing (kafka-python reports it from its I/O thread, on its
    # next bootstrap attempt, so give it a few seconds), the password nowhere. After a wrong SCRAM proof the
    # broker answers with SASL_AUTHENTICATION_FAILED and closes the connection; kafka-python logs either that
    # error or, when the close reaches it first (seen on a clean clone), the connection lost right after it
    # sent the proof.
    def sasl_failure_logged() -> bool:
        text = caplog.text
        return "SaslAuthenticationFailedError" in text or (
            "Request 4: SaslAuthenticateRequest" in text and "Connection lost" in text)

    deadline = time.monotonic() + 10
    while not sasl_failure_logged() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sasl_failure_logged()
    for text in (health.get_data(as_text=True), response.get_data(as_text=True), caplog.text, repr(settings)):
        assert WRONG_PASSWORD not in text and PASSWORD not in text


def test_broker_certificate_from_an_untrusted_ca_is_refused(secure_cluster, secure_app):
    # Without KAFKA_SSL_CAFILE the client trusts only the system's CAs, which never signed the test broker.
    _, client = secure_app(service_environment(secure_cluster, KAFKA_SSL_CAFILE=None))
    started = time.monotonic()
    assert client.get("/health").status_code == 503
    assert time.monotonic() - started < 3.0


def test_client_certificate_is_presented_when_configured(secure_cluster, secure_app):
    # The broker requires client certificates: without one it refuses the connection, so the reads-back above
    # prove KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE reach the TLS handshake.
    _, client = secure_app(service_environment(secure_cluster, KAFKA_SSL_CERTFILE=None, KAFKA_SSL_KEYFILE=None))
    assert client.get("/health").status_code == 503


def test_an_encrypted_client_key_is_used_with_its_pass_phrase(secure_cluster, secure_topic, secure_app, tmp_path,
                                                              caplog):
    encrypted = tmp_path / "client-encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(secure_cluster.client_key_file), "-aes256",
                    "-passout", f"pass:{KEY_PASSWORD}", "-out", str(encrypted)], check=True, capture_output=True)
    assert b"ENCRYPTED" in encrypted.read_bytes()
    password_file = tmp_path / "key-password"
    password_file.write_text(KEY_PASSWORD + "\n")
    for given in ({"KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD}, {"KAFKA_SSL_KEY_PASSWORD_FILE": str(password_file)}):
        _, client = secure_app(service_environment(secure_cluster, KAFKA_SSL_KEYFILE=str(encrypted), **given))
        response = client.post("/produce", json={"topic": secure_topic, "message": {"key_given_as": list(given)}})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        record = read_record(secure_cluster, secure_topic, body["partition"], body["offset"])
        assert json.loads(record.value)["key_given_as"] == list(given)
    # Without its pass phrase the key cannot be used: a quick 503, and a line that says what to set.
    caplog.set_level(logging.ERROR, logger="producer_api.kafka")
    _, without = secure_app(service_environment(secure_cluster, KAFKA_SSL_KEYFILE=str(encrypted)))
    started = time.monotonic()
    assert without.get("/health").status_code == 503
    assert time.monotonic() - started < 3.0
    assert "set KAFKA_SSL_KEY_PASSWORD" in caplog.text
    assert KEY_PASSWORD not in caplog.text
