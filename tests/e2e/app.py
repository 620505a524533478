"""The user functions the end-to-end tests run the local service with (``iii-stream local --app``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iii_stream.app import App

app = App()
CALLS = Path(__file__).with_name(".calls.jsonl")  # what the functions saw, for the tests to read


def _record(name: str, event: Any) -> None:
    with CALLS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"function": name, "event": event}) + "\n")


@app.auth("auth::token")
def auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Tokens come as ?token= or as the subprotocol Authorization, <token>; "user-..." tokens pass."""
    token = (event["query_params"].get("token") or [""])[0]
    offered = event["headers"].get("sec-websocket-protocol", "")
    if not token and "," in offered:
        token = offered.split(",", 1)[1].strip()
    if not token.startswith("user-"):
        return {"unauthorized": True}
    return {"context": {"user": token}}


@app.function("rooms::join-gate")
def join_gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record("join", event)
    return {"unauthorized": event["group_id"].startswith("private-")}


@app.function("rooms::on-leave")
def on_leave(event: dict[str, Any], context: Any) -> None:
    _record("leave", event)


@app.function("rooms::on-change")
def on_change(event: dict[str, Any], context: Any) -> None:
    _record("change", event)


app.trigger("stream:join", "rooms::join-gate", {"stream_name": "rooms"}, id="gate")
app.trigger("stream:leave", "rooms::on-leave", {"stream_name": "rooms"}, id="leave")
app.trigger("stream", "rooms::on-change", {"stream_name": "rooms"}, id="change")
