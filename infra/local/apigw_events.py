"""Build the exact API Gateway WebSocket proxy events (aws-wire-shapes.md 1) for the real route handlers."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROUTE_KEYS = ("join", "leave")


def new_id() -> str:
    """16 characters of URL-safe base64 ending in '=', like API Gateway's connection and request ids."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def select_route(body: str) -> str:
    """Route selection on ``$request.body.type``: exact, case-sensitive, else ``$default``.

    Total, as API Gateway's is: a body that is not JSON, or JSON Python cannot read (nested deeper than
    its recursion limit, an integer over its 4,300 digits), goes to ``$default`` like any other.
    """
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return "$default"
    route = value.get("type") if isinstance(value, dict) else None
    return route if isinstance(route, str) and route in ROUTE_KEYS else "$default"


@dataclass(frozen=True)
class ApiContext:
    """The parts of ``requestContext`` fixed per API and per connection."""

    api_id: str = "local"
    stage: str = "local"
    domain_name: str = "127.0.0.1:3112"


def _request_context(
    api: ApiContext,
    connection_id: str,
    connected_at: int,
    route_key: str,
    event_type: str,
    source_ip: str,
    user_agent: str | None,
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    request_id = new_id()
    identity: dict[str, Any] = {"sourceIp": source_ip}
    if user_agent:
        identity = {"userAgent": user_agent, "sourceIp": source_ip}
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now / 1000)),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": connected_at,
        "requestTimeEpoch": now,
        "identity": identity,
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": connection_id,
        "apiId": api.api_id,
    }


def connect_event(
    api: ApiContext,
    connection_id: str,
    connected_at: int,
    headers: Mapping[str, str],
    query: Mapping[str, list[str]],
    source_ip: str,
) -> dict[str, Any]:
    user_agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), None)
    event: dict[str, Any] = {
        "headers": dict(headers),
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
    }
    if query:
        event["queryStringParameters"] = {key: values[-1] for key, values in query.items()}
        event["multiValueQueryStringParameters"] = {key: list(values) for key, values in query.items()}
    event["requestContext"] = _request_context(
        api, connection_id, connected_at, "$connect", "CONNECT", source_ip, user_agent
    )
    event["isBase64Encoded"] = False
    return event


def message_event(
    api: ApiContext, connection_id: str, connected_at: int, body: str, source_ip: str, user_agent: str | None = None
) -> dict[str, Any]:
    context = _request_context(api, connection_id, connected_at, select_route(body), "MESSAGE", source_ip, user_agent)
    context = {"routeKey": context.pop("routeKey"), "messageId": new_id(), **context}
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    api: ApiContext,
    connection_id: str,
    connected_at: int,
    status_code: int,
    reason: str,
    source_ip: str,
    user_agent: str | None = None,
) -> dict[str, Any]:
    headers = {"Host": api.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _request_context(api, connection_id, connected_at, "$disconnect", "DISCONNECT", source_ip, user_agent)
    context = {"routeKey": context.pop("routeKey"), "disconnectStatusCode": status_code, **context}
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
