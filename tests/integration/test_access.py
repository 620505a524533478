"""Access: what a WebSocket client can and cannot do, through the real handlers on moto.

A client can only join and leave; it cannot write, cannot forge the auth context its handlers see, gets
nothing from a group whose join gate refused it, and a refused token gets no socket and so no ``sync``.
The auth function, the join gate and a join recorder run behind a local Lambda endpoint; posts are captured
at the poster's transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

from tests.integration.realtime import CONNECTIONS, ITEMS, Realtime

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Realtime]:
    seen: dict[str, list[Any]] = {"joins": []}

    def auth(event: dict[str, Any], context: Any) -> Any:
        token = (event["query_params"].get("token") or [""])[0]
        return {"context": {"user": token, "role": "reader"}} if token.startswith("user-") else {"unauthorized": True}

    def gate(event: dict[str, Any], context: Any) -> Any:
        seen["joins"].append(event)
        return {"unauthorized": True} if event["group_id"] == "secret" else {}

    endpoint = LambdaEndpoint({"auth": auth, "gate": gate}, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    try:
        world = Realtime(monkeypatch, AUTH_FUNCTION="auth")
        world.register("registry::register_function", function_id="app::gate", target="gate")
        world.register("registry::register_trigger", type="stream:join", function_id="app::gate", config={})
        world.seen = seen  # type: ignore[attr-defined]
        yield world
    finally:
        endpoint.stop()


def _items(rt: Realtime) -> list[dict[str, Any]]:
    return list(rt.dynamodb.scan(TableName=ITEMS)["Items"])


NOT_JOIN_OR_LEAVE = [
    {"type": "set", "data": {"streamName": "chat", "groupId": "room", "id": "x", "data": {"pwned": True}}},
    {"type": "stream::set", "payload": {"stream_name": "chat", "group_id": "room", "item_id": "x", "data": 1}},
    {"function_id": "stream::set", "payload": {"stream_name": "chat", "group_id": "room", "item_id": "x", "data": 1}},
    {"type": "update", "data": {"streamName": "chat", "groupId": "room", "id": "a", "ops": []}},
    {"type": "delete", "data": {"streamName": "chat", "groupId": "room", "id": "a"}},
    {"type": "send", "data": {"streamName": "chat", "groupId": "room", "type": "x", "data": 1}},
    {"type": "sync", "data": []},
    {"function_id": "registry::register_trigger", "payload": {"type": "stream", "function_id": "app::gate"}},
]


@pytest.mark.parametrize("frame", NOT_JOIN_OR_LEAVE)
def test_a_client_can_only_join_and_leave_no_frame_writes_anything(rt: Realtime, frame: dict[str, Any]) -> None:
    # GIVEN a connected client with an item already stored
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    connection_id, _ = rt.connect(query={"token": ["user-ana"]})
    before_items = _items(rt)
    before_rows = rt.dynamodb.scan(TableName=CONNECTIONS)["Items"]
    triggers = rt.register("registry::list_triggers")

    # WHEN it sends a frame that is not a join or a leave (as text, through the $default or a join route)
    rt.send(connection_id, frame)

    # THEN nothing was written: not the items, not the connections, not the registry; nothing was posted
    assert _items(rt) == before_items
    assert rt.dynamodb.scan(TableName=CONNECTIONS)["Items"] == before_rows
    assert rt.register("registry::list_triggers") == triggers
    assert rt.frames(connection_id) == []


def test_an_auth_context_cannot_be_forged_from_frames(rt: Realtime) -> None:
    # GIVEN a client whose auth context says it is user-ana, a reader
    connection_id, _ = rt.connect(query={"token": ["user-ana"]})

    # WHEN its join frame claims another context
    data = {
        "streamName": "chat",
        "groupId": "room",
        "subscriptionId": "s1",
        "context": {"user": "admin", "role": "admin"},
        "auth": {"role": "admin"},
    }
    rt.send(connection_id, {"type": "join", "data": data, "context": {"role": "admin"}})

    # THEN the join gate saw the context the auth function gave, and so does the stored subscription
    [join] = rt.seen["joins"]  # type: ignore[attr-defined]
    assert join["context"] == {"user": "user-ana", "role": "reader"}
    rows = [row for row in rt.dynamodb.scan(TableName=CONNECTIONS)["Items"] if "context" in row]
    assert rows and all(json.loads(row["context"]["S"]) == {"user": "user-ana", "role": "reader"} for row in rows)


def test_a_subscription_refused_by_the_join_gate_gets_nothing_from_that_group(rt: Realtime) -> None:
    # GIVEN a write to the secret group whose broadcast is still in flight (written, not yet broadcast)
    rt.call("stream::set", stream_name="chat", group_id="secret", item_id="plan", data={"id": "plan"})
    connection_id, _ = rt.connect(query={"token": ["user-ana"]})

    # WHEN the client joins it and is refused, then the in-flight broadcast and later ones go out
    rt.join(connection_id, "chat", "secret")
    rt.join(connection_id, "chat", "secret", item="plan")
    rt.pump.drain()
    rt.call("stream::set", stream_name="chat", group_id="secret", item_id="plan", data={"id": "plan", "v": 2})
    rt.call("stream::send", stream_name="chat", group_id="secret", type="typing", data={})
    rt.pump.drain()

    # THEN it got its two refusals and nothing else: no sync, no item, no event
    assert [frame["event"]["type"] for frame in rt.frames(connection_id)] == ["unauthorized", "unauthorized"]
    assert not any("plan" in json.dumps(frame["event"]) for frame in rt.frames(connection_id))


def test_a_refused_token_never_gets_a_socket_or_a_sync(rt: Realtime) -> None:
    # GIVEN a client whose token the auth function refuses
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    connection_id, response = rt.connect(query={"token": ["stolen"]})
    assert response == {"statusCode": 401}

    # WHEN frames arrive for that connection id anyway (API Gateway would never route them: no socket)
    rt.join(connection_id, "chat", "room")
    rt.join(connection_id, "chat", "room", item="a")
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a", "v": 2})
    rt.pump.drain()

    # THEN nothing was stored for it and nothing was ever posted to it
    assert rt.frames(connection_id) == []
    assert rt.posts.attempts[connection_id] == 0
    assert not any(connection_id in json.dumps(row) for row in rt.dynamodb.scan(TableName=CONNECTIONS)["Items"])
