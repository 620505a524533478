"""Faults injected at the ports, where a real service fails: a throttled ``Event`` invocation (at the
FunctionInvoker), an unreadable registry (at the RegistryStore), a ledger that cannot write (at the
TriggerLedger), a connection gone (410, at the Poster). Each test names the fault and the port it is injected at.

The same faults at the real handlers' boto3 clients: tests/integration/test_faults.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from iii_stream.core.broadcast import BroadcastService
from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import FunctionFailedError, StoreError
from iii_stream.core.ports import Connection, Subscription
from iii_stream.core.registry import FunctionRecord, RegisterTriggerInput, RegistryService, TriggerRecord
from iii_stream.core.triggers import (
    LeaveRetry,
    StreamTriggers,
    TriggerCache,
    TriggerJoinGate,
    TriggerLeaveHandlers,
    leave_change_id,
)

from tests.fakes import (
    FakeInvoker,
    FixedClock,
    MemoryConnectionStore,
    MemoryRegistryStore,
    MemoryTriggerLedger,
    RecordingPoster,
)

ALWAYS = -1
TS = 1_800_000_000_123


class FlakyInvoker(FakeInvoker):
    """FakeInvoker whose ``Event`` invocation of a target fails, as Lambda throttling it does, the next
    ``throttled[target]`` times (ALWAYS: every time); ``queue_attempts`` counts every try."""

    def __init__(self) -> None:
        super().__init__({})
        self.throttled: dict[str, int] = {}
        self.queue_attempts: Counter[str] = Counter()

    def invoke_async(self, function_ref: str, payload: Any) -> None:
        self.queue_attempts[function_ref] += 1
        left = self.throttled.get(function_ref, 0)
        if left:
            self.throttled[function_ref] = left - 1 if left > 0 else ALWAYS
            raise FunctionFailedError(f"queueing a call to {function_ref} failed: TooManyRequestsException")
        super().invoke_async(function_ref, payload)

    def queued(self, function_ref: str) -> list[str]:
        """The subscription ids (or change ids) queued to ``function_ref``, in order."""
        return [p.get("subscription_id", p.get("id")) for ref, p in self.async_calls if ref == function_ref]


class FlakyRegistryStore(MemoryRegistryStore):
    """The registry, unreadable (as a table answering ResourceNotFoundException) for its next ``unavailable`` reads."""

    def __init__(self) -> None:
        super().__init__()
        self.unavailable = 0

    def _read(self) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise StoreError("ResourceNotFoundException: Requested resource not found")

    def triggers(self) -> list[TriggerRecord]:
        self._read()
        return super().triggers()

    def functions(self) -> list[FunctionRecord]:
        self._read()
        return super().functions()


class FlakyLedger(MemoryTriggerLedger):
    """The ledger, failing (as a throttled table) the next ``failing[operation]`` claims/completes/releases."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: Counter[str] = Counter()

    def _maybe_fail(self, operation: str) -> None:
        if self.failing[operation]:
            self.failing[operation] -= 1
            raise StoreError("ProvisionedThroughputExceededException: throughput exceeded")

    def claim(self, change_id: str, trigger_id: str) -> bool:
        self._maybe_fail("claim")
        return super().claim(change_id, trigger_id)

    def complete(self, change_id: str, trigger_id: str) -> None:
        self._maybe_fail("complete")
        super().complete(change_id, trigger_id)

    def release(self, change_id: str, trigger_id: str) -> None:
        self._maybe_fail("release")
        super().release(change_id, trigger_id)


