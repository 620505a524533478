"""The limits the service enforces, each defined once (AWS's, and ours where AWS leaves a choice)."""

from __future__ import annotations

from typing import Final

# API Gateway refuses WebSocket messages (and PostToConnection bodies) over 128 KB.
MAX_MESSAGE_BYTES: Final = 128 * 1024
# API Gateway closes a connection idle this long (not raisable); the sweeper first checks a connection then.
API_GATEWAY_IDLE_TIMEOUT_MS: Final = 10 * 60 * 1000
# The longest stream name, group id or item id, in UTF-8 bytes: DynamoDB's key limits (2048 bytes for a
# partition key, 1024 for a sort key) leave room for every key built from such names.
MAX_NAME_BYTES: Final = 512
# How many levels of arrays and objects a stored or sent value may nest: the original's JSON parser limit (serde_json).
MAX_JSON_DEPTH: Final = 128


def name_bytes_over(name: str) -> int | None:
    """The name's UTF-8 size when it is over MAX_NAME_BYTES, else None."""
    size = len(name.encode("utf-8"))
    return size if size > MAX_NAME_BYTES else None
