"""./run.sh as a user runs it: Ctrl-C in its terminal is a graceful stop that answers the requests in flight."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import _free_port, http

REPO_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.own_broker
def test_ctrl_c_lets_requests_waiting_on_kafka_finish(own_broker, new_topic, read_topic, tmp_path):
    port = _free_port()
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap_servers,
                   "PRODUCER_PORT": str(port), "PRODUCER_HOST": "127.0.0.1"}
    log = (tmp_path / "run.log").open("wb")
    # A session of its own, as a terminal gives the command it runs: Ctrl-C goes to that whole process group.
    script = subprocess.Popen(["./run.sh"], cwd=REPO_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while (tmp_path / "run.log").read_text(errors="replace").count(": serving") < 2:
            assert script.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.2)
        topic = new_topic()
        assert http("POST", url + "/produce", json.dumps({"topic": topic, "message": {"n": -1}}))[0] == 200
        answers = []
        with own_broker.paused():
            senders = [threading.Thread(target=lambda n=n: answers.append(
                http("POST", url + "/produce", json.dumps({"topic": topic, "message": {"n": n}}))[0]))
                for n in range(4)]
            for sender in senders:
                sender.start()
            time.sleep(2.0)  # the requests now wait for Kafka (until the delivery timeout, 9.5 s)
            os.killpg(script.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            time.sleep(1.0)
        for sender in senders:
            sender.join(timeout=30)
        assert answers == [200] * 4
        assert script.wait(timeout=40) in (0, 130)
        values = sorted(json.loads(record.value)["n"] for record in read_topic(topic, 5))
        assert values == [-1, 0, 1, 2, 3]
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGTERM)
            script.wait(timeout=40)
        log.close()


@pytest.mark.parametrize("port", ["abc", "65535"])
def test_a_local_kafka_port_that_is_no_port_is_refused_in_one_line(port):
    environment = {name: value for name, value in os.environ.items() if name != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(["./run.sh"], cwd=REPO_DIR, env={**environment, "LOCAL_KAFKA_PORT": port},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"run.sh: LOCAL_KAFKA_PORT must be a port number from 1 to 65534 (its controller takes the next one), "
        f"got '{port}'")
