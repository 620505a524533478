"""Realtime delivery end to end on moto: the real route handlers, the real broadcast handler, real event shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

from tests.integration.realtime import CONNECTIONS, Realtime

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(aws: None, monkeypatch: pytest.MonkeyPatch) -> Realtime:
    return Realtime(monkeypatch)


def _connection_record(rt: Realtime, connection_id: str) -> dict[str, Any] | None:
    key = {"pk": {"S": "C" + connection_id}, "sk": {"S": "C"}}
    return rt.dynamodb.get_item(TableName=CONNECTIONS, Key=key).get("Item")


class TestConnect:
    def test_without_auth_every_socket_is_accepted_with_a_null_context(self, rt: Realtime) -> None:
        connection_id, response = rt.connect()
        assert response == {"statusCode": 200}
        record = _connection_record(rt, connection_id)
        assert record is not None and "context" not in record

    @pytest.mark.parametrize(
        ("offered", "echoed"),
        [
            ("Authorization, eyJhbGciOi.x.y", "Authorization"),
            ("Authorization,tok123", "Authorization"),
            ("chat, superchat", "chat"),
        ],
    )
    def test_offered_subprotocol_is_echoed(self, rt: Realtime, offered: str, echoed: str) -> None:
        _, response = rt.connect(headers={"Host": "h", "Sec-WebSocket-Protocol": offered})
        assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": echoed}}


@pytest.fixture
def auth_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A local Lambda endpoint serving the auth function; the handler's lambda client reaches it by endpoint."""
    seen: dict[str, Any] = {}

    def auth(event: dict[str, Any], context: Any) -> Any:
        seen["input"] = event
        token = (event["query_params"].get("token") or [""])[0]
        protocols = event["headers"].get("sec-websocket-protocol", "")
        token = token or (protocols.split(",")[1].strip() if "," in protocols else "")
        if token == "boom":
            raise RuntimeError("auth service down")
        if token == "weird":
            return "not an object"
        if not token.startswith("user-"):
            return {"unauthorized": True}
        return {"context": {"user": token}}

    endpoint = LambdaEndpoint({"auth": auth}, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    yield seen
    endpoint.stop()


class TestAuth:
    def test_context_is_stored_and_auth_sees_the_originals_input(
        self, aws: None, monkeypatch: pytest.MonkeyPatch, auth_endpoint: dict[str, Any]
    ) -> None:
        rt = Realtime(monkeypatch, AUTH_FUNCTION="auth")
        connection_id, response = rt.connect(
            headers={"Host": "h", "User-Agent": "UA"}, query={"token": ["user-ana"], "a": ["1", "2"]}
        )
        assert response == {"statusCode": 200}
        assert json.loads(_connection_record(rt, connection_id)["context"]["S"]) == {"user": "user-ana"}  # type: ignore[index]
        assert auth_endpoint["input"] == {
            "headers": {"host": "h", "user-agent": "UA"},
            "path": "/",
            "query_params": {"token": ["user-ana"], "a": ["1", "2"]},
            "addr": "203.0.113.7:0",
        }

    def test_token_in_the_subprotocol_works_and_is_echoed(
        self, aws: None, monkeypatch: pytest.MonkeyPatch, auth_endpoint: dict[str, Any]
    ) -> None:
        rt = Realtime(monkeypatch, AUTH_FUNCTION="auth")
        _, response = rt.connect(headers={"Sec-WebSocket-Protocol": "Authorization, user-bo"})
        assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "Authorization"}}

    @pytest.mark.parametrize("token", ["nope", "boom", "weird"])
    def test_refused_or_failing_auth_gives_401_and_stores_nothing(
        self, aws: None, monkeypatch: pytest.MonkeyPatch, auth_endpoint: dict[str, Any], token: str
    ) -> None:
        rt = Realtime(monkeypatch, AUTH_FUNCTION="auth")
        connection_id, response = rt.connect(query={"token": [token]})
        assert response == {"statusCode": 401}
        assert _connection_record(rt, connection_id) is None

    def test_fail_open_accepts_a_failing_auth_with_no_context_but_still_honours_a_no(
        self, aws: None, monkeypatch: pytest.MonkeyPatch, auth_endpoint: dict[str, Any]
    ) -> None:
        rt = Realtime(monkeypatch, AUTH_FUNCTION="auth", AUTH_FAIL_OPEN="true")
        failing, response = rt.connect(query={"token": ["boom"]})
        assert response == {"statusCode": 200}
        assert "context" not in _connection_record(rt, failing)  # type: ignore[operator]
        assert rt.connect(query={"token": ["nope"]})[1] == {"statusCode": 401}


