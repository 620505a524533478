"""A small Python client for the stream functions: the same API locally and on AWS.

Examples
--------
>>> client = StreamClient.via_lambda()                     # the local service on 127.0.0.1:3001
>>> client.set("chat", "room-1", "msg-1", {"text": "hi"})  # doctest: +SKIP
{'old_value': None, 'new_value': {'text': 'hi'}}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

LOCAL_LAMBDA_ENDPOINT = "http://127.0.0.1:3001"
DEFAULT_FUNCTION_NAME = "StreamFunction"

Transport = Callable[[dict[str, Any]], Any]


class StreamCallError(Exception):
    """A stream function answered with an error body ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class StreamClient:
    """Calls ``stream::*`` functions through a transport that takes ``{"function_id", "payload"}``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @classmethod
    def via_lambda(
        cls,
        function_name: str = DEFAULT_FUNCTION_NAME,
        *,
        lambda_client: Any = None,
        endpoint_url: str | None = LOCAL_LAMBDA_ENDPOINT,
    ) -> StreamClient:
        """Invoke the stream Lambda: the local service by default, AWS with ``endpoint_url=None``."""
        if lambda_client is None:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            if endpoint_url:
                # The local endpoint needs no credentials and lives in no region.
                config = Config(signature_version=UNSIGNED, region_name="us-east-1", retries={"mode": "standard"})
                lambda_client = boto3.client("lambda", endpoint_url=endpoint_url, config=config)
            else:
                lambda_client = boto3.client("lambda")
        return cls(_LambdaTransport(lambda_client, function_name))

    @classmethod
    def direct(cls, service: Any) -> StreamClient:
        """Run the functions in this process over a StreamService (tests, scripts against a DynamoDB endpoint)."""
        from iii_stream.core import dispatch

        return cls(lambda event: dispatch.invoke(service, event))

    def call(self, function_id: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._transport({"function_id": function_id, "payload": payload if payload is not None else {}})
        if isinstance(response, dict) and "error" in response:
            error = response["error"]
            raise StreamCallError(str(error.get("code")), str(error.get("message")))
        if not isinstance(response, dict) or "result" not in response:
            raise StreamCallError("invalid_response", f"The stream function answered {response!r}.")
        return response["result"]

    def set(self, stream_name: str, group_id: str, item_id: str, data: Any, ttl: int | None = None) -> Any:
        payload = {"stream_name": stream_name, "group_id": group_id, "item_id": item_id, "data": data}
        return self.call("stream::set", payload if ttl is None else {**payload, "ttl": ttl})

    def get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        return self.call("stream::get", {"stream_name": stream_name, "group_id": group_id, "item_id": item_id})

    def delete(self, stream_name: str, group_id: str, item_id: str) -> Any:
        return self.call("stream::delete", {"stream_name": stream_name, "group_id": group_id, "item_id": item_id})

    def update(
        self, stream_name: str, group_id: str, item_id: str, ops: list[dict[str, Any]], ttl: int | None = None
    ) -> Any:
        payload = {"stream_name": stream_name, "group_id": group_id, "item_id": item_id, "ops": ops}
        return self.call("stream::update", payload if ttl is None else {**payload, "ttl": ttl})

    def send(self, stream_name: str, group_id: str, type: str, data: Any, id: str | None = None) -> Any:  # noqa: A002
        payload = {"stream_name": stream_name, "group_id": group_id, "type": type, "data": data, "id": id}
        return self.call("stream::send", payload)

    def list(self, stream_name: str, group_id: str) -> Any:
        return self.call("stream::list", {"stream_name": stream_name, "group_id": group_id})

    def list_groups(self, stream_name: str) -> Any:
        return self.call("stream::list_groups", {"stream_name": stream_name})

    def list_all(self) -> Any:
        return self.call("stream::list_all", {})


class _LambdaTransport:
    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function_name = function_name

    def __call__(self, event: dict[str, Any]) -> Any:
        response = self._client.invoke(FunctionName=self._function_name, Payload=json.dumps(event).encode())
        body = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = body.get("errorMessage", body) if isinstance(body, dict) else body
            raise StreamCallError("function_error", f"{self._function_name} failed: {message}")
        return body
