"""The Lambda authorizer of an app's ``auth=True`` HTTP routes on AWS (what ``iii-stream package`` deploys).

API Gateway HTTP API calls it with its authorizer event (payload format 2.0, simple responses, no identity
sources, so no caching). It hands the app's auth function the same input the local HTTP server gives it
(``infra/local/http_events.auth_input``) and as ``$connect`` does, ``{headers, path, query_params, addr}``,
built by the same ``ConnectRequest.auth_input``:

- ``headers``: the event's ``headers`` (HTTP API already lower-cases the names and joins repeated headers with
  commas), names lower-cased again, with the event's ``cookies`` put back as one ``cookie`` header (``"; "``
  between them), as the local server does;
- ``query_params``: every value of every key, in order, read from ``rawQueryString`` (so a repeated key or a
  value holding a comma survives; ``queryStringParameters`` joins repeats with commas). An event without
  ``rawQueryString`` falls back to ``queryStringParameters``, each value a list of one;
- ``path``: ``rawPath`` as HTTP API gives it (percent-decoded), else ``requestContext.http.path``, else ``/``;
- ``addr``: ``<requestContext.http.sourceIp>:0`` (API Gateway gives no port).

The headers API Gateway adds itself (``x-forwarded-for``, ``x-forwarded-port``, ``x-forwarded-proto``,
``x-amzn-trace-id``) reach the auth function on AWS, as they do at ``$connect``; the local server adds none.

The answer is read as the local server reads it (``authorizer_context``): ``{"unauthorized": true}`` is
``{"isAuthorized": false}`` (HTTP API answers 403); ``{"context": {...}}`` (or no or a null context, ``{}``) is
``{"isAuthorized": true, "context": ...}``, the route's ``requestContext.authorizer.lambda``. An answer that is not
an object, or a context that is not an object, raises ValueError, and so does a failing auth function: API Gateway
answers 500, as the local server does.

>>> def auth(event, context):
...     token = (event["query_params"].get("token") or [""])[0]
...     return {"context": {"user": token}} if token else {"unauthorized": True}
>>> handler = authorizer(auth)
>>> handler({"rawPath": "/me", "rawQueryString": "token=alice", "headers": {},
...          "requestContext": {"http": {"sourceIp": "10.0.0.1"}}}, None)
{'isAuthorized': True, 'context': {'user': 'alice'}}
>>> handler({"rawPath": "/me", "rawQueryString": "", "headers": {}, "requestContext": {}}, None)
{'isAuthorized': False}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from iii_stream.app import App
from iii_stream.core.connect import ConnectRequest

Handler = Callable[[Any, Any], Any]


def auth_input(event: Mapping[str, Any]) -> dict[str, Any]:
    """An HTTP API authorizer event (payload 2.0) -> the auth function's ``{headers, path, query_params, addr}``."""
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    cookies = [str(cookie) for cookie in event.get("cookies") or []]
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    http = (event.get("requestContext") or {}).get("http") or {}
    path = event.get("rawPath") or http.get("path") or "/"
    source_ip = str(http.get("sourceIp") or "")
    request = ConnectRequest("", headers, _query(event), source_ip, path=str(path))
    return request.auth_input()


def _query(event: Mapping[str, Any]) -> dict[str, list[str]]:
    raw = event.get("rawQueryString")
    query: dict[str, list[str]] = {}
    if isinstance(raw, str):
        for key, value in parse_qsl(raw, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        return query
    return {str(key): [str(value)] for key, value in (event.get("queryStringParameters") or {}).items()}


def simple_response(answer: Any) -> dict[str, Any]:
    """The auth function's answer -> the simple response of an HTTP API Lambda authorizer (raises ValueError)."""
    if not isinstance(answer, dict):
        raise ValueError(f"the auth function answered {type(answer).__name__}, not an object")
    if answer.get("unauthorized") is True:
        return {"isAuthorized": False}
    context = answer.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ValueError(f"the auth context is {type(context).__name__}; an HTTP API authorizer context is an object")
    return {"isAuthorized": True, "context": context}


def authorizer(auth_handler: Handler) -> Handler:
    """The authorizer Lambda handler: the auth function called in this process, its answer mapped."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return simple_response(auth_handler(auth_input(event), context))

    return handler


def authorizer_for(app: App) -> Handler:
    """The authorizer of an app's ``auth=True`` routes (its ``@app.auth`` function); ValueError without one."""
    if not app.auth_function_id or app.auth_function_id not in app.functions:
        raise ValueError("the app declares no auth function (@app.auth): its auth=True routes cannot be authorized")
    return authorizer(app.functions[app.auth_function_id])
