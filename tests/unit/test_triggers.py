"""Triggers at work: matching, ``stream`` dispatch once per change, the join gate, leave handlers, the cache."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from iii_stream.core.changes import Change, ChangeKind
from iii_stream.core.errors import FunctionFailedError
from iii_stream.core.ports import Subscription
from iii_stream.core.registry import (
    FunctionRecord,
    LifecycleTriggerConfig,
    RegisterTriggerInput,
    RegistryService,
    StreamTriggerConfig,
)
from iii_stream.core.triggers import (
    StreamTriggers,
    TriggerCache,
    TriggerJoinGate,
    TriggerLeaveHandlers,
    lifecycle_payload,
    lifecycle_trigger_matches,
    stream_trigger_matches,
)

from tests.fakes import FakeInvoker, FixedClock, MemoryRegistryStore, MemoryTriggerLedger

TS = 1_800_000_000_123


def _raise(payload: Any) -> Any:
    raise RuntimeError("boom")


class Monotonic:
    """An injectable monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: MemoryRegistryStore = field(default_factory=MemoryRegistryStore)
    clock: FixedClock = field(default_factory=FixedClock)
    invoker: FakeInvoker = field(default_factory=lambda: FakeInvoker({}))
    ledger: MemoryTriggerLedger = field(default_factory=MemoryTriggerLedger)

    def fn(self, function_id: str, behaviour: Callable[[Any], Any] = lambda payload: None) -> str:
        """Register a function; return the target the invoker sees."""
        target = f"lambda-{function_id}"
        RegistryService(self.store, self.clock).register_function(
            FunctionRecord(function_id=function_id, target=target)
        )
        self.invoker.functions[target] = behaviour
        return target

    def trigger(self, trigger_id: str, type_: str, function_id: str, **config: Any) -> None:
        registry = RegistryService(self.store, self.clock)
        registry.register_trigger(
            RegisterTriggerInput(type=type_, function_id=function_id, config=config, id=trigger_id)
        )
        self.clock.advance(1)  # registrations a millisecond apart

    def cache(self) -> TriggerCache:
        return TriggerCache(self.store, ttl_seconds=10.0, monotonic=Monotonic())

    def stream_triggers(self) -> StreamTriggers:
        return StreamTriggers(self.cache(), self.invoker, self.ledger)

    def gate(self, fail_open: bool = False) -> TriggerJoinGate:
        return TriggerJoinGate(self.cache(), self.invoker, fail_open=fail_open)

    def leaves(self) -> TriggerLeaveHandlers:
        return TriggerLeaveHandlers(self.cache(), self.invoker)

    def queued(self) -> list[str]:
        return [ref for ref, _ in self.invoker.async_calls]

    def called(self) -> list[str]:
        return [ref for ref, _ in self.invoker.calls]


@pytest.fixture
def world() -> World:
    return World()


def change(
    stream: str = "chat",
    group: str = "room-1",
    item_id: str | None = "msg-1",
    kind: ChangeKind = "create",
    data: Any = None,
    event_type: str | None = None,
) -> Change:
    return Change(stream, group, item_id, kind, {"text": "hi"} if data is None else data, TS, event_type)


def subscription(
    stream: str = "chat", group: str = "room-1", item_id: str | None = None, context: Any = None
) -> Subscription:
    return Subscription("conn-1", "sub-1", stream, group, item_id, {"user_id": "alice"} if context is None else context)