@dataclass
class World:
    """Registry, invoker and ledger fakes; the leave hook wired into a Disconnector over a connection store."""

    registry: FlakyRegistryStore = field(default_factory=FlakyRegistryStore)
    invoker: FlakyInvoker = field(default_factory=FlakyInvoker)
    ledger: FlakyLedger = field(default_factory=FlakyLedger)
    connections: MemoryConnectionStore = field(default_factory=MemoryConnectionStore)
    clock: FixedClock = field(default_factory=FixedClock)
    sleeps: list[float] = field(default_factory=list)
    retry: LeaveRetry = field(default_factory=LeaveRetry)
    with_ledger: bool = True

    def fn(self, name: str, behaviour: Callable[[Any], Any] = lambda payload: None) -> str:
        RegistryService(self.registry, self.clock).register_function(FunctionRecord(function_id=name, target=name))
        self.invoker.functions[name] = behaviour
        return name

    def trigger(self, trigger_id: str, type_: str, function_id: str, **config: Any) -> None:
        registration = RegisterTriggerInput(type=type_, function_id=function_id, config=config, id=trigger_id)
        RegistryService(self.registry, self.clock).register_trigger(registration)
        self.clock.advance(1)

    def cache(self) -> TriggerCache:
        return TriggerCache(self.registry, ttl_seconds=0)

    def leave_handlers(self) -> TriggerLeaveHandlers:
        ledger = self.ledger if self.with_ledger else None
        return TriggerLeaveHandlers(self.cache(), self.invoker, ledger, self.retry, self.sleeps.append, self.monotonic)

    def monotonic(self) -> float:
        return self.clock.now_ms() / 1000

    def disconnector(self) -> Disconnector:
        return Disconnector(self.connections, self.leave_handlers(), self.clock)

    def subscribe(self, connection_id: str, subscription_id: str, group: str = "g") -> Subscription:
        if self.connections.get_connection(connection_id) is None:
            self.connections.save_connection(Connection(connection_id, 0, {"user": connection_id}))
        subscription = Subscription(connection_id, subscription_id, "s", group, None, {"user": connection_id})
        assert self.connections.add_subscription(subscription)
        return subscription


@pytest.fixture
def world() -> World:
    w = World()
    for name in ("on-leave", "audit"):
        w.fn(name)
    w.trigger("t-leave", "stream:leave", "on-leave")
    w.trigger("t-audit", "stream:leave", "audit")
    return w


# --- stream:leave handlers whose Event invocation is throttled (fault: FunctionInvoker.invoke_async) ----------


def test_a_throttled_leave_invocation_is_retried_here_with_backoff(world: World) -> None:
    # GIVEN a subscription, and Lambda throttling the first two Event invocations of on-leave
    world.subscribe("c1", "sub-1")
    world.invoker.throttled["on-leave"] = 2
    # WHEN its connection closes
    left = world.disconnector().disconnect("c1")
    # THEN on-leave was tried three times, with growing jittered waits between, and queued once
    assert [s.subscription_id for s in left] == ["sub-1"]
    assert world.invoker.queue_attempts["on-leave"] == 3
    assert world.invoker.queued("on-leave") == world.invoker.queued("audit") == ["sub-1"]
    assert len(world.sleeps) == 2 and 0 <= world.sleeps[0] <= 0.1 and 0 <= world.sleeps[1] <= 0.2
    assert world.connections.connections == {} and world.connections.subscriptions == {}


def test_a_leave_still_throttled_after_its_retries_is_handed_back_and_fired_once_by_the_next_removal(
    world: World,
) -> None:
    # GIVEN two subscriptions of one connection, and on-leave throttled for longer than the retries last
    world.subscribe("c1", "sub-1")
    world.subscribe("c1", "sub-2", group="h")
    world.invoker.throttled["on-leave"] = ALWAYS
    disconnector = world.disconnector()
    # WHEN the connection closes ($disconnect)
    assert disconnector.disconnect("c1") == []
    # THEN audit got both leaves; on-leave none, and both subscriptions are back with their connection, due for
    # the sweeper's check
    assert sorted(world.invoker.queued("audit")) == ["sub-1", "sub-2"]
    assert world.invoker.queued("on-leave") == []
    assert sorted(s.subscription_id for s in world.connections.of("c1")) == ["sub-1", "sub-2"]
    assert world.connections.due("c1") == world.clock.now_ms()  # at the sweeper's next run
    assert world.connections.of("c1")[0].context == {"user": "c1"}  # the leave payload's context is kept

    # WHEN Lambda takes invocations again and the sweeper removes the connection
    world.invoker.throttled.clear()
    world.clock.advance(60_000)
    assert len(disconnector.disconnect("c1")) == 2
    # THEN on-leave got each leave once, audit still once each; a later removal finds nothing
    assert sorted(world.invoker.queued("on-leave")) == ["sub-1", "sub-2"]
    assert sorted(world.invoker.queued("audit")) == ["sub-1", "sub-2"]
    assert disconnector.disconnect("c1") == []
    assert len(world.invoker.async_calls) == 4