class TestJoinAndSync:
    def test_group_join_gets_one_sync_with_the_array_and_a_null_id(self, rt: Realtime) -> None:
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="b", data={"id": "b"})
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="a", data={"id": "a"})
        connection_id, _ = rt.connect()
        rt.join(connection_id, "todo", "inbox")
        [frame] = rt.frames(connection_id)
        assert frame["type"] == "stream" and frame["id"] is None
        assert (frame["streamName"], frame["groupId"]) == ("todo", "inbox")
        assert frame["event"] == {"type": "sync", "data": [{"id": "a"}, {"id": "b"}]}

    def test_a_delete_older_than_the_item_a_group_sync_carried_is_not_broadcast_after_it(self, rt: Realtime) -> None:
        # GIVEN an item deleted and written again, all before a client joins (found by the soak bench)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="x", data={"id": "x", "v": 1})
        rt.call("stream::delete", stream_name="s", group_id="g", item_id="x")
        rt.call("stream::set", stream_name="s", group_id="g", item_id="x", data={"id": "x", "v": 2})
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        # WHEN the three changes are broadcast after the join's sync
        rt.pump.drain()
        # THEN the client got the sync holding x and nothing after it: the stale delete would have removed x
        assert rt.events(connection_id) == [("sync", None)]
        assert rt.frames(connection_id)[0]["event"]["data"] == [{"id": "x", "v": 2}]

    def test_item_join_gets_the_value_or_null(self, rt: Realtime) -> None:
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="a", data={"id": "a"})
        connection_id, _ = rt.connect()
        rt.join(connection_id, "todo", "inbox", "a")
        rt.join(connection_id, "todo", "inbox", "missing")
        frames = rt.frames(connection_id)
        assert [(f["id"], f["event"]) for f in frames] == [
            ("a", {"type": "sync", "data": {"id": "a"}}),
            ("missing", {"type": "sync", "data": None}),
        ]

    def test_an_item_deleted_while_away_resyncs_as_null_after_its_last_frame(self, rt: Realtime) -> None:
        # GIVEN a client that saw an item (its item subscription's last timestamp is the item's)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data={"id": "i"})
        first, _ = rt.connect()
        rt.join(first, "s", "g", "i")
        seen = rt.frames(first)[0]["timestamp"]
        # WHEN the item is deleted while the client is away, and it re-joins
        rt.call("stream::delete", stream_name="s", group_id="g", item_id="i")
        again, _ = rt.connect()
        rt.join(again, "s", "g", "i")
        # THEN the sync is null and stamped after what the client saw, so the client applies it
        [sync] = rt.frames(again)
        assert sync["event"] == {"type": "sync", "data": None}
        assert sync["timestamp"] > seen

    @pytest.mark.parametrize(
        "body",
        [
            "not json",
            "",
            "   ",
            "[]",
            '{"type":"join"}',
            '{"type":"join","data":{"streamName":"s"}}',
            '{"type":"subscribe","data":{"streamName":"s","groupId":"g","subscriptionId":"x"}}',
            '{"type":"join","data":{"streamName":1,"groupId":"g","subscriptionId":"x"}}',
        ],
    )
    def test_malformed_frames_are_ignored_and_the_connection_lives_on(self, rt: Realtime, body: str) -> None:
        connection_id, _ = rt.connect()
        assert rt.send(connection_id, body) == {"statusCode": 200}
        rt.join(connection_id, "s", "g")
        assert rt.events(connection_id) == [("sync", None)]

    def test_join_from_a_connection_that_is_not_recorded_is_ignored(self, rt: Realtime) -> None:
        rt.join("never-connected", "s", "g")
        assert rt.frames("never-connected") == []


