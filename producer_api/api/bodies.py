"""Reading request bodies: JSON whatever the Content-Type says, validated by a marshmallow schema."""

from __future__ import annotations

import json
import math

import orjson
from flask import current_app, g, request
from gunicorn.http.errors import ParseException
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import ClientDisconnected

from producer_api.core import turns
from producer_api.core.errors import (
    APIError,
    InvalidJSON,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # Python reads 1e999 as infinity, which JSON cannot express and the record could not be encoded with.
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text} is out of range")
    return number


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # Which of two values a duplicated key means is left undefined by JSON; refuse rather than guess.
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key {duplicate!r}")
    return document


_NOT_CANONICAL = object()


def _parse_canonical(data: bytes):
    """The document in data if data is exactly orjson's serialisation of it, else _NOT_CANONICAL.

    The standard parser below, with the hooks that refuse duplicate keys and out-of-range numbers, costs more than
    twice what orjson takes to parse a message of a batch and serialise it again. orjson alone would accept what
    the service refuses (the last of duplicate keys wins, integers past 64 bits become floats), so its document is
    taken only when serialising it gives back the very bytes received: compact JSON, as most clients send it.
    Those bytes then hold no duplicate key, no NaN or infinity and no integer orjson read as a float, and the
    standard parser would read the same document from them. Anything else goes to the standard parser.
    """
    try:
        document = orjson.loads(data)
        if orjson.dumps(document) == data:
            return document
    except (ValueError, TypeError):  # orjson's JSONDecodeError and JSONEncodeError
        pass
    return _NOT_CANONICAL


def _read_body() -> bytes:
    """The whole request body, or the API error that says why it cannot be had (the connection is then closed)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise _closing(UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported: send the body "
                                            "uncompressed"))
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    expected = request.content_length
    try:
        if expected is not None:
            data = request.get_data(cache=False)  # werkzeug answers 413 before reading a body announced too large
        else:
            # Chunked: werkzeug would stop at the limit without a word, and a document cut there may still parse.
            data = request.environ["wsgi.input"].read(limit + 1)
    except ClientDisconnected as error:  # werkzeug's name for a read that failed
        g.body_done = True  # a client gone silent or a broken connection: nothing left worth draining
        raise _unreadable(error.__context__) from None
    except (OSError, ValueError, ParseException) as error:  # gunicorn's own: a bad chunk, a broken connection
        g.body_done = True
        raise _unreadable(error) from None
    if expected is None and len(data) > limit:  # the rest of the chunks is drained before the connection closes
        raise _closing(PayloadTooLarge(f"Request body too large: the limit is {limit} bytes"))
    g.body_done = True
    if expected is not None and len(data) < expected:
        raise _closing(InvalidJSON(f"Request body ended after {len(data)} of the {expected} bytes its "
                                   "Content-Length announced (the client closed the connection?)"))
    return data


def _unreadable(cause: BaseException | None) -> APIError:
    """The error for a body that could not be read: the client went silent, broke the connection or the chunks."""
    # The receive timeout of producer_api/server/tuning/client_timeout.py: the kernel's (gthread) or the socket's
    # (gevent).
    if isinstance(cause, (BlockingIOError, TimeoutError)):
        timeout_s = current_app.config["PRODUCER_SETTINGS"].client_timeout_s
        return _closing(RequestTimeout(f"Request body not received: the client sent nothing for {timeout_s} s "
                                       "(PRODUCER_CLIENT_TIMEOUT)"))
    if isinstance(cause, ParseException):
        return _closing(InvalidJSON(f"Request body could not be read: its chunked encoding is malformed ({cause})"))
    return _closing(InvalidJSON("Request body not received: the connection failed while it was read"))


def _closing(error: APIError) -> APIError:
    """Mark an error whose answer must close the connection: what is left of the body there cannot be trusted."""
    error.close_connection = True
    return error


def read_json():
    """Parse the request body as JSON; the seed's curl examples send no Content-Type, so none is required."""
    data = _read_body()
    if not data.strip():
        raise InvalidJSON("Request body is empty: send a JSON document")
    document = _parse_canonical(data)
    if document is not _NOT_CANONICAL:
        return document
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_refuse_duplicate_keys)
    except UnicodeDecodeError:
        raise InvalidJSON("Invalid JSON body: it is not valid UTF-8") from None
    except RecursionError:
        raise InvalidJSON("Invalid JSON body: nested too deeply") from None
    except ValueError as error:
        raise InvalidJSON(f"Invalid JSON body: {error}") from None


def load_query(schema: Schema) -> dict:
    """Validate the query string (wait, atomic)."""
    if not request.args:  # the usual case: marshmallow would only fill in the defaults, at a cost every request
        return {name: field.load_default for name, field in schema.load_fields.items()}
    try:
        return schema.load(request.args)
    except ValidationError as error:
        raise InvalidRequest(
            f"Invalid query parameters: {_describe(error.normalized_messages())}",
            {"errors": error.normalized_messages()},
        ) from None


def _describe(errors: dict) -> str:
    parts = []
    for field, messages in errors.items():
        if isinstance(messages, dict):
            parts.append(f"{field}: {_describe(messages)}")
        else:
            parts.append(f"{field}: {' '.join(str(message) for message in messages)}")
    return "; ".join(parts)


def load_one(schema: Schema) -> dict:
    """Read and validate a body holding one object."""
    document = read_json()
    try:
        return schema.load(document)
    except ValidationError as error:
        raise InvalidRequest(
            f"Failed to produce message: Invalid message format: {_describe(error.normalized_messages())}",
            {"errors": error.normalized_messages()},
        ) from None


def load_many(schema: Schema, max_items: int) -> list[dict]:
    """Read and validate a body holding a non-empty list of objects; errors name the index of each bad item."""
    document = read_json()
    if not isinstance(document, list):
        raise InvalidRequest("Failed to produce batch: the body must be a JSON array of messages")
    if not document:
        raise InvalidRequest("Failed to produce batch: the batch is empty")
    if len(document) > max_items:  # the document's maxItems: a schema violation, not a byte limit
        raise InvalidRequest(
            f"Failed to produce batch: {len(document)} messages is more than the limit of {max_items} "
            "(PRODUCER_MAX_BATCH_MESSAGES)"
        )
    loaded, errors = [], {}
    for index, item in enumerate(document):
        try:
            loaded.append(schema.load(item))
        except ValidationError as error:
            errors[str(index)] = error.normalized_messages()
        if index % turns.YIELD_EVERY == turns.YIELD_EVERY - 1:
            turns.give_turn()
    if errors:
        first = next(iter(errors))
        raise InvalidRequest(
            f"Failed to produce batch: Invalid message format at index {first}: {_describe(errors[first])}",
            {"errors": errors},
        )
    return loaded
