"""The error hierarchy of the stream functions.

Every error carries the wire ``code`` and ``message`` of the original iii engine's ErrorBody,
so a caller sees ``{"code": ..., "message": ...}`` exactly as upstream sends it.
"""

from __future__ import annotations

from typing import Any


class StreamError(Exception):
    """A stream function failed; ``code`` and ``message`` are what the caller sees."""

    code = "STREAM_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class DeserializationError(StreamError):
    """The input does not have the function's shape (upstream ``deserialization_error``)."""

    code = "deserialization_error"


class FunctionNotFoundError(StreamError):
    """No function is registered under the requested id."""

    code = "function_not_found"


class PayloadTooLargeError(StreamError):
    """The item or event would not fit in one API Gateway WebSocket message (128 KB)."""

    code = "STREAM_PAYLOAD_TOO_LARGE"


class NameTooLongError(StreamError):
    """A stream, group or item name is longer than DynamoDB's key limits allow."""

    code = "STREAM_NAME_TOO_LONG"


class StoreError(Exception):
    """The item store failed (raised by adapters, mapped to a STREAM_*_ERROR by the service)."""


class ConflictError(StoreError):
    """A conditional write lost a race: the item changed since it was read."""


class ConnectionGoneError(Exception):
    """The WebSocket connection no longer exists (HTTP 410 from @connections)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id


class PostError(Exception):
    """Delivering a frame failed for a reason that may pass (throttling, a 5xx) after retries."""


class FunctionFailedError(Exception):
    """A user function (auth, join gate, trigger handler) raised, timed out or could not be called."""
