"""Every error the package raises on purpose, under one root: a wire ``code`` and a ``message``.

``StreamError`` and its subclasses are what a function's caller sees, exactly as the original iii
engine's ErrorBody (``{"code": ..., "message": ...}``); the router turns them into the result. The
others stay inside: adapters raise them, the core decides what they mean (a 410 removes a
connection, a conflict retries a write) and each edge logs what is left with its code.
"""

from __future__ import annotations

from typing import Any


class IiiStreamError(Exception):
    """The root: a stable ``code`` and a human ``message``."""

    code = "IIIS_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class StreamError(IiiStreamError):
    """A function failed; ``code`` and ``message`` are what the caller sees."""

    code = "STREAM_ERROR"


class DeserializationError(StreamError):
    """The input does not have the function's shape (upstream ``deserialization_error``)."""

    code = "deserialization_error"


class FunctionNotFoundError(StreamError):
    """No function is registered under the requested id."""

    code = "function_not_found"


class InvalidInvocationError(StreamError):
    """The Lambda event is not ``{"function_id": "...", "payload": {...}}``."""

    code = "invalid_invocation"


class PayloadTooLargeError(StreamError):
    """The item or event would not fit in one API Gateway WebSocket message (128 KB)."""

    code = "STREAM_PAYLOAD_TOO_LARGE"


class NameTooLongError(StreamError):
    """A stream, group or item name is longer than DynamoDB's key limits allow."""

    code = "STREAM_NAME_TOO_LONG"


class StoreError(IiiStreamError):
    """A table failed (raised by adapters; the service maps it to its STREAM_*_ERROR)."""

    code = "STORE_ERROR"


class RemovalStoppedError(StoreError):
    """A connection's removal stopped half-way (a table failed): ``removed`` are the subscriptions it did remove,
    whose leaves are still owed; the connection row is left for the sweeper to finish."""

    def __init__(self, message: str, removed: list[Any]) -> None:
        super().__init__(message)
        self.removed = removed


class ConflictError(StoreError):
    """A conditional write lost: the record changed (or appeared, or vanished) since it was read.

    ``current`` holds the record as DynamoDB returned it with the failure, when the request asked for it.
    """

    code = "CONFLICT"

    def __init__(self, message: str, current: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.current = current


class ConnectionGoneError(IiiStreamError):
    """The WebSocket connection no longer exists (HTTP 410 from @connections)."""

    code = "GONE"

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id


class PostError(IiiStreamError):
    """Delivering a frame failed for a reason that may pass (throttling, a 5xx) after retries."""

    code = "POST_FAILED"


class FunctionFailedError(IiiStreamError):
    """A user function (auth, join gate, trigger handler) raised, timed out or could not be called."""

    code = "FUNCTION_FAILED"


class BadFrameError(IiiStreamError):
    """A client frame the protocol does not know (ignored, never fatal)."""

    code = "BAD_FRAME"


class SettingsError(IiiStreamError):
    """A required setting is missing or malformed."""

    code = "SETTINGS_ERROR"
