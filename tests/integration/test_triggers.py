"""Triggers end to end on moto: registry Lambda, dispatch from the DynamoDB stream, join gate, leaves, sweeper.

User functions run behind a local Lambda endpoint on loopback, reached by the handlers' own boto3
``lambda`` client through AWS_ENDPOINT_URL_LAMBDA, exactly as on AWS they would be other Lambdas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

from tests.integration import realtime
from tests.integration.realtime import Realtime

pytestmark = pytest.mark.integration


class UserFunctions(realtime.UserFunctions):
    """Python functions served as Lambdas; records every call."""

    def wait_for(self, name: str, count: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.calls[name]) < count:
            time.sleep(0.01)
        return list(self.calls[name])


NAMES = ["on_change", "on_change_2", "cond", "gate", "gate_2", "on_leave", "boom"]


@pytest.fixture
def users(monkeypatch: pytest.MonkeyPatch) -> Iterator[UserFunctions]:
    functions = UserFunctions()
    endpoint = LambdaEndpoint({name: functions.handler(name) for name in NAMES}, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    yield functions
    endpoint.stop()


@pytest.fixture
def rt(aws: None, monkeypatch: pytest.MonkeyPatch, users: UserFunctions) -> Realtime:
    harness = Realtime(monkeypatch)
    for name in NAMES:
        assert "result" in harness.register("registry::register_function", function_id=f"app::{name}", target=name)
    return harness


def trigger(rt: Realtime, type_: str, name: str, config: dict[str, Any], trigger_id: str | None = None) -> Any:
    payload: dict[str, Any] = {"type": type_, "function_id": f"app::{name}", "config": config}
    if trigger_id:
        payload["id"] = trigger_id
    response = rt.register("registry::register_trigger", **payload)
    assert "result" in response, response
    return response["result"]


class TestRegistration:
    @pytest.mark.parametrize(
        ("payload", "code", "words"),
        [
            ({"type": "stream", "function_id": "app::on_change", "config": {}}, "REGISTRY_ERROR", "stream_name"),
            (
                {"type": "stream", "function_id": "app::on_change", "config": {"stream_name": ""}},
                "REGISTRY_ERROR",
                "stream_name",
            ),
            (
                {"type": "strem", "function_id": "app::on_change", "config": {"stream_name": "s"}},
                "REGISTRY_ERROR",
                "stream:join",
            ),
            (
                {"type": "stream", "function_id": "app::nope", "config": {"stream_name": "s"}},
                "function_not_found",
                "app::nope",
            ),
            (
                {"type": "stream", "function_id": "app::on_change", "config": {"stream_name": "s", "group": "g"}},
                "deserialization_error",
                "group",
            ),
            ({"type": "stream:join", "function_id": "app::gate", "config": ["x"]}, "REGISTRY_ERROR", "object"),
            (
                {
                    "type": "stream",
                    "function_id": "app::on_change",
                    "config": {"stream_name": "s", "condition_function_id": "app::missing"},
                },
                "function_not_found",
                "app::missing",
            ),
        ],
    )
    def test_bad_registrations_are_refused_at_once(
        self, rt: Realtime, payload: dict[str, Any], code: str, words: str
    ) -> None:
        response = rt.register("registry::register_trigger", **payload)
        assert response["error"]["code"] == code
        assert words in response["error"]["message"]
        assert rt.register("registry::list_triggers")["result"] == []

    def test_list_and_remove(self, rt: Realtime) -> None:
        trigger(rt, "stream", "on_change", {"stream_name": "s"}, "t1")
        trigger(rt, "stream:join", "gate", {}, "t2")
        assert [t["id"] for t in rt.register("registry::list_triggers")["result"]] == ["t1", "t2"]
        assert rt.register("registry::unregister_function", function_id="app::gate")["error"]["code"] == (
            "REGISTRY_ERROR"
        )
        assert rt.register("registry::unregister_trigger", id="t2")["result"] == {"id": "t2"}
        assert rt.register("registry::unregister_function", function_id="app::gate")["result"]
        assert "app::gate" not in [f["function_id"] for f in rt.register("registry::list_functions")["result"]]


class TestStreamTriggers:
    def test_a_change_invokes_its_handler_with_the_originals_payload(self, rt: Realtime, users: UserFunctions) -> None:
        trigger(rt, "stream", "on_change", {"stream_name": "presence", "group_id": "room-1"})
        rt.call("stream::set", stream_name="presence", group_id="room-1", item_id="ana", data={"online": True})
        rt.call("stream::set", stream_name="presence", group_id="room-2", item_id="bo", data={"online": True})
        rt.call("stream::send", stream_name="presence", group_id="room-1", type="wave", data={"from": "ana"})
        rt.dispatch.drain()
        [created, event] = users.wait_for("on_change", 2)
        assert set(created) == {"type", "timestamp", "streamName", "groupId", "id", "event"}
        assert (created["streamName"], created["groupId"], created["id"]) == ("presence", "room-1", "ana")
        assert created["event"] == {"type": "create", "data": {"online": True}}
        assert event["id"] is None and event["event"] == {
            "type": "event",
            "event": {"type": "wave", "data": {"from": "ana"}},
        }

    def test_a_redelivered_batch_fires_each_handler_once(self, rt: Realtime, users: UserFunctions) -> None:
        trigger(rt, "stream", "on_change", {"stream_name": "s"})
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        records = _records(rt)
        rt.dispatch_handler({"Records": records}, LocalLambdaContext("dispatch"))
        rt.dispatch_handler({"Records": records}, LocalLambdaContext("dispatch"))  # Lambda retrying the batch
        time.sleep(0.3)
        assert len(users.wait_for("on_change", 1)) == 1

    def test_a_failing_handler_blocks_nothing(self, rt: Realtime, users: UserFunctions) -> None:
        users.behaviour["boom"] = lambda event: 1 / 0
        trigger(rt, "stream", "boom", {"stream_name": "s"}, "a")
        trigger(rt, "stream", "on_change", {"stream_name": "s"}, "b")
        for n in range(3):
            rt.call("stream::set", stream_name="s", group_id="g", item_id=str(n), data=n)
        rt.dispatch.drain()
        assert rt.dispatch.dropped == []
        assert len(users.wait_for("on_change", 3)) == 3
        assert len(users.wait_for("boom", 3)) == 3

    @pytest.mark.parametrize(("result", "runs"), [(False, 0), (True, 1), (None, 1), ({}, 1), (0, 1), ("no", 1)])
    def test_the_condition_skips_only_on_false(
        self, rt: Realtime, users: UserFunctions, result: Any, runs: int
    ) -> None:
        users.behaviour["cond"] = lambda event: result
        trigger(rt, "stream", "on_change", {"stream_name": "s", "condition_function_id": "app::cond"})
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.dispatch.drain()
        assert len(users.wait_for("cond", 1)) == 1
        time.sleep(0.2)
        assert len(users.calls["on_change"]) == runs

    def test_a_failing_condition_skips_the_handler(self, rt: Realtime, users: UserFunctions) -> None:
        users.behaviour["cond"] = lambda event: 1 / 0
        trigger(rt, "stream", "on_change", {"stream_name": "s", "condition_function_id": "app::cond"})
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        rt.dispatch.drain()
        time.sleep(0.2)
        assert users.calls["on_change"] == [] and rt.dispatch.dropped == []


def _records(rt: Realtime) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []
    original = rt.dispatch._handler  # noqa: SLF001 - capture the exact batch the pump delivers

    def capture(event: dict[str, Any], context: Any) -> Any:
        captured.extend(event["Records"])
        return {}

    rt.dispatch._handler = capture  # noqa: SLF001
    rt.dispatch.drain()
    rt.dispatch._handler = original  # noqa: SLF001
    return captured


class TestJoinAndLeave:
    def test_a_join_handler_can_refuse_and_sees_the_context(self, rt: Realtime, users: UserFunctions) -> None:
        users.behaviour["gate"] = lambda event: {"unauthorized": event["group_id"] == "secret"}
        trigger(rt, "stream:join", "gate", {"stream_name": "chat"})
        trigger(rt, "stream:leave", "on_leave", {})
        connection_id, _ = rt.connect()
        refused = rt.join(connection_id, "chat", "secret")
        rt.join(connection_id, "chat", "lobby", "m1")
        rt.join(connection_id, "other", "secret")  # the filter: this stream has no gate
        assert rt.events(connection_id) == [("unauthorized", None), ("sync", "m1"), ("sync", None)]
        payloads = users.wait_for("gate", 2)
        assert payloads[0] == {
            "subscription_id": refused,
            "stream_name": "chat",
            "group_id": "secret",
            "id": None,
            "context": None,
        }
        rt.disconnect(connection_id)
        leaves = users.wait_for("on_leave", 2)
        time.sleep(0.2)
        assert sorted(leave["group_id"] for leave in users.calls["on_leave"]) == ["lobby", "secret"]
        assert all(leave["subscription_id"] != refused or leave["stream_name"] == "other" for leave in leaves)

    def test_a_failing_join_handler_refuses_unless_fail_open(
        self, rt: Realtime, users: UserFunctions, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        users.behaviour["gate"] = lambda event: 1 / 0
        trigger(rt, "stream:join", "gate", {})
        connection_id, _ = rt.connect()
        rt.join(connection_id, "s", "g")
        assert rt.events(connection_id) == [("unauthorized", None)]

    def test_disconnect_racing_a_410_fires_one_leave_per_subscription(self, rt: Realtime, users: UserFunctions) -> None:
        trigger(rt, "stream:leave", "on_leave", {})
        connection_id, _ = rt.connect()
        first = rt.join(connection_id, "s", "g")
        second = rt.join(connection_id, "s", "g", "i")
        rt.posts.gone.add(connection_id)
        rt.call("stream::set", stream_name="s", group_id="g", item_id="i", data=1)
        threads = [
            threading.Thread(target=rt.disconnect, args=(connection_id,)),
            threading.Thread(target=rt.pump.drain),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        rt.disconnect(connection_id)  # and once more, late
        users.wait_for("on_leave", 2)
        time.sleep(0.3)
        assert sorted(leave["subscription_id"] for leave in users.calls["on_leave"]) == sorted([first, second])

    def test_the_sweeper_removes_connections_the_gateway_closed(self, rt: Realtime, users: UserFunctions) -> None:
        trigger(rt, "stream:leave", "on_leave", {})
        closed, _ = rt.connect()
        open_, _ = rt.connect()
        subscription = rt.join(closed, "s", "g")
        rt.join(open_, "s", "g")
        rt.posts.gone.add(closed)  # the gateway dropped it without a $disconnect
        # Both connected long ago (the harness's connectedAt is in 2023), so both are due for a check.
        report = rt.sweeper({}, LocalLambdaContext("sweeper"))
        assert report["removed"] == [closed] and report["leaves"] == 1 and report["checked"] == 2
        assert [leave["subscription_id"] for leave in users.wait_for("on_leave", 1)] == [subscription]
        assert (
            rt.sweeper({}, LocalLambdaContext("sweeper"))["checked"] == 0
        )  # the open one was postponed, the closed one is gone
