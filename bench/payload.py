"""The one message shape every benchmark sends: about 200 bytes of JSON as POST /produce takes it."""

from __future__ import annotations

import json
from pathlib import Path

REQUEST_BYTES = 200
# Distinct users, all with three-digit ids so every body has the same length; their keys spread the messages
# over the topic's partitions as real traffic would.
USER_IDS = range(100, 164)


def encode(document) -> str:
    """Serialise JSON compactly, as a client would send it."""
    return json.dumps(document, separators=(",", ":"))


def produce_request(topic: str, user_id: int) -> dict:
    """One POST /produce body, its `data` padded so that the encoded request is REQUEST_BYTES long."""
    request = {"topic": topic, "key": f"user-{user_id}",
               "message": {"user_id": user_id, "action": "login", "data": ""}}
    request["message"]["data"] = "x" * max(REQUEST_BYTES - len(encode(request)), 0)
    return request


def batch_request(topic: str, size: int, first_user: int) -> list[dict]:
    """One POST /produce/batch body of `size` messages, cycling through the users from the given one."""
    users = list(USER_IDS)
    return [produce_request(topic, users[(first_user + index) % len(users)]) for index in range(size)]


def request_lines(topic: str, batch: int, variants: int = 8) -> list[str]:
    """Lines "PATH<TAB>BODY" for wrk: single requests for every user, or `variants` batches of `batch`."""
    if batch == 1:
        return [f"/produce\t{encode(produce_request(topic, user))}" for user in USER_IDS]
    return [f"/produce/batch\t{encode(batch_request(topic, batch, index * 7))}" for index in range(variants)]


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write request lines to a file that bench/post.lua reads, and return its path."""
    path.write_text("\n".join(lines) + "\n")
    return path
