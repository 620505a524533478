"""The FunctionInvoker port on Lambda ``Invoke`` (AWS, or the local service's endpoint)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iii_stream.core.errors import FunctionFailedError


class LambdaInvoker:
    """Calls a function by Lambda name or ARN and returns its JSON result."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def invoke(self, function_ref: str, payload: Any) -> Any:
        try:
            response = self._client.invoke(FunctionName=function_ref, Payload=json.dumps(payload).encode("utf-8"))
            body = response["Payload"].read()
        except (ClientError, BotoCoreError) as exc:
            raise FunctionFailedError(f"calling {function_ref} failed: {exc}") from exc
        try:
            result = json.loads(body) if body else None
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python's json can read
            raise FunctionFailedError(f"{function_ref} returned something that is not JSON") from exc
        if response.get("FunctionError"):
            message = result.get("errorMessage") if isinstance(result, dict) else result
            raise FunctionFailedError(f"{function_ref} raised: {message}")
        return result

    def invoke_async(self, function_ref: str, payload: Any) -> None:
        try:
            self._client.invoke(
                FunctionName=function_ref, InvocationType="Event", Payload=json.dumps(payload).encode("utf-8")
            )
        except (ClientError, BotoCoreError) as exc:
            raise FunctionFailedError(f"queueing a call to {function_ref} failed: {exc}") from exc
