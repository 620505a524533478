"""The ``$connect`` handshake: the auth function, the subprotocol echo, the stored context."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iii_stream.core.errors import FunctionFailedError
from iii_stream.core.ports import Clock, Connection, ConnectionStore, FunctionInvoker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectRequest:
    """What the handshake carries, already taken out of the API Gateway event."""

    connection_id: str
    headers: Mapping[str, str]
    query_params: Mapping[str, list[str]]
    source_ip: str
    path: str = "/"
    connected_at: int | None = None  # the gateway's own stamp (requestContext.connectedAt), when it gives one

    def auth_input(self) -> dict[str, Any]:
        """The original's auth_function input: lower-case header names, query values as lists."""
        return {
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "path": self.path,
            "query_params": {key: list(values) for key, values in self.query_params.items() if key},
            "addr": f"{self.source_ip}:0",
        }

    def offered_subprotocols(self) -> list[str]:
        offered = next((v for k, v in self.headers.items() if k.lower() == "sec-websocket-protocol"), "")
        return [part.strip() for part in offered.split(",") if part.strip()]


@dataclass(frozen=True)
class ConnectResponse:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)

    def to_lambda(self) -> dict[str, Any]:
        response: dict[str, Any] = {"statusCode": self.status_code}
        if self.headers:
            response["headers"] = self.headers
        return response


@dataclass(frozen=True)
class AuthPolicy:
    function_ref: str | None = None
    fail_open: bool = False


class ConnectService:
    """Accepts or refuses a socket, and records accepted ones with their auth context."""

    def __init__(
        self, connections: ConnectionStore, invoker: FunctionInvoker | None, clock: Clock, policy: AuthPolicy
    ) -> None:
        self._connections = connections
        self._invoker = invoker
        self._clock = clock
        self._policy = policy

    def connect(self, request: ConnectRequest) -> ConnectResponse:
        accepted, context = self._authenticate(request)
        if not accepted:
            return ConnectResponse(401)
        connected_at = request.connected_at or self._clock.now_ms()
        self._connections.save_connection(Connection(request.connection_id, connected_at, context))
        return ConnectResponse(200, _echo(request.offered_subprotocols()))

    def _authenticate(self, request: ConnectRequest) -> tuple[bool, Any]:
        if not self._policy.function_ref:
            return True, None
        assert self._invoker is not None, "an auth function needs a FunctionInvoker"
        try:
            result = self._invoker.invoke(self._policy.function_ref, request.auth_input())
        except FunctionFailedError as exc:
            log.warning("auth function %s failed: %s", self._policy.function_ref, exc)
            return self._policy.fail_open, None
        if isinstance(result, dict) and result.get("unauthorized") is True:
            return False, None
        if not isinstance(result, dict):
            log.warning("auth function %s returned %r, not {context}", self._policy.function_ref, result)
            return self._policy.fail_open, None
        return True, result.get("context")


def _echo(offered: list[str]) -> dict[str, str]:
    """Browsers and Node's ws abort unless one offered subprotocol comes back; prefer ``Authorization``."""
    if not offered:
        return {}
    chosen = "Authorization" if "Authorization" in offered else offered[0]
    return {"Sec-WebSocket-Protocol": chosen}
