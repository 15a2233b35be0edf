"""Reading request bodies: the orjson path for compact JSON reads what the standard parser reads, or steps aside."""

import json
import random

import pytest

from producer_api.api import bodies
from producer_api.core.errors import InvalidJSON


def _read(app, data: bytes):
    """read_json's document for data, or the InvalidJSON detail it raised."""
    with app.test_request_context("/produce", method="POST", data=data):
        try:
            return ("document", bodies.read_json())
        except InvalidJSON as error:
            return ("error", error.detail)


def _read_standard(app, data: bytes, monkeypatch):
    """What the standard parser alone makes of data."""
    with monkeypatch.context() as patch:
        patch.setattr(bodies, "_parse_canonical", lambda data: bodies._NOT_CANONICAL)
        return _read(app, data)


def test_compact_json_is_read_without_the_standard_parser(app, monkeypatch):
    def standard_parser_called(*args, **kwargs):
        raise AssertionError("the standard parser ran")

    monkeypatch.setattr(bodies.json, "loads", standard_parser_called)
    data = '[{"topic":"t","key":"k","message":{"caf\u00e9":[1,-2.5,null,true,"\\u0000"]}}]'.encode()
    assert _read(app, data) == ("document", [{"topic": "t", "key": "k",
                                              "message": {"caf\u00e9": [1, -2.5, None, True, "\x00"]}}])


@pytest.mark.parametrize(
    "text",
    [
        '{"topic":"t","topic":"u","message":{}}',  # duplicate key: orjson keeps the last, the service refuses
        '{"topic":"t","message":{"a":1,"a":1}}',
        '{"a":18446744073709551616}',  # past 64 bits: orjson reads a float, the standard parser an int
        '{"a":-9223372036854775809}',
        '{"a":18446744073709551615}',
        '{"a":-1e999}',
        '{"a":1e5}',
        '{"a":1E5}',
        '{"a":-0}',
        '{"a":NaN}',
        '{"a":Infinity}',
        '"\\ud800"',  # a lone surrogate: orjson refuses it, the standard parser reads it
        '{"a":"\\u00e9\\/"}',
        '{"topic": "t", "message": {}}',
        ' {"a":1}',
        '{"a":1}\n',
        "null",
        "[" * 2000 + "]" * 2000,
        '{"a":1',
    ],
)
def test_every_body_reads_as_the_standard_parser_reads_it(app, monkeypatch, text):
    data = text.encode()
    assert _read(app, data) == _read_standard(app, data, monkeypatch)


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "bigint", "float", "text", "bool", "null"] + (["list", "object"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == "bigint":
        return rng.choice([1, -1]) * rng.randint(2**64, 2**80)
    if kind == "float":
        return rng.choice([rng.uniform(-1e6, 1e6), rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300), 0.0, -0.0])
    if kind == "text":
        return "".join(rng.choice("ab/\"\\\u00e9\u2713\x00\x1f\x7f \U0001f600") for _ in range(rng.randint(0, 8)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["k", "caf\u00e9", "a/b", ""]) + str(rng.randint(0, 3)): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def test_generated_documents_read_alike_whichever_way_they_are_written(app, monkeypatch):
    rng = random.Random(20261128)
    fast_paths = 0
    for _ in range(400):
        document = _random_value(rng)
        separators = rng.choice([(",", ":"), (", ", ": ")])
        data = json.dumps(document, separators=separators, ensure_ascii=rng.random() < 0.5).encode()
        expected = _read_standard(app, data, monkeypatch)
        assert _read(app, data) == expected, data
        assert expected == ("document", document) or expected[0] == "error"
        fast_paths += bodies._parse_canonical(data) is not bodies._NOT_CANONICAL
    assert fast_paths > 100  # the comparison covered the orjson path, not only the standard one


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_a_compressed_body_is_415_and_sends_nothing(client, producer, encoding):
    response = client.post("/produce", data=b'{"topic": "t", "message": {}}',
                           headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert response.status_code == 415
    detail = f"Content-Encoding '{encoding}' is not supported: send the body uncompressed"
    assert response.get_json()["detail"] == detail
    assert producer.sent == []


def test_identity_encoding_is_read_as_no_encoding(client, producer):
    response = client.post("/produce", data=b'{"topic": "t", "message": {}}', headers={"Content-Encoding": "identity"})
    assert response.status_code == 200 and len(producer.sent) == 1
