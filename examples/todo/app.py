"""A shared live to-do list: the user functions and HTTP routes behind the example page (``iii-stream local --app``).

- ``todo::auth``: every socket and every HTTP request names its user with a token: ``Sec-WebSocket-Protocol:
  Authorization, <name>`` (what the page's socket sends), ``Authorization: Bearer <name>`` (what its requests
  send) or ``?token=<name>``; a missing or malformed name refuses the socket (HTTP 401) or the request (403).
- ``todo::join-gate``: anyone may join a list, except ``private-<name>`` lists, which only <name> may join.
- ``todo::on-change``: after each change of a list (stream ``todo``), recounts it into the item
  ``todo-summary/<list>/summary`` that the page shows ("3 to do, 1 done").
- The routes the page writes through, each behind the auth function (a ``private-<name>`` list is only <name>'s):
  ``GET /todos/{list}`` (the items), ``POST /todos/{list}`` ``{"title"}`` (adds an item, 201),
  ``PATCH /todos/{list}/{id}`` ``{"done"}`` (sets it; without a body, toggles it), ``DELETE /todos/{list}/{id}``
  (204). They write with ``StreamClient``, so every page open on the list sees the change at once.

Locally, ``iii-stream local --app examples/todo/app.py`` serves these functions, and the routes on
``http://127.0.0.1:3000``; on AWS each is a Lambda handler (``Handler: app.on_change`` and so on).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import uuid
from typing import Any

from iii_stream.app import App
from iii_stream.client import StreamClient

app = App()

TODO = "todo"  # one group per list, one item per to-do: {"id", "title", "done", "by", "created"}
SUMMARY = "todo-summary"  # the item <list>/summary: {"id", "total", "done", "open"}
MAX_TITLE = 200
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # what a subprotocol value (the browser's token) may hold


# --- who may connect, and join what -------------------------------------------------------------------------


@app.auth("todo::auth")
def auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Input ``{headers, path, query_params, addr}`` (header names lower case, query values lists)."""
    token = _token(event.get("headers") or {}, event.get("query_params") or {})
    if not _NAME.match(token):
        return {"unauthorized": True}  # a socket gets HTTP 401, a request 403
    return {"context": {"user": token}}


def _token(headers: dict[str, str], query: dict[str, list[str]]) -> str:
    token = (query.get("token") or [""])[0]
    if token:
        return token
    offered = headers.get("sec-websocket-protocol", "")  # "Authorization, alice"
    if "," in offered:
        return offered.split(",", 1)[1].strip()
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


