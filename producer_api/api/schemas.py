"""Marshmallow schemas: they validate request bodies and, through apispec, generate the OpenAPI document."""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate


class WholeMatch(validate.Regexp):
    """A Regexp validator that the whole value must match (re.match lets "name\\n" through a pattern ending in $)."""

    def __call__(self, value):
        """Return the value if the whole of it matches, else raise marshmallow's ValidationError."""
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Kafka's own rule for topic names (kafka.common.internals.Topic): 1-249 legal characters, not "." or "..".
# A regular expression, so the OpenAPI document states the whole rule and clients can check it themselves.
TOPIC_NAME = WholeMatch(
    r"^(?!\.\.?$)[a-zA-Z0-9._-]{1,249}$",
    error="Topic name must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-', and not '.' or '..'.",
)


class StrictInteger(fields.Integer):
    """An integer that refuses booleans and numbers with a fraction, which JSON clients send by mistake."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._validated(value)


class ProduceRequestSchema(Schema):
    """One message to write: where it goes and what it says."""

    class Meta:
        unknown = RAISE

    topic = fields.String(
        required=True,
        validate=TOPIC_NAME,
        metadata={"description": "Kafka topic to write to.", "example": "test-topic"},
    )
    key = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Message key, sent as UTF-8 bytes; messages with the same key go to the same partition.",
            "example": "message-1",
        },
    )
    message = fields.Dict(
        keys=fields.String(),
        required=True,
        metadata={
            "description": "The message, a JSON object; timestamp, source and server_time are added unless present.",
            "example": {"user_id": 123, "action": "login", "data": "Hello from API!"},
        },
    )
    partition = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "Partition to write to; omit it to partition by key.", "example": 0},
    )

    def load(self, data, *, many=None, partial=None, unknown=None):
        """Validate one request; a well-formed one is checked directly, anything else by marshmallow's fields."""
        if many is None and partial is None and unknown is None and not self.many:
            loaded = _well_formed_request(data)
            if loaded is not None:
                return loaded
        return super().load(data, many=many, partial=partial, unknown=unknown)


_REQUEST_FIELDS = frozenset(("topic", "key", "message", "partition"))
_TEXT_ONLY = frozenset((str,))


def _well_formed_request(data) -> dict | None:
    """ProduceRequestSchema's result for a request its fields would accept unchanged, else None.

    Marshmallow's field machinery costs a large part of what kafka-python itself spends on a message, and a batch
    of 1000 pays it 1000 times. This accepts only the plain case, a subset of what the schema accepts,
    and returns what the schema would; every other input, and so every error message, goes through marshmallow.
    tests/unit/api/test_schemas.py checks the two agree on generated input.
    """
    if type(data) is not dict or not data.keys() <= _REQUEST_FIELDS:
        return None
    topic, message = data.get("topic"), data.get("message")
    key, partition = data.get("key"), data.get("partition")
    if type(topic) is not str or TOPIC_NAME.regex.fullmatch(topic) is None or type(message) is not dict:
        return None
    if not (key is None or type(key) is str) or not (partition is None or (type(partition) is int and partition >= 0)):
        return None
    if not _TEXT_ONLY.issuperset(map(type, message)):  # every key a str; half the time of all() over a generator
        return None
    return {"topic": topic, "key": key, "message": dict(message), "partition": partition}


class ProduceOptionsSchema(Schema):
    """Query parameters of the produce endpoints."""

    class Meta:
        unknown = EXCLUDE

    wait = fields.Boolean(
        load_default=True,
        metadata={"description": "false: answer 202 once the message is queued, without waiting for Kafka."},
    )


class BatchOptionsSchema(ProduceOptionsSchema):
    """Query parameters of the batch endpoint."""

    atomic = fields.Boolean(
        load_default=False,
        metadata={"description": "true: write the whole batch in one Kafka transaction, all or nothing, "
                                 "and wait for its commit (wait is then ignored)."},
    )


class QueuedResponseSchema(Schema):
    """The message was queued for delivery (wait=false); Kafka has not acknowledged it yet."""

    success = fields.Boolean(required=True, metadata={"example": True})
    message = fields.String(required=True, metadata={"example": "Queued for delivery"})
    topic = fields.String(required=True, metadata={"example": "test-topic"})
    timestamp = fields.String(required=True, metadata={"example": "2024-01-15T10:30:00.123456+00:00"})


class ProduceResponseSchema(Schema):
    """Where Kafka stored the message, after the broker acknowledged it (acks=all)."""

    success = fields.Boolean(required=True, metadata={"example": True})
    message = fields.String(required=True, metadata={"example": "Message sent successfully"})
    topic = fields.String(required=True, metadata={"example": "test-topic"})
    partition = fields.Integer(required=True, metadata={"example": 0})
    offset = fields.Integer(required=True, metadata={"example": 0})
    timestamp = fields.String(
        required=True,
        metadata={"description": "When the service accepted the message (ISO 8601, UTC); also the record's timestamp.",
                  "example": "2024-01-15T10:30:00.123456+00:00"},
    )


class BatchResultSchema(Schema):
    """The outcome of one message of a batch."""

    success = fields.Boolean(required=True)
    topic = fields.String(required=True)
    message = fields.String(required=True, metadata={"example": "Message sent successfully"})
    partition = fields.Integer(metadata={"description": "Present when the message was written."})
    offset = fields.Integer(metadata={"description": "Present when the message was written."})
    error = fields.String(metadata={"description": "Present when the message was not written: why."})


class BatchResponseSchema(Schema):
    """Per-message results of a batch, in request order."""

    success = fields.Boolean(required=True, metadata={"description": "True when every message was written."})
    messages_sent = fields.Integer(required=True, metadata={"description": "How many messages Kafka acknowledged."})
    results = fields.List(fields.Nested(BatchResultSchema), required=True)


class RootSchema(Schema):
    """What this service is and where its endpoints are."""

    message = fields.String(required=True, metadata={"example": "Kafka Producer API Server"})
    version = fields.String(required=True, metadata={"example": "1.0.0"})
    endpoints = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class HealthSchema(Schema):
    """Whether the service can reach Kafka right now."""

    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    timestamp = fields.String(required=True, metadata={"example": "2024-01-15T10:30:00.123456+00:00"})
    kafka_connected = fields.Boolean(required=True)


class ErrorSchema(Schema):
    """Every error: `detail` says what went wrong; validation errors add the field messages."""

    detail = fields.Raw(required=True, metadata={"example": "Failed to produce message: Connection timeout"})
    errors = fields.Dict(metadata={"description": "Field messages (validation errors only), keyed by field or index."})