# --- matching --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "target", "matches"),
    [
        pytest.param({"stream_name": "chat"}, change(), True, id="stream-only"),
        pytest.param({"stream_name": "chat"}, change(stream="chat2"), False, id="other-stream"),
        pytest.param({"stream_name": "chat"}, change(stream="Chat"), False, id="stream-case"),
        pytest.param({"stream_name": "ch"}, change(), False, id="stream-no-prefix"),
        pytest.param({"stream_name": "chat", "group_id": None}, change(group="x"), True, id="group-none"),
        pytest.param({"stream_name": "chat", "group_id": ""}, change(group="x"), True, id="group-empty"),
        pytest.param({"stream_name": "chat", "group_id": "room-1"}, change(), True, id="group-exact"),
        pytest.param({"stream_name": "chat", "group_id": "room-1"}, change(group="room-10"), False, id="group-other"),
        pytest.param({"stream_name": "chat", "group_id": "room"}, change(), False, id="group-no-prefix"),
        pytest.param({"stream_name": "chat", "group_id": "*"}, change(), False, id="group-no-glob"),
        pytest.param({"stream_name": "chat", "item_id": None}, change(item_id="x"), True, id="item-none"),
        pytest.param({"stream_name": "chat", "item_id": ""}, change(item_id="x"), True, id="item-empty"),
        pytest.param({"stream_name": "chat", "item_id": "msg-1"}, change(), True, id="item-exact"),
        pytest.param({"stream_name": "chat", "item_id": "msg-1"}, change(item_id="msg-2"), False, id="item-other"),
        pytest.param({"stream_name": "chat", "item_id": "msg"}, change(), False, id="item-no-prefix"),
        pytest.param(
            {"stream_name": "chat", "item_id": "msg-1"},
            change(item_id=None, kind="event", event_type="typing"),
            False,
            id="send-without-id-vs-item-filter",
        ),
        pytest.param(
            {"stream_name": "chat", "item_id": ""},
            change(item_id=None, kind="event", event_type="typing"),
            True,
            id="send-without-id-vs-empty-item",
        ),
        pytest.param(
            {"stream_name": "chat", "item_id": "msg-1"},
            change(kind="event", event_type="typing"),
            True,
            id="send-with-id",
        ),
        pytest.param(
            {"stream_name": "chat", "group_id": "room-1", "item_id": "msg-1"},
            change(stream="other"),
            False,
            id="all-filters-other-stream",
        ),
        pytest.param({"stream_name": "chat", "group_id": "room-1"}, change(kind="delete"), True, id="delete"),
    ],
)
def test_stream_trigger_matching(config: dict[str, Any], target: Change, matches: bool) -> None:
    assert stream_trigger_matches(StreamTriggerConfig.model_validate(config), target) is matches


@pytest.mark.parametrize(
    ("config", "target", "matches"),
    [
        pytest.param({}, subscription(), True, id="empty"),
        pytest.param({}, subscription(stream="x", group="y", item_id="z"), True, id="empty-any"),
        pytest.param({"stream_name": "chat"}, subscription(), True, id="stream"),
        pytest.param({"stream_name": ""}, subscription(stream="x"), True, id="stream-empty"),
        pytest.param({"stream_name": "chat"}, subscription(stream="chat2"), False, id="stream-other"),
        pytest.param({"group_id": "room-1"}, subscription(), True, id="group"),
        pytest.param({"group_id": "room-1"}, subscription(stream="other"), True, id="group-any-stream"),
        pytest.param({"group_id": "room-1"}, subscription(group="room-2"), False, id="group-other"),
        pytest.param({"stream_name": "chat", "group_id": "room-1"}, subscription(item_id="i"), True, id="item-sub"),
        pytest.param({"stream_name": "chat", "group_id": "room-1"}, subscription(stream="c"), False, id="both"),
    ],
)
def test_lifecycle_trigger_matching(config: dict[str, Any], target: Subscription, matches: bool) -> None:
    assert lifecycle_trigger_matches(LifecycleTriggerConfig.model_validate(config), target) is matches


def test_lifecycle_payload_is_snake_case_with_every_key() -> None:
    assert lifecycle_payload(Subscription("c", "sub-9", "chat", "room-1")) == {
        "subscription_id": "sub-9",
        "stream_name": "chat",
        "group_id": "room-1",
        "id": None,
        "context": None,
    }


# --- stream dispatch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "event"),
    [
        pytest.param(change(kind="create"), {"type": "create", "data": {"text": "hi"}}, id="create"),
        pytest.param(change(kind="update", data=[1, 2]), {"type": "update", "data": [1, 2]}, id="update"),
        pytest.param(change(kind="delete", data="gone"), {"type": "delete", "data": "gone"}, id="delete"),
        pytest.param(
            change(kind="event", data={"who": "bob"}, event_type="typing"),
            {"type": "event", "event": {"type": "typing", "data": {"who": "bob"}}},
            id="event",
        ),
        pytest.param(
            change(item_id=None, kind="event", data=None, event_type="ping"),
            {"type": "event", "event": {"type": "ping", "data": {"text": "hi"}}},
            id="event-without-id",
        ),
    ],
)
def test_a_handler_is_queued_with_the_wrapper_message(world: World, target: Change, event: dict[str, Any]) -> None:
    handler = world.fn("on-change")
    world.trigger("t-1", "stream", "on-change", stream_name="chat")
    assert world.stream_triggers().run(target, "change-1") == 1
    assert world.invoker.async_calls == [
        (
            handler,
            {
                "type": "stream",
                "timestamp": TS,
                "streamName": "chat",
                "groupId": "room-1",
                "id": target.item_id,
                "event": event,
            },
        )
    ]
    assert world.invoker.calls == []  # never a synchronous call: the handler is queued
    assert world.invoker.async_calls[0][1] == target.message()


