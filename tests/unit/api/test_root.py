"""GET /, GET /health, unknown routes and methods, and the missing-producer case."""

from producer_api import create_app


def test_root_is_the_seed_document(client):
    assert client.get("/").get_json() == {
        "message": "Kafka Producer API Server",
        "version": "1.0.0",
        "endpoints": {"health": "/health", "produce": "/produce", "docs": "/docs"},
    }


def test_health_when_kafka_answers(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "healthy" and body["kafka_connected"] is True
    assert body["timestamp"].endswith("+00:00")


def test_health_when_kafka_does_not_answer(client, producer):
    producer.connected = False
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unhealthy"
    assert response.get_json()["kafka_connected"] is False
    assert response.headers["Retry-After"] == "5"  # as a produce request's 503 says


def test_unknown_route_is_json_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.is_json and "detail" in response.get_json()


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get("/produce")
    assert response.status_code == 405
    assert response.is_json and "detail" in response.get_json()
    assert "POST" in response.headers["Allow"]


def test_without_a_producer_the_seed_error_is_returned(make_settings):
    client = create_app(make_settings()).test_client()
    response = client.post("/produce", json={"topic": "t", "message": {}})
    assert response.status_code == 503
    assert response.get_json() == {"detail": "Producer not initialized"}
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["kafka_connected"] is False