def test_a_leave_frame_whose_handler_is_throttled_is_handed_back_to_its_live_connection(world: World) -> None:
    # GIVEN a live connection with a subscription, and every Event invocation throttled
    world.subscribe("c1", "sub-1")
    world.invoker.throttled.update({"on-leave": ALWAYS, "audit": ALWAYS})
    disconnector = world.disconnector()
    # WHEN the client leaves
    assert disconnector.leave("c1", "sub-1") is None
    # THEN the subscription is back on its connection (whose auth context is untouched); nothing was queued
    assert [s.subscription_id for s in world.connections.of("c1")] == ["sub-1"]
    assert world.connections.get_connection("c1") == Connection("c1", 0, {"user": "c1"})
    assert world.invoker.async_calls == []
    # AND when the connection later closes, each handler gets the leave once
    world.invoker.throttled.clear()
    world.clock.advance(60_000)
    assert [s.subscription_id for s in disconnector.disconnect("c1")] == ["sub-1"]
    assert world.invoker.queued("on-leave") == world.invoker.queued("audit") == ["sub-1"]


def test_a_leave_that_is_never_queued_is_set_aside_after_its_hand_backs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN on-leave never accepting an invocation (a permanent fault looks the same as a long throttle)
    world.subscribe("c1", "sub-1")
    world.invoker.throttled["on-leave"] = ALWAYS
    disconnector = world.disconnector()
    # WHEN the connection is removed again and again (the sweeper, every ten minutes)
    with caplog.at_level(logging.ERROR, logger="iii_stream.core.triggers"):
        for _ in range(world.retry.hand_backs + 3):
            disconnector.disconnect("c1")
            world.clock.advance(600_000)
    # THEN it was handed back hand_backs times, then set aside (logged) and the connection stays removed
    assert world.connections.connections == {}
    hand_backs = [trigger_id for (_, trigger_id) in world.ledger.status if trigger_id.startswith("#hand-back")]
    assert len(hand_backs) == world.retry.hand_backs
    assert [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()] != []
    assert world.invoker.queued("audit") == ["sub-1"]  # queued once, never again
    assert world.invoker.queued("on-leave") == []


def test_in_a_storm_of_throttled_leaves_only_the_first_waits(world: World) -> None:
    # GIVEN 20 connections, and on-leave throttled for good
    for n in range(20):
        world.subscribe(f"c{n}", f"sub-{n}")
    world.invoker.throttled["on-leave"] = ALWAYS
    disconnector = world.disconnector()
    # WHEN they all close within a second (a 410 storm, or many $disconnects on one container)
    for n in range(20):
        disconnector.disconnect(f"c{n}")
    # THEN only the first leave waited between its attempts; each other one tried once, and all were handed back
    assert len(world.sleeps) == world.retry.attempts - 1
    assert world.invoker.queue_attempts["on-leave"] == world.retry.attempts + 19
    assert len(world.connections.subscriptions) == 20


def test_without_a_ledger_a_leave_that_cannot_be_queued_is_logged_not_handed_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN leave handlers without a ledger (no memory of what was queued), and on-leave throttled for good
    world.with_ledger = False
    world.subscribe("c1", "sub-1")
    world.invoker.throttled["on-leave"] = ALWAYS
    # WHEN the connection closes
    with caplog.at_level(logging.ERROR, logger="iii_stream.core.triggers"):
        left = world.disconnector().disconnect("c1")
    # THEN audit has it, on-leave's failure is logged, and nothing is handed back (a retry could double audit)
    assert [s.subscription_id for s in left] == ["sub-1"]
    assert world.invoker.queued("audit") == ["sub-1"]
    assert world.connections.connections == {}
    assert any("on-leave" in r.getMessage() or "t-leave" in r.getMessage() for r in caplog.records)