def test_triggers_run_in_registration_order(world: World) -> None:
    for name in ("c", "a", "b"):
        world.fn(name)
    world.trigger("t-3", "stream", "c", stream_name="chat")
    world.trigger("t-1", "stream", "a", stream_name="chat", group_id="room-1")
    world.trigger("t-2", "stream", "b", stream_name="chat", item_id="msg-1")
    assert world.stream_triggers().run(change(), "change-1") == 3
    assert world.queued() == ["lambda-c", "lambda-a", "lambda-b"]


def test_triggers_registered_in_the_same_millisecond_run_in_registration_order(world: World) -> None:
    for name in ("c", "a"):
        world.fn(name)
    registry = RegistryService(world.store, world.clock)  # the clock does not move between the two
    for trigger_id, function_id in (("t-z", "c"), ("t-a", "a")):
        registry.register_trigger(
            RegisterTriggerInput(type="stream", function_id=function_id, config={"stream_name": "chat"}, id=trigger_id)
        )
    world.stream_triggers().run(change(), "change-1")
    assert world.queued() == ["lambda-c", "lambda-a"]


def test_only_matching_stream_triggers_run(world: World) -> None:
    for name in ("hit", "miss", "join", "leave"):
        world.fn(name)
    world.trigger("t-hit", "stream", "hit", stream_name="chat", group_id="room-1")
    world.trigger("t-miss-group", "stream", "miss", stream_name="chat", group_id="room-2")
    world.trigger("t-miss-stream", "stream", "miss", stream_name="other")
    world.trigger("t-miss-item", "stream", "miss", stream_name="chat", item_id="msg-2")
    world.trigger("t-join", "stream:join", "join")
    world.trigger("t-leave", "stream:leave", "leave")
    assert world.stream_triggers().run(change(), "change-1") == 1
    assert world.queued() == ["lambda-hit"]
    assert world.invoker.calls == []
    assert world.ledger.status == {("change-1", "t-hit"): "done"}  # nothing claimed for what does not match


def test_no_triggers_dispatches_nothing(world: World) -> None:
    assert world.stream_triggers().run(change(), "change-1") == 0
    assert world.invoker.async_calls == [] and world.ledger.status == {}


def test_a_redelivered_change_invokes_each_handler_once(world: World) -> None:
    for name in ("a", "b"):
        world.fn(name)
    world.trigger("t-a", "stream", "a", stream_name="chat")
    world.trigger("t-b", "stream", "b", stream_name="chat")
    triggers = world.stream_triggers()
    assert triggers.run(change(), "change-1") == 2
    assert triggers.run(change(), "change-1") == 0  # the same batch, redelivered
    assert world.stream_triggers().run(change(), "change-1") == 0  # ... even to another container
    assert world.queued() == ["lambda-a", "lambda-b"]
    assert triggers.run(change(kind="update"), "change-2") == 2  # another change fires again
    assert world.queued() == ["lambda-a", "lambda-b", "lambda-a", "lambda-b"]


def test_a_condition_returning_false_skips_the_handler(world: World) -> None:
    seen: list[Any] = []

    def cond(payload: Any) -> bool:
        seen.append(payload)
        return False

    world.fn("handler")
    world.fn("cond", cond)
    world.trigger("t-1", "stream", "handler", stream_name="chat", condition_function_id="cond")
    target = change()
    assert world.stream_triggers().run(target, "change-1") == 0
    assert world.invoker.async_calls == []
    assert seen == [target.message()]  # the condition gets the handler's payload
    assert world.called() == ["lambda-cond"]
    # The decision is final: a redelivery neither asks the condition again nor runs the handler.
    assert world.stream_triggers().run(target, "change-1") == 0
    assert world.called() == ["lambda-cond"]


