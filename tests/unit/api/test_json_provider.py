"""Responses serialised by orjson where it writes the document Flask would, by Flask otherwise."""

import json
from datetime import UTC, datetime

from flask import jsonify
from flask.json.provider import DefaultJSONProvider


def _flask_document(app, document) -> object:
    """The document as Flask's own provider writes it, read back."""
    return json.loads(DefaultJSONProvider(app).response(document).get_data())


def test_answers_are_written_by_orjson(client):
    response = client.post("/produce/batch", json=[{"topic": "t", "message": {"n": index}} for index in range(3)])
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_data())["messages_sent"] == 3
    response = client.post("/produce", json={"topic": "t", "message": {}, "caf\u00e9": 1})
    assert response.status_code == 422
    # orjson writes UTF-8 where Flask escapes to ASCII; compact, with Flask's closing newline.
    assert response.get_data().endswith('"errors":{"caf\u00e9":["Unknown field."]}}\n'.encode())


def test_what_orjson_cannot_write_is_written_by_flask(app, client):
    # An unknown field named by a lone surrogate comes back in the errors: orjson refuses such text.
    response = client.post("/produce", data='{"topic": "t", "message": {}, "\\ud800": 1}')
    assert response.status_code == 422
    assert json.loads(response.get_data())["errors"] == {"\ud800": ["Unknown field."]}
    with app.test_request_context():
        for document in ({1: "an integer key"}, {"big": 2**70}, {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}):
            response = jsonify(document)
            assert json.loads(response.get_data()) == _flask_document(app, document)
        # Flask writes a datetime as an HTTP date, orjson would write ISO 8601.
        assert json.loads(jsonify({"when": datetime(2026, 1, 2, tzinfo=UTC)}).get_data()) == {
            "when": "Fri, 02 Jan 2026 00:00:00 GMT"}


def test_debug_mode_keeps_flasks_indented_output(app):
    app.debug = True
    with app.test_request_context():
        assert jsonify({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'
