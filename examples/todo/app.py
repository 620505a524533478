"""A shared live to-do list: the user functions behind the example page (``iii-stream local --app``).

- ``todo::auth``: every socket names its user, as the token in ``Sec-WebSocket-Protocol: Authorization, <name>``
  (what the page sends) or as ``?token=<name>``; a missing or malformed name refuses the socket (HTTP 401).
- ``todo::join-gate``: anyone may join a list, except ``private-<name>`` lists, which only <name> may join.
- ``todo::on-change``: after each change of a list (stream ``todo``), recounts it into the item
  ``todo-summary/<list>/summary`` that the page shows ("3 to do, 1 done").

Locally, ``iii-stream local --app examples/todo/app.py`` serves these functions; on AWS each is a Lambda
handler (``Handler: app.on_change`` and so on).
"""

from __future__ import annotations

import os
import re
from typing import Any

from iii_stream.app import App
from iii_stream.client import StreamClient

app = App()

TODO = "todo"
SUMMARY = "todo-summary"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # characters a subprotocol value may hold


@app.auth("todo::auth")
def auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``$connect``: input ``{headers, path, query_params, addr}``; the context flows into join payloads."""
    token = (event["query_params"].get("token") or [""])[0]
    offered = event["headers"].get("sec-websocket-protocol", "")  # "Authorization, alice" (browsers add the space)
    if not token and "," in offered:
        token = offered.split(",", 1)[1].strip()
    if not _NAME.match(token):
        return {"unauthorized": True}
    return {"context": {"user": token}}


@app.function("todo::join-gate")
def join_gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``stream:join``: input ``{subscription_id, stream_name, group_id, id, context}``; a refused join gets
    an ``unauthorized`` frame (the socket stays open)."""
    group: str = event["group_id"]
    user = (event.get("context") or {}).get("user")
    if group.startswith("private-"):
        return {"unauthorized": group != f"private-{user}"}
    return {"unauthorized": False}


@app.function("todo::on-change")
def on_change(event: dict[str, Any], context: Any) -> None:
    """``stream`` trigger: ``event`` is the change as clients get it (``{streamName, groupId, id, event}``)."""
    if event["event"]["type"] == "event":  # a stream::send, not a change of the list
        return
    client = _client()
    group = event["groupId"]
    # Changes are handled concurrently: a recount that raced with a later change checks again after its write.
    for _ in range(3):
        summary = _count(client.list(TODO, group))
        client.set(SUMMARY, group, "summary", summary)
        if _count(client.list(TODO, group)) == summary:
            return


def _count(items: list[Any]) -> dict[str, Any]:
    done = sum(1 for item in items if isinstance(item, dict) and item.get("done"))
    return {"id": "summary", "total": len(items), "done": done, "open": len(items) - done}


def _client() -> StreamClient:
    # Locally AWS_ENDPOINT_URL_LAMBDA points boto3 at the local service; on AWS, set STREAM_FUNCTION_NAME.
    client: StreamClient = StreamClient.via_lambda(os.environ.get("STREAM_FUNCTION_NAME"), endpoint_url=None)
    return client


app.trigger("stream:join", "todo::join-gate", {"stream_name": TODO}, id="todo-join-gate")
app.trigger("stream:join", "todo::join-gate", {"stream_name": SUMMARY}, id="todo-summary-join-gate")
app.trigger("stream", "todo::on-change", {"stream_name": TODO}, id="todo-on-change")