def test_an_unreadable_registry_hands_the_leave_back(world: World) -> None:
    # GIVEN the registry unreadable for one read (fault: RegistryStore.triggers)
    world.subscribe("c1", "sub-1")
    world.registry.unavailable = 1
    disconnector = world.disconnector()
    # WHEN the connection closes, then is removed again once the registry answers
    assert disconnector.disconnect("c1") == []
    assert world.invoker.async_calls == [] and len(world.connections.subscriptions) == 1
    assert len(disconnector.disconnect("c1")) == 1
    # THEN each handler got the leave once
    assert world.invoker.queued("on-leave") == world.invoker.queued("audit") == ["sub-1"]


def test_when_what_was_queued_cannot_be_recorded_nothing_is_retried(world: World) -> None:
    # GIVEN on-leave throttled for good, and the ledger unable to record that audit was queued
    world.subscribe("c1", "sub-1")
    world.invoker.throttled["on-leave"] = ALWAYS
    world.ledger.failing["complete"] = 1
    # WHEN the connection closes
    world.disconnector().disconnect("c1")
    # THEN the leave is not handed back: a retry would queue audit a second time
    assert world.connections.subscriptions == {}
    assert world.invoker.queued("audit") == ["sub-1"]


def test_a_ledger_that_cannot_claim_hands_the_leave_back_without_queueing(world: World) -> None:
    # GIVEN the ledger failing its next claim (fault: TriggerLedger.claim)
    world.subscribe("c1", "sub-1")
    world.ledger.failing["claim"] = 1
    disconnector = world.disconnector()
    # WHEN the connection is removed twice
    disconnector.disconnect("c1")
    disconnector.disconnect("c1")
    # THEN the trigger whose claim failed was queued by the second removal only; each handler got one leave
    assert world.invoker.queued("on-leave") == world.invoker.queued("audit") == ["sub-1"]
    assert world.ledger.status[(leave_change_id(Subscription("c1", "sub-1", "s", "g")), "t-audit")] == "done"


def test_a_subscription_id_used_again_on_its_connection_gets_its_own_leave(world: World) -> None:
    # GIVEN a client that leaves and later joins again with the same subscription id
    disconnector = world.disconnector()
    world.subscribe("c1", "sub-1")
    disconnector.leave("c1", "sub-1")
    world.subscribe("c1", "sub-1")
    # WHEN it leaves again
    disconnector.leave("c1", "sub-1")
    # THEN each handler got both leaves (the ledger only remembers handlers of a leave that was handed back)
    assert world.invoker.queued("on-leave") == world.invoker.queued("audit") == ["sub-1", "sub-1"]


# --- 410 storms during a broadcast whose leaves are throttled (faults: Poster.post 410, invoke_async) ------


@pytest.fixture
def broadcast(world: World) -> Iterator[tuple[BroadcastService, RecordingPoster]]:
    poster = RecordingPoster()
    service = BroadcastService(world.connections, poster, world.disconnector(), max_workers=8)
    yield service, poster
    service.close()


def test_a_410_storm_with_throttled_leaves_fails_nothing_and_each_leave_fires_once(
    world: World, broadcast: tuple[BroadcastService, RecordingPoster]
) -> None:
    service, poster = broadcast
    # GIVEN 30 connections on a group, 20 of them gone without a $disconnect, and on-leave throttled
    for n in range(30):
        world.subscribe(f"c{n}", f"sub-{n}")
    gone = {f"c{n}" for n in range(0, 30, 3)} | {f"c{n}" for n in range(1, 30, 3)}
    poster.gone.update(gone)
    world.invoker.throttled["on-leave"] = ALWAYS
    # WHEN a change is broadcast
    first = service.deliver_batch([Change("s", "g", "a", "create", {"id": "a"}, TS)])
    # THEN the batch succeeded (no live connection is posted twice); gone ones were handed back, audited once
    assert first.failed_at is None and sorted(first.gone) == sorted(gone)
    assert {cid for cid, frames in poster.frames.items() if frames} == {f"c{n}" for n in range(2, 30, 3)}
    assert len(world.invoker.queued("audit")) == 20 and world.invoker.queued("on-leave") == []
    assert {s.connection_id for s in world.connections.subscriptions.values()} >= gone

    # WHEN Lambda recovers and the next change is broadcast (the gone connections 410 again)
    world.invoker.throttled.clear()
    world.clock.advance(60_000)
    service.new_batch()
    second = service.deliver_batch([Change("s", "g", "a", "update", {"id": "a"}, TS + 1)])
    # THEN every gone subscription left, each handler once per subscription; the live ones got both frames
    assert second.failed_at is None
    assert sorted(world.invoker.queued("on-leave")) == sorted(f"sub-{cid[1:]}" for cid in gone)
    assert sorted(world.invoker.queued("audit")) == sorted(f"sub-{cid[1:]}" for cid in gone)
    assert {s.connection_id for s in world.connections.subscriptions.values()}.isdisjoint(gone)
    assert all(len(poster.frames[f"c{n}"]) == 2 for n in range(2, 30, 3))


