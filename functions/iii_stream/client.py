"""A small Python client for the stream and registry functions: the same API locally and on AWS.

Examples
--------
>>> client = StreamClient.via_lambda()                     # the local service on 127.0.0.1:3001
>>> client.set("chat", "room-1", "msg-1", {"text": "hi"})  # doctest: +SKIP
{'old_value': None, 'new_value': {'text': 'hi'}}
>>> registry = RegistryClient.via_lambda()                 # doctest: +SKIP
>>> registry.register_trigger("stream", "presence::on-change", {"stream_name": "presence"})  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iii_stream.core.errors import IiiStreamError

if TYPE_CHECKING:
    from iii_stream.core.registry import RegistryService
    from iii_stream.core.service import StreamService

LOCAL_LAMBDA_ENDPOINT = "http://127.0.0.1:3001"
DEFAULT_FUNCTION_NAME = "StreamFunction"
REGISTRY_FUNCTION_NAME = "RegistryFunction"

Transport = Callable[[dict[str, Any]], Any]


class StreamCallError(IiiStreamError):
    """A function answered with an error body ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _lambda_client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    if endpoint_url:
        # The local endpoint needs no credentials and lives in no region.
        config = Config(signature_version=UNSIGNED, region_name="us-east-1", retries={"mode": "standard"})
        return boto3.client("lambda", endpoint_url=endpoint_url, config=config)
    return boto3.client("lambda")


class _Client:
    default_function_name = DEFAULT_FUNCTION_NAME

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @classmethod
    def via_lambda(
        cls,
        function_name: str | None = None,
        *,
        lambda_client: Any = None,
        endpoint_url: str | None = LOCAL_LAMBDA_ENDPOINT,
    ) -> Any:
        """Invoke the Lambda: the local service by default, AWS with ``endpoint_url=None``."""
        client = lambda_client or _lambda_client(endpoint_url)
        return cls(_LambdaTransport(client, function_name or cls.default_function_name))

    def call(self, function_id: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._transport({"function_id": function_id, "payload": payload if payload is not None else {}})
        if isinstance(response, dict) and "error" in response:
            error = response["error"]
            raise StreamCallError(str(error.get("code")), str(error.get("message")))
        if not isinstance(response, dict) or "result" not in response:
            raise StreamCallError("invalid_response", f"The function answered {response!r}.")
        return response["result"]


class StreamClient(_Client):
    """Calls ``stream::*`` functions through a transport that takes ``{"function_id", "payload"}``."""

    @classmethod
    def direct(cls, service: StreamService) -> StreamClient:
        """Run the functions in this process over a StreamService (tests, scripts against a DynamoDB endpoint)."""
        from iii_stream.core.service import STREAM_FUNCTIONS

        return cls(lambda event: STREAM_FUNCTIONS.invoke(service, event))

    def set(self, stream_name: str, group_id: str, item_id: str, data: Any, ttl: int | None = None) -> Any:
        payload = {"stream_name": stream_name, "group_id": group_id, "item_id": item_id, "data": data}
        return self.call("stream::set", payload if ttl is None else {**payload, "ttl": ttl})

    def get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        return self.call("stream::get", {"stream_name": stream_name, "group_id": group_id, "item_id": item_id})

    def delete(self, stream_name: str, group_id: str, item_id: str) -> Any:
        return self.call("stream::delete", {"stream_name": stream_name, "group_id": group_id, "item_id": item_id})

    def update(
        self, stream_name: str, group_id: str, item_id: str, ops: builtins.list[dict[str, Any]], ttl: int | None = None
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


class RegistryClient(_Client):
    """Registers functions (function id -> Lambda name or ARN) and triggers."""

    default_function_name = REGISTRY_FUNCTION_NAME

    @classmethod
    def direct(cls, service: RegistryService) -> RegistryClient:
        from iii_stream.core.registry import REGISTRY_FUNCTIONS

        return cls(lambda event: REGISTRY_FUNCTIONS.invoke(service, event))

    def register_function(self, function_id: str, target: str, description: str = "") -> Any:
        return self.call(
            "registry::register_function", {"function_id": function_id, "target": target, "description": description}
        )

    def unregister_function(self, function_id: str) -> Any:
        return self.call("registry::unregister_function", {"function_id": function_id})

    def list_functions(self) -> Any:
        return self.call("registry::list_functions")

    def register_trigger(
        self,
        type: str,
        function_id: str,
        config: dict[str, Any] | None = None,  # noqa: A002
        id: str | None = None,
    ) -> Any:  # noqa: A002
        payload: dict[str, Any] = {"type": type, "function_id": function_id, "config": config or {}}
        return self.call("registry::register_trigger", payload if id is None else {**payload, "id": id})

    def unregister_trigger(self, id: str) -> Any:  # noqa: A002
        return self.call("registry::unregister_trigger", {"id": id})

    def list_triggers(self) -> Any:
        return self.call("registry::list_triggers")


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