@app.function("todo::join-gate")
def join_gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Input ``{subscription_id, stream_name, group_id, id, context}``; refused, the client gets ``unauthorized``."""
    user = (event.get("context") or {}).get("user")
    return {"unauthorized": not _may_use(user, event["group_id"])}


def _may_use(user: Any, group: str) -> bool:
    return not group.startswith("private-") or (isinstance(user, str) and group == f"private-{user}")


# --- what follows a change ----------------------------------------------------------------------------------


@app.function("todo::on-change")
def on_change(event: dict[str, Any], context: Any) -> None:
    """``event`` is the change as subscribers get it: ``{streamName, groupId, id, timestamp, event}``."""
    if event["event"]["type"] == "event":  # a stream::send, not a change of the list
        return
    client = _client()
    group = event["groupId"]
    # Changes are handled concurrently: a count that raced with a later change counts again after its write.
    for _ in range(3):
        summary = _count(client.list(TODO, group))
        client.set(SUMMARY, group, "summary", summary)
        if _count(client.list(TODO, group)) == summary:
            return


def _count(items: list[Any]) -> dict[str, Any]:
    done = sum(1 for item in items if isinstance(item, dict) and item.get("done"))
    return {"id": "summary", "total": len(items), "done": done, "open": len(items) - done}


# --- HTTP routes: API Gateway HTTP API events (payload 2.0), Lambda proxy answers ----------------------------


@app.http("GET", "/todos/{list}", auth=True, function_id="todo::list")
def list_todos(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _refuse(event)
    if refused:
        return refused
    return _answer(200, _client().list(TODO, _list(event)))


@app.http("POST", "/todos/{list}", auth=True, function_id="todo::add")
def add_todo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _refuse(event)
    if refused:
        return refused
    body = _body(event)
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        return _answer(400, {"message": f'the body must be {{"title": "..."}}, 1 to {MAX_TITLE} characters'})
    item_id = uuid.uuid4().hex[:12]
    item = {"id": item_id, "title": title.strip(), "done": False, "by": _user(event), "created": _now_ms()}
    _client().set(TODO, _list(event), item_id, item)  # data.id = the item id: the clients key on it
    return _answer(201, item)


@app.http("PATCH", "/todos/{list}/{id}", auth=True, function_id="todo::toggle")
def toggle_todo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _refuse(event)
    if refused:
        return refused
    body = _body(event)
    if not isinstance(body, dict) or not isinstance(body.get("done", False), bool):
        return _answer(400, {"message": 'the body must be empty (toggle) or {"done": true|false}'})
    client, group, item_id = _client(), _list(event), event["pathParameters"]["id"]
    current = client.get(TODO, group, item_id)
    if not isinstance(current, dict):
        return _answer(404, {"message": f"no item {item_id!r} in {group!r}"})
    done = body["done"] if "done" in body else not current.get("done")
    result = client.update(TODO, group, item_id, [{"type": "set", "path": "done", "value": done}])
    if result.get("old_value") is None:  # deleted between the read and the update: do not bring it back
        client.delete(TODO, group, item_id)
        return _answer(404, {"message": f"no item {item_id!r} in {group!r}"})
    return _answer(200, result["new_value"])


@app.http("DELETE", "/todos/{list}/{id}", auth=True, function_id="todo::delete")
def delete_todo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _refuse(event)
    if refused:
        return refused
    group, item_id = _list(event), event["pathParameters"]["id"]
    if _client().delete(TODO, group, item_id).get("old_value") is None:
        return _answer(404, {"message": f"no item {item_id!r} in {group!r}"})
    return {"statusCode": 204}


def _user(event: dict[str, Any]) -> str:
    user: str = event["requestContext"]["authorizer"]["lambda"]["user"]  # the auth function's context
    return user


def _list(event: dict[str, Any]) -> str:
    group: str = event["pathParameters"]["list"]
    return group


def _refuse(event: dict[str, Any]) -> dict[str, Any] | None:
    if _may_use(_user(event), _list(event)):
        return None
    return _answer(403, {"message": f"the list {_list(event)!r} is not yours"})


def _body(event: dict[str, Any]) -> Any:
    """The request's JSON body (``{}`` when there is none), or None when it is not JSON."""
    raw = event.get("body") or ""
    try:
        text = base64.b64decode(raw).decode("utf-8") if event.get("isBase64Encoded") else raw
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return None


def _answer(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _now_ms() -> int:
    return int(time.time() * 1000)


_clients: list[StreamClient] = []
_clients_lock = threading.Lock()


def _client() -> StreamClient:
    """One client per process, made on first use (creating boto3 clients is not thread-safe). Locally
    AWS_ENDPOINT_URL_LAMBDA points boto3 at the local service; on AWS the packaged stack sets STREAM_FUNCTION_NAME."""
    with _clients_lock:
        if not _clients:
            _clients.append(StreamClient.via_lambda(os.environ.get("STREAM_FUNCTION_NAME"), endpoint_url=None))
        return _clients[0]


app.trigger("stream:join", "todo::join-gate", {"stream_name": TODO}, id="todo-join-gate")
app.trigger("stream:join", "todo::join-gate", {"stream_name": SUMMARY}, id="todo-summary-join-gate")
app.trigger("stream", "todo::on-change", {"stream_name": TODO}, id="todo-on-change")
