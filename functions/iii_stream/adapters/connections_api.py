"""The Poster port on API Gateway's ``@connections`` API (or the local gateway's, via endpoint_url)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iii_stream.core.errors import ConnectionGoneError, PostError

log = logging.getLogger(__name__)

# botocore already retries throttling and 5xx (3 attempts); these are ours on top, with backoff.
_ATTEMPTS: Final = 3
_BACKOFF_SECONDS: Final = 0.05
_THROTTLING: Final = frozenset({"LimitExceededException", "TooManyRequestsException", "ThrottlingException"})
_RETRYABLE: Final = frozenset(
    {
        "LimitExceededException",
        "TooManyRequestsException",
        "ThrottlingException",
        "InternalServerErrorException",
        "ServiceUnavailableException",
        "500",
        "502",
        "503",
        "504",
    }
)


class ConnectionsApiPoster:
    """Posts frames with ``PostToConnection``; a 410 becomes ConnectionGoneError."""

    def __init__(self, client: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep

    def alive(self, connection_id: str) -> bool:
        try:
            self._client.get_connection(ConnectionId=connection_id)
        except ClientError as exc:
            if _gone(exc):
                return False
            raise PostError(f"{_code(exc) or 'ClientError'} checking {connection_id}") from exc
        except BotoCoreError as exc:
            raise PostError(f"{type(exc).__name__} checking {connection_id}: {exc}") from exc
        return True

    def post(self, connection_id: str, data: bytes) -> int:
        throttles = 0  # ours: botocore's own retries of a throttle are not seen here
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self._client.post_to_connection(ConnectionId=connection_id, Data=data)
                return throttles
            except ClientError as exc:
                if _gone(exc):
                    raise ConnectionGoneError(connection_id) from exc
                code = _code(exc)
                throttles += code in _THROTTLING
                if code not in _RETRYABLE or attempt == _ATTEMPTS:
                    raise PostError(f"{code or 'ClientError'} posting to {connection_id}") from exc
            except BotoCoreError as exc:
                if attempt == _ATTEMPTS:
                    raise PostError(f"{type(exc).__name__} posting to {connection_id}: {exc}") from exc
            self._sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("not reached: the last attempt returns or raises")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _gone(exc: ClientError) -> bool:
    """A 410: API Gateway no longer holds the connection."""
    return _code(exc) == "GoneException" or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410