@pytest.mark.parametrize(
    "answer",
    [True, None, {}, 0, "", [], "false", {"result": False}],
    ids=["true", "null", "object", "zero", "empty-string", "empty-list", "string-false", "nested-false"],
)
def test_only_the_json_boolean_false_skips(world: World, answer: Any) -> None:
    world.fn("handler")
    world.fn("cond", lambda payload: answer)
    world.trigger("t-1", "stream", "handler", stream_name="chat", condition_function_id="cond")
    assert world.stream_triggers().run(change(), "change-1") == 1
    assert world.queued() == ["lambda-handler"]


def test_a_failing_condition_skips_the_handler_without_raising(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.fn("handler")
    world.fn("other")
    world.fn("cond", _raise)
    world.trigger("t-1", "stream", "handler", stream_name="chat", condition_function_id="cond")
    world.trigger("t-2", "stream", "other", stream_name="chat")
    with caplog.at_level(logging.WARNING, logger="iii_stream.core.triggers"):
        assert world.stream_triggers().run(change(), "change-1") == 1
    assert world.queued() == ["lambda-other"]
    assert any("cond" in record.getMessage() and "t-1" in record.getMessage() for record in caplog.records)


def test_a_handler_that_cannot_be_queued_raises_and_a_retry_resumes_from_it(world: World) -> None:
    for name in ("a", "b", "c"):
        world.fn(name)
    world.trigger("t-a", "stream", "a", stream_name="chat")
    world.trigger("t-b", "stream", "b", stream_name="chat")
    world.trigger("t-c", "stream", "c", stream_name="chat")
    world.invoker.queue_failures.add("lambda-b")
    triggers = world.stream_triggers()
    with pytest.raises(FunctionFailedError):
        triggers.run(change(), "change-1")
    assert world.queued() == ["lambda-a", "lambda-c"]  # the failure did not stop the triggers after it
    assert ("change-1", "t-b") not in world.ledger.status  # its claim was released
    assert world.ledger.status[("change-1", "t-a")] == "done"
    # The batch is retried once the function can be queued again: only b runs.
    world.invoker.queue_failures.clear()
    assert triggers.run(change(), "change-1") == 1
    assert world.queued() == ["lambda-a", "lambda-c", "lambda-b"]  # a and c were not invoked a second time
    assert set(world.ledger.status.values()) == {"done"}


def test_a_claim_left_by_a_dead_attempt_is_taken_again(world: World) -> None:
    world.fn("a")
    world.trigger("t-a", "stream", "a", stream_name="chat")
    assert world.ledger.claim("change-1", "t-a")  # an attempt that died before invoking
    assert world.stream_triggers().run(change(), "change-1") == 1
    assert world.queued() == ["lambda-a"]


def test_a_handler_that_always_fails_does_not_block_the_triggers_after_it(world: World) -> None:
    for name in ("a", "b", "c"):
        world.fn(name)
    world.trigger("t-a", "stream", "a", stream_name="chat")
    world.trigger("t-b", "stream", "b", stream_name="chat")
    world.trigger("t-c", "stream", "c", stream_name="chat")
    world.invoker.queue_failures.add("lambda-b")  # for good
    triggers = world.stream_triggers()
    for _ in range(6):  # the first attempt and MaximumRetryAttempts (5) retries
        with contextlib.suppress(FunctionFailedError):
            triggers.run(change(), "change-1")
    assert world.queued() == ["lambda-a", "lambda-c"]


# --- the cache -------------------------------------------------------------------------------------------


def test_the_cache_reads_the_store_once_per_ttl(world: World) -> None:
    world.fn("a")
    world.trigger("t-a", "stream", "a", stream_name="chat")
    store = world.store

    def reads() -> tuple[int, int]:
        return store.trigger_reads, store.function_reads

    monotonic = Monotonic()
    cache = TriggerCache(store, ttl_seconds=10.0, monotonic=monotonic)
    triggers = StreamTriggers(cache, world.invoker, world.ledger)
    before = reads()
    for n in range(5):
        triggers.run(change(), f"change-{n}")
        assert cache.target("a") == "lambda-a"
        assert [t.trigger_id for t in cache.of_type("stream")] == ["t-a"]
    assert reads() == (before[0] + 1, before[1] + 1)
    # A trigger registered meanwhile is not seen before the ttl has passed ...
    world.fn("b")
    world.trigger("t-b", "stream", "b", stream_name="chat")
    before = reads()
    monotonic.now += 9.999
    assert [t.trigger_id for t in cache.of_type("stream")] == ["t-a"]
    assert reads() == before
    # ... and is, once it has: one more read of each.
    monotonic.now += 0.001
    assert [t.trigger_id for t in cache.of_type("stream")] == ["t-a", "t-b"]
    assert cache.target("b") == "lambda-b"
    assert reads() == (before[0] + 1, before[1] + 1)
    monotonic.now += 20
    cache.of_type("stream:join")
    cache.target("a")
    assert reads() == (before[0] + 2, before[1] + 2)


def test_the_cache_fails_for_an_unknown_function(world: World) -> None:
    with pytest.raises(FunctionFailedError, match="ghost"):
        world.cache().target("ghost")


# --- the join gate ---------------------------------------------------------------------------------------


def test_no_join_trigger_allows(world: World) -> None:
    world.fn("a")
    world.trigger("t-s", "stream", "a", stream_name="chat")
    world.trigger("t-l", "stream:leave", "a")
    assert world.gate().allows(subscription()) is True
    assert world.invoker.calls == [] and world.invoker.async_calls == []


@pytest.mark.parametrize("rejecting", [0, 1, 2])
def test_any_unauthorized_true_rejects_but_every_handler_runs(world: World, rejecting: int) -> None:
    for n in range(3):
        world.fn(f"j{n}", (lambda p: {"unauthorized": True}) if n == rejecting else (lambda p: {}))
        world.trigger(f"t-{n}", "stream:join", f"j{n}")
    assert world.gate().allows(subscription()) is False
    assert world.called() == ["lambda-j0", "lambda-j1", "lambda-j2"]
    assert world.invoker.async_calls == []


@pytest.mark.parametrize(
    "answer",
    [{"unauthorized": False}, {}, None, "x", {"unauthorized": "true"}, {"unauthorized": 1}, [{"unauthorized": True}]],
    ids=["false", "empty", "null", "string", "string-true", "one", "list"],
)
@pytest.mark.parametrize("fail_open", [False, True])
def test_anything_but_unauthorized_true_allows(world: World, answer: Any, fail_open: bool) -> None:
    world.fn("j", lambda payload: answer)
    world.trigger("t-1", "stream:join", "j")
    assert world.gate(fail_open).allows(subscription()) is True


def test_a_failing_join_handler_rejects_unless_fail_open(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.fn("ok", lambda payload: {"unauthorized": False})
    world.fn("broken", _raise)
    world.fn("after")
    world.trigger("t-ok", "stream:join", "ok")
    world.trigger("t-broken", "stream:join", "broken")
    world.trigger("t-after", "stream:join", "after")
    with caplog.at_level(logging.WARNING, logger="iii_stream.core.triggers"):
        assert world.gate().allows(subscription()) is False
    assert world.called() == ["lambda-ok", "lambda-broken", "lambda-after"]
    assert any("broken" in record.getMessage() for record in caplog.records)
    world.invoker.calls.clear()
    assert world.gate(fail_open=True).allows(subscription()) is True
    assert world.called() == ["lambda-ok", "lambda-broken", "lambda-after"]


def test_a_failing_join_condition_rejects_unless_fail_open(world: World) -> None:
    # A failed condition cannot vouch for the subscription: the join gate stays closed (ours; fail-closed).
    world.fn("cond", _raise)
    world.fn("gate", lambda payload: {})
    world.trigger("t-1", "stream:join", "gate", condition_function_id="cond")
    assert world.gate().allows(subscription()) is False
    assert world.gate(fail_open=True).allows(subscription()) is True
    assert "lambda-gate" not in world.called()


def test_fail_open_still_honours_a_rejection(world: World) -> None:
    world.fn("broken", _raise)
    world.fn("no", lambda payload: {"unauthorized": True})
    world.trigger("t-1", "stream:join", "broken")
    world.trigger("t-2", "stream:join", "no")
    assert world.gate(fail_open=True).allows(subscription()) is False


def test_join_filters_narrow_which_handlers_run(world: World) -> None:
    world.fn("any")
    world.fn("chat")
    world.fn("other-stream", lambda p: {"unauthorized": True})
    world.fn("room-1")
    world.fn("other-room", lambda p: {"unauthorized": True})
    world.fn("gated-yes")
    world.fn("gated-no", lambda p: {"unauthorized": True})
    world.fn("yes", lambda p: True)
    world.fn("no", lambda p: False)
    world.trigger("t-any", "stream:join", "any")
    world.trigger("t-chat", "stream:join", "chat", stream_name="chat")
    world.trigger("t-other-stream", "stream:join", "other-stream", stream_name="news")
    world.trigger("t-room", "stream:join", "room-1", stream_name="chat", group_id="room-1")
    world.trigger("t-other-room", "stream:join", "other-room", group_id="room-2")
    world.trigger("t-gated-yes", "stream:join", "gated-yes", condition_function_id="yes")
    world.trigger("t-gated-no", "stream:join", "gated-no", condition_function_id="no")
    assert world.gate().allows(subscription()) is True
    assert world.called() == [
        "lambda-any",
        "lambda-chat",
        "lambda-room-1",
        "lambda-yes",
        "lambda-gated-yes",
        "lambda-no",  # the condition ran; its handler did not
    ]


def test_join_handlers_and_conditions_get_the_lifecycle_payload(world: World) -> None:
    seen: list[tuple[str, Any]] = []
    world.fn("j", lambda payload: seen.append(("handler", payload)))
    world.fn("cond", lambda payload: seen.append(("condition", payload)))
    world.trigger("t-1", "stream:join", "j", condition_function_id="cond")
    sub = Subscription("conn-7", "sub-42", "presence", "room-1", "user-123", {"user_id": "alice@example.com"})
    assert world.gate().allows(sub) is True
    expected = {
        "subscription_id": "sub-42",
        "stream_name": "presence",
        "group_id": "room-1",
        "id": "user-123",
        "context": {"user_id": "alice@example.com"},
    }
    assert seen == [("condition", expected), ("handler", expected)]
    assert "connection_id" not in seen[1][1]


def test_a_group_join_payload_has_null_id_and_context(world: World) -> None:
    seen: list[Any] = []
    world.fn("j", seen.append)
    world.trigger("t-1", "stream:join", "j")
    world.gate().allows(Subscription("conn-1", "sub-1", "chat", "room-1"))
    assert seen == [
        {"subscription_id": "sub-1", "stream_name": "chat", "group_id": "room-1", "id": None, "context": None}
    ]


# --- leave handlers --------------------------------------------------------------------------------------


def test_matching_leave_handlers_are_queued_with_the_lifecycle_payload(world: World) -> None:
    for name in ("any", "chat", "news", "room-2", "gated", "yes", "no", "join"):
        world.fn(name, (lambda p: False) if name == "no" else (lambda p: None))
    world.trigger("t-any", "stream:leave", "any")
    world.trigger("t-chat", "stream:leave", "chat", stream_name="chat", group_id="room-1")
    world.trigger("t-news", "stream:leave", "news", stream_name="news")
    world.trigger("t-room-2", "stream:leave", "room-2", group_id="room-2")
    world.trigger("t-gated", "stream:leave", "gated", condition_function_id="yes")
    world.trigger("t-gated-no", "stream:leave", "gated", condition_function_id="no")
    world.trigger("t-join", "stream:join", "join")
    sub = subscription(item_id="msg-1")
    world.leaves().left(sub)
    payload = lifecycle_payload(sub)
    assert payload == {
        "subscription_id": "sub-1",
        "stream_name": "chat",
        "group_id": "room-1",
        "id": "msg-1",
        "context": {"user_id": "alice"},
    }
    assert world.invoker.async_calls == [("lambda-any", payload), ("lambda-chat", payload), ("lambda-gated", payload)]
    assert world.called() == ["lambda-yes", "lambda-no"]  # only conditions are called synchronously


def test_a_leave_handler_that_cannot_be_queued_is_logged_not_raised(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.fn("broken")
    world.fn("fine")
    world.trigger("t-broken", "stream:leave", "broken")
    world.trigger("t-fine", "stream:leave", "fine")
    world.invoker.queue_failures.add("lambda-broken")
    with caplog.at_level(logging.ERROR, logger="iii_stream.core.triggers"):
        world.leaves().left(subscription())
    assert world.queued() == ["lambda-fine"]
    assert [r.levelno for r in caplog.records if "broken" in r.getMessage() and "sub-1" in r.getMessage()] == [
        logging.ERROR
    ]


def test_a_failing_leave_condition_skips_its_handler(world: World) -> None:
    world.fn("h")
    world.fn("cond", _raise)
    world.trigger("t-1", "stream:leave", "h", condition_function_id="cond")
    world.leaves().left(subscription())
    assert world.invoker.async_calls == []