class TestBroadcast:
    def test_changes_reach_group_and_item_subscribers_with_the_originals_frames(self, rt: Realtime) -> None:
        group_conn, _ = rt.connect()
        item_conn, _ = rt.connect()
        other_conn, _ = rt.connect()
        rt.join(group_conn, "todo", "inbox")
        rt.join(item_conn, "todo", "inbox", "a")
        rt.join(other_conn, "todo", "other")
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="a", data={"id": "a", "v": 1})
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="a", data={"id": "a", "v": 2})
        rt.call("stream::set", stream_name="todo", group_id="inbox", item_id="b", data={"id": "b"})
        rt.call("stream::send", stream_name="todo", group_id="inbox", type="typing", data={"who": "ana"})
        rt.call("stream::send", stream_name="todo", group_id="inbox", type="seen", data=1, id="a")
        rt.call("stream::delete", stream_name="todo", group_id="inbox", item_id="a")
        rt.pump.drain()
        assert rt.events(group_conn) == [
            ("sync", None),
            ("create", "a"),
            ("update", "a"),
            ("create", "b"),
            ("event", None),
            ("event", "a"),
            ("delete", "a"),
        ]
        assert rt.events(item_conn) == [
            ("sync", "a"),
            ("create", "a"),
            ("update", "a"),
            ("event", "a"),
            ("delete", "a"),
        ]
        assert rt.events(other_conn) == [("sync", None)]
        frames = rt.frames(group_conn)
        assert frames[4]["event"] == {"type": "event", "event": {"type": "typing", "data": {"who": "ana"}}}
        assert frames[6]["event"] == {"type": "delete", "data": {"id": "a", "v": 2}}
        assert set(frames[1]) == {"type", "timestamp", "streamName", "groupId", "id", "event"}

    def test_a_write_the_group_sync_already_held_is_not_sent_after_it(self, rt: Realtime) -> None:
        # GIVEN two writes of an item whose broadcast is still on its way when a client joins the group
        rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data={"id": "a", "v": 1})
        rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data={"id": "a", "v": 2})
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        # WHEN the broadcast of those writes, and of a later one, runs
        rt.pump.drain()
        rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data={"id": "a", "v": 3})
        rt.pump.drain()
        # THEN the client gets its sync (v2) and then only v3: never v1 or v2 over its sync
        frames = rt.frames(connection_id)
        assert [f["event"]["type"] for f in frames] == ["sync", "update"]
        assert frames[0]["event"]["data"] == [{"id": "a", "v": 2}]
        assert frames[1]["event"]["data"] == {"id": "a", "v": 3}

    def test_one_frame_per_connection_even_with_a_group_and_an_item_subscription(self, rt: Realtime) -> None:
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        rt.join(connection_id, "s", "g", "i")
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.pump.drain()
        assert rt.events(connection_id) == [("sync", None), ("sync", "i"), ("create", "i")]

    def test_timestamps_strictly_increase_per_item_under_rapid_writes(self, rt: Realtime) -> None:
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g", "i")
        for n in range(30):
            rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data={"n": n})
        rt.call("stream::delete", stream_name="s", group_id="g", item_id="i")
        rt.pump.drain()
        frames = rt.frames(connection_id)[1:]
        assert [f["event"]["data"] for f in frames[:-1]] == [{"n": n} for n in range(30)]
        stamps = [f["timestamp"] for f in frames]
        assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))
        sync_stamp = rt.frames(connection_id)[0]["timestamp"]
        assert sync_stamp < stamps[0]

    def test_leave_and_disconnect_stop_delivery(self, rt: Realtime) -> None:
        leaving, _ = rt.connect()
        closing, _ = rt.connect()
        subscription = rt.join(leaving, "s", "g")
        rt.join(closing, "s", "g")
        rt.send(leaving, {"type": "leave", "data": {"streamName": "s", "groupId": "g", "subscriptionId": subscription}})
        rt.disconnect(closing)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.pump.drain()
        assert rt.events(leaving) == [("sync", None)]
        assert rt.events(closing) == [("sync", None)]
        assert rt.dynamodb.scan(TableName=CONNECTIONS)["Count"] == 1  # only the leaving connection's record

    def test_gone_connection_is_cleaned_up_and_the_batch_succeeds(self, rt: Realtime) -> None:
        live, _ = rt.connect()
        gone, _ = rt.connect()
        rt.join(live, "s", "g")
        rt.join(gone, "s", "g")
        rt.join(gone, "s", "other")
        rt.posts.gone.add(gone)  # moto cannot answer 410: injected at the client boundary
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="j", data=2)
        rt.pump.drain()
        assert rt.pump.dropped == []
        assert rt.events(live)[1:] == [("create", "i"), ("create", "j")]
        assert rt.posts.attempts[gone] == 3  # two syncs, then one 410; never posted to again
        assert rt.dynamodb.scan(TableName=CONNECTIONS)["Count"] == 2  # the live connection and its subscription

    def test_throttled_posts_are_retried(self, rt: Realtime) -> None:
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        rt.posts.throttle[connection_id] = 2
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.pump.drain()
        assert rt.events(connection_id) == [("sync", None), ("create", "i")]

    def test_posts_that_keep_failing_fail_the_record_and_later_ones_in_order(self, rt: Realtime) -> None:
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        rt.posts.throttle[connection_id] = 10_000
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=2)
        rt.pump.drain()
        # Both records were reported as failures on every attempt, and set aside after the retries.
        assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in rt.pump.dropped] == ["#i", "#i"]
        rt.posts.throttle[connection_id] = 0
        assert rt.events(connection_id) == [("sync", None)]


def test_a_group_too_big_for_one_message_syncs_in_parts(rt: Realtime) -> None:
    blob = "x" * 30_000
    for n in range(10):
        rt.call("stream::set", stream_name="s", group_id="big", item_id=f"{n:02d}", data={"id": f"{n:02d}", "b": blob})
    connection_id, _ = rt.connect()
    rt.join(connection_id, "s", "big")
    bodies = rt.posts.sent[connection_id]
    frames = [json.loads(body) for body in bodies]
    assert all(len(body) <= 131_072 for body in bodies)
    assert frames[0]["event"]["type"] == "sync" and frames[0]["id"] is None
    assert {f["event"]["type"] for f in frames[1:]} == {"create"}
    received = frames[0]["event"]["data"] + [f["event"]["data"] for f in frames[1:]]
    assert [v["id"] for v in received] == [f"{n:02d}" for n in range(10)]
    assert 1 < len(frames[0]["event"]["data"]) < 10
