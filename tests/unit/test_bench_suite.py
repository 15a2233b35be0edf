"""The benchmark's schedule: which servers each repetition starts, and what runs beside what."""

from types import SimpleNamespace

import pytest

from bench import suite
from bench.suite import BASELINE, LOADS, SERVICE, SERVICE_GTHREAD, Durations, Suite


@pytest.fixture
def make_suite(monkeypatch, tmp_path):
    """A Suite whose Kafka counter is a stand-in: nothing here talks to a broker."""
    monkeypatch.setattr(suite, "OffsetCounter", lambda: SimpleNamespace(close=lambda: None))

    def make(compare_gthread: bool) -> Suite:
        return Suite("wrk", None, {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, Durations(1, 1, 1, 0), tmp_path,
                     tmp_path / "logs", compare_gthread)

    return make


def scheduled(run: Suite, repetition: int) -> list[tuple[str, str]]:
    """(server, load) of each step of a repetition, in order, with the runs replaced by records of them."""
    run._http = lambda server, load: {"config": server.name, "load": load.name}
    run._ceiling_a = lambda as_shipped=False: {"config": "ceiling A", "load": "send()"}
    servers = {name: SimpleNamespace(name=name) for name in run.server_names}
    return [(record["config"], record["load"]) for record in (step() for step in run._schedule(repetition, servers))]


def test_the_gthread_service_runs_only_when_asked(make_suite):
    assert SERVICE_GTHREAD not in make_suite(False).server_names
    assert not any(config == SERVICE_GTHREAD for config, _ in scheduled(make_suite(False), 0))


@pytest.mark.parametrize("repetition", [0, 1])
def test_the_gthread_service_runs_beside_the_service_at_every_load(make_suite, repetition):
    steps = scheduled(make_suite(True), repetition)
    for load in LOADS:
        beside = [config for config, name in steps if name == load.name and config in (SERVICE, BASELINE,
                                                                                        SERVICE_GTHREAD)]
        assert sorted(beside) == sorted([SERVICE, BASELINE, SERVICE_GTHREAD])
        at = [index for index, (config, name) in enumerate(steps) if name == load.name and config in beside]
        assert max(at) - min(at) == 2  # next to each other, nothing between


def test_the_gthread_service_gets_gthread_workers_and_the_service_keeps_its_class(make_suite, monkeypatch):
    started = {}

    class FakeServer:
        def __init__(self, name, config, app, port, env, log_file):
            self.name, self.url = name, f"http://127.0.0.1:{port}"
            started[name] = (config, app, env.get("PRODUCER_WORKER_CLASS"))

        def start(self):
            """Nothing to start."""

        def wait_ready(self, workers):
            """Ready at once."""

        def stop(self):
            """Nothing to stop."""

    monkeypatch.setattr(suite, "Server", FakeServer)
    monkeypatch.setattr(suite, "run_wrk", lambda *args: None)  # the warm-up
    run = make_suite(True)
    run._schedule = lambda repetition, servers: []
    assert run.run(1) == []
    assert started[SERVICE_GTHREAD] == ("gunicorn.conf.py", "wsgi:app", "gthread")
    assert started[SERVICE] == ("gunicorn.conf.py", "wsgi:app", None)
