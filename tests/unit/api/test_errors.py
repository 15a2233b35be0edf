"""Every exception becomes JSON with a detail; server errors are logged, at most once a second for each status."""

import logging

from producer_api.core.errors import KafkaUnavailable


def test_unexpected_exceptions_are_json_500_without_internals(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "Internal server error"}
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_server_error_answers_are_error_lines_at_most_once_a_second_for_each_status(client, producer, caplog):
    caplog.set_level(logging.WARNING, logger="producer_api.api.errors")
    producer.raise_before_send = KafkaUnavailable("Failed to produce message: down")
    for _ in range(3):
        assert client.post("/produce", json={"topic": "t", "message": {}}).status_code == 503
    [line] = [record for record in caplog.records if record.name == "producer_api.api.errors"]
    assert line.levelname == "ERROR" and line.getMessage() == "answered 503: Failed to produce message: down"
