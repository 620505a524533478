"""Answer an AWS call at the client boundary: what a botocore ``before-call`` hook returns instead of a request.

moto cannot produce some faults (410 from @connections, throttling, a 5xx) and the benchmarks simulate
latency without a server; both answer the call here, with the HTTP response object botocore expects
next to the parsed one.
"""

from __future__ import annotations

from typing import Any


class HttpAnswer:
    """The minimal HTTP response botocore reads when a hook answers (status, headers, body)."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.raw = None
        self.content = b""


def success(status: int = 200, **parsed: Any) -> tuple[HttpAnswer, dict[str, Any]]:
    """A successful answer; ``parsed`` are the operation's output members."""
    return HttpAnswer(status), {**parsed, "ResponseMetadata": {"HTTPStatusCode": status}}


def error(status: int, code: str, message: str = "") -> tuple[HttpAnswer, dict[str, Any]]:
    """A modelled or unmodelled service error, raised by botocore as a ClientError with ``code``."""
    return HttpAnswer(status), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