# --- stream triggers when the ledger fails (fault: TriggerLedger) -----------------------------------------


def _stream_world() -> tuple[World, StreamTriggers]:
    world = World()
    world.fn("on-change")
    world.trigger("t-change", "stream", "on-change", stream_name="s")
    return world, StreamTriggers(world.cache(), world.invoker, world.ledger)


def _change() -> Change:
    return Change("s", "g", "a", "create", {"id": "a"}, TS)


def test_a_claim_that_fails_fails_the_record_and_the_retry_fires_once() -> None:
    world, triggers = _stream_world()
    world.ledger.failing["claim"] = 1
    with pytest.raises(StoreError):
        triggers.run(_change(), "change-1")  # the record fails: Lambda retries it
    assert world.invoker.async_calls == []
    assert triggers.run(_change(), "change-1") == 1
    assert triggers.run(_change(), "change-1") == 0  # and a redelivery after that fires nothing
    assert world.invoker.queued("on-change") == ["a"]


def test_a_handler_queued_but_not_recorded_as_done_is_not_queued_again() -> None:
    # GIVEN the ledger failing to mark the claim done, after the handler was queued
    world, triggers = _stream_world()
    world.ledger.failing["complete"] = 1
    # WHEN the record is dispatched
    assert triggers.run(_change(), "change-1") == 1
    # THEN the record succeeded (failing it would queue the handler again on the retry): queued once
    assert world.invoker.queued("on-change") == ["a"]


def test_a_throttled_handler_invocation_releases_its_claim_and_the_retry_fires_once() -> None:
    world, triggers = _stream_world()
    world.invoker.throttled["on-change"] = 1
    with pytest.raises(FunctionFailedError, match="TooManyRequestsException"):
        triggers.run(_change(), "change-1")
    assert ("change-1", "t-change") not in world.ledger.status  # released
    assert triggers.run(_change(), "change-1") == 1
    assert triggers.run(_change(), "change-1") == 0
    assert world.invoker.queued("on-change") == ["a"]


def test_an_unreadable_registry_fails_the_record_and_the_retry_fires_once() -> None:
    world, triggers = _stream_world()
    world.registry.unavailable = 2
    for _ in range(2):
        with pytest.raises(StoreError, match="ResourceNotFoundException"):
            triggers.run(_change(), "change-1")
    assert triggers.run(_change(), "change-1") == 1
    assert world.invoker.queued("on-change") == ["a"]


# --- the join gate when the registry cannot be read (fault: RegistryStore) --------------------------------


@pytest.mark.parametrize(("fail_open", "allowed"), [(False, False), (True, True)])
def test_the_join_gate_fails_closed_unless_fail_open_when_the_registry_cannot_be_read(
    fail_open: bool, allowed: bool
) -> None:
    world = World()
    world.fn("gate", lambda payload: {"unauthorized": False})
    world.trigger("t-gate", "stream:join", "gate")
    gate = TriggerJoinGate(world.cache(), world.invoker, fail_open=fail_open)
    world.registry.unavailable = 1
    assert gate.allows(Subscription("c1", "sub-1", "s", "g")) is allowed
    assert gate.allows(Subscription("c1", "sub-2", "s", "g")) is True  # the registry answers again
