"""The service's own OpenAPI document, held against it by an outside fuzzer (schemathesis, every check), on the
real broker: no server error, every answer as documented, schema-invalid input refused, schema-valid accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

# Enough examples per operation to reach the edges the issue found (a missing partition, a batch over maxItems);
# `--max-examples 200` was run by hand too (docs/operations.md).
MAX_EXAMPLES = os.environ.get("CONTRACT_MAX_EXAMPLES", "100")


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "with-api-keys"])
def test_schemathesis_with_every_check_finds_nothing(broker, start_gunicorn, admin, tmp_path, keyed):
    try:  # the document's own example topic, which the examples phase writes to
        admin.create_topics([NewTopic("test-topic", 3, 1)])
    except TopicAlreadyExistsError:
        pass
    _start_transactions(broker.bootstrap_servers)
    # The fuzzer names many topics that do not exist: each is a 404 after KAFKA_MAX_BLOCK_MS, here 1 s.
    environment = {"KAFKA_MAX_BLOCK_MS": "1000"}
    arguments = []
    if keyed:
        environment["PRODUCER_API_KEYS"] = '[{"name": "fuzzer", "key": "fuzzer-key-0123456789", "topics": ["*"]}]'
        arguments = ["--header", "Authorization: Bearer fuzzer-key-0123456789"]
    service = start_gunicorn(broker.bootstrap_servers, **environment)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", f"{service.url}/openapi.json", "--checks", "all", "--max-examples", MAX_EXAMPLES,
         "--request-timeout", "30", "--seed", "1", "--no-color", *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "No issues found" in result.stdout or "passed" in result.stdout, result.stdout[-5000:]


def _start_transactions(bootstrap_servers: str) -> None:
    """Run one transaction, so that the broker has made its transaction log before the fuzzer's atomic batches.

    A fresh broker creates it on the first transaction, which takes longer than the service's KAFKA_MAX_BLOCK_MS
    here: that batch would be an honest 503, which the fuzzer counts as a server error.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id="contract-test-warm-up")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("test-topic", b"{}").get(timeout=30)
        producer.commit_transaction()
    finally:
        producer.close(5)
