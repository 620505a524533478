"""The sweeper: gone connections are removed with exactly one leave per subscription; live ones are checked later."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.ports import Connection, Subscription
from iii_stream.core.registry import FunctionRecord, RegisterTriggerInput, RegistryService
from iii_stream.core.sweeper import RECHECK_MS, Sweeper
from iii_stream.core.triggers import TriggerCache, TriggerLeaveHandlers

from tests.fakes import (
    FIRST_CHECK_MS,
    FakeInvoker,
    FixedClock,
    MemoryConnectionStore,
    MemoryRegistryStore,
    RecordingLeaveHook,
    RecordingPoster,
)

MINUTE = 60 * 1000


@dataclass
class World:
    clock: FixedClock
    connections: MemoryConnectionStore
    poster: RecordingPoster
    leaves: RecordingLeaveHook
    disconnector: Disconnector

    def sweeper(self, batch_limit: int = 200) -> Sweeper:
        return Sweeper(self.connections, self.poster, self.disconnector, self.clock, batch_limit)

    def connect(self, connection_id: str, age_ms: int = 11 * MINUTE, subscriptions: int = 2) -> list[Subscription]:
        """A connection opened ``age_ms`` ago, holding ``subscriptions`` subscriptions."""
        self.connections.save_connection(Connection(connection_id, self.clock.now_ms() - age_ms, {"user": "u"}))
        subs = [
            Subscription(connection_id, f"{connection_id}-sub-{n}", "chat", f"room-{n}", None, {"user": "u"})
            for n in range(subscriptions)
        ]
        for sub in subs:
            assert self.connections.add_subscription(sub)
        return subs

    def left(self) -> list[str]:
        return [sub.subscription_id for sub in self.leaves.left_subscriptions]


@pytest.fixture
def world() -> World:
    clock = FixedClock()
    connections = MemoryConnectionStore()
    poster = RecordingPoster()
    leaves = RecordingLeaveHook()
    return World(clock, connections, poster, leaves, Disconnector(connections, leaves))


def test_a_gone_connection_is_removed_and_each_subscription_leaves_once(world: World) -> None:
    subs = world.connect("gone-1")
    world.poster.gone.add("gone-1")
    report = world.sweeper().sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (1, ["gone-1"], 2, 0)
    assert world.leaves.left_subscriptions == subs
    assert world.connections.get_connection("gone-1") is None and world.connections.of("gone-1") == []
    assert world.poster.alive_checks == ["gone-1"]
    assert world.poster.all_frames() == []  # nothing is posted to a gone connection


def test_a_live_connection_is_postponed_not_removed(world: World) -> None:
    subs = world.connect("live-1")
    sweeper = world.sweeper()
    report = sweeper.sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (1, [], 0, 0)
    assert world.connections.postponed == [("live-1", world.clock.now_ms() + RECHECK_MS)]
    assert world.connections.get_connection("live-1") is not None
    assert world.connections.of("live-1") == subs and world.leaves.left_subscriptions == []
    # Not due again until the recheck time.
    assert sweeper.sweep().checked == 0
    world.clock.advance(RECHECK_MS - 1)
    assert sweeper.sweep().checked == 0
    assert world.poster.alive_checks == ["live-1"]
    world.clock.advance(1)
    assert sweeper.sweep().checked == 1
    assert world.poster.alive_checks == ["live-1", "live-1"]
    # Once the gateway has dropped it, the next check removes it.
    world.poster.gone.add("live-1")
    world.clock.advance(RECHECK_MS)
    report = sweeper.sweep()
    assert (report.checked, report.removed, report.leaves) == (1, ["live-1"], 2)
    assert world.leaves.left_subscriptions == subs


def test_connections_not_yet_due_are_untouched(world: World) -> None:
    world.connect("young", age_ms=FIRST_CHECK_MS - 1)
    world.connect("fresh", age_ms=0)
    world.poster.gone.update({"young", "fresh"})
    report = world.sweeper().sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (0, [], 0, 0)
    assert world.poster.alive_checks == [] and world.connections.postponed == []
    assert {"young", "fresh"} <= set(world.connections.connections)
    assert len(world.connections.subscriptions) == 4
    world.clock.advance(1)  # "young" reaches its first check
    assert world.sweeper().sweep().removed == ["young"]


def test_a_failed_liveness_check_counts_as_an_error_and_keeps_the_connection(world: World) -> None:
    subs = world.connect("flaky")
    world.poster.unreachable.add("flaky")
    sweeper = world.sweeper()
    report = sweeper.sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (1, [], 0, 1)
    assert world.connections.get_connection("flaky") is not None and world.connections.of("flaky") == subs
    assert world.connections.postponed == [] and world.leaves.left_subscriptions == []
    # It stays due, so the next run asks again.
    world.poster.unreachable.clear()
    world.poster.gone.add("flaky")
    report = sweeper.sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (1, ["flaky"], 2, 0)


def test_one_run_over_a_mixed_batch(world: World) -> None:
    world.connect("gone", subscriptions=3)
    world.connect("live")
    world.connect("flaky")
    world.connect("young", age_ms=MINUTE)
    world.poster.gone.update({"gone", "young"})
    world.poster.unreachable.add("flaky")
    report = world.sweeper().sweep()
    assert (report.checked, report.removed, report.leaves, report.errors) == (3, ["gone"], 3, 1)
    assert sorted(world.poster.alive_checks) == ["flaky", "gone", "live"]
    assert sorted(world.connections.connections) == ["flaky", "live", "young"]
    assert world.left() == ["gone-sub-0", "gone-sub-1", "gone-sub-2"]


def test_running_the_sweeper_again_never_fires_a_leave_twice(world: World) -> None:
    subs = world.connect("gone-1")
    world.poster.gone.add("gone-1")
    sweeper = world.sweeper()
    assert sweeper.sweep().leaves == 2
    for _ in range(3):
        world.clock.advance(RECHECK_MS)
        report = sweeper.sweep()
        assert (report.checked, report.removed, report.leaves) == (0, [], 0)
    assert world.leaves.left_subscriptions == subs
    assert world.disconnector.disconnect("gone-1") == []  # a late $disconnect finds nothing either
    assert world.leaves.left_subscriptions == subs


def test_the_batch_limit_bounds_one_run(world: World) -> None:
    for n in range(5):
        world.connect(f"gone-{n}", subscriptions=1)
        world.poster.gone.add(f"gone-{n}")
    sweeper = world.sweeper(batch_limit=2)
    assert [sweeper.sweep().checked for _ in range(4)] == [2, 2, 1, 0]
    assert sorted(world.left()) == [f"gone-{n}-sub-0" for n in range(5)]


def test_disconnect_during_the_liveness_check_gives_one_leave_per_subscription(world: World) -> None:
    subs = world.connect("racy", subscriptions=3)
    world.poster.gone.add("racy")
    by_disconnect: list[Subscription] = []

    def disconnect_route(connection_id: str) -> None:
        # $disconnect arrives while the sweeper is asking the gateway about the same connection.
        by_disconnect.extend(world.disconnector.disconnect(connection_id))

    world.poster.on_alive = disconnect_route
    report = world.sweeper().sweep()
    assert by_disconnect == subs
    assert world.leaves.left_subscriptions == subs  # fired by $disconnect, not again by the sweeper
    assert (report.checked, report.removed, report.leaves) == (1, ["racy"], 0)


def test_disconnect_before_the_sweep_leaves_nothing_for_it(world: World) -> None:
    subs = world.connect("closed")
    assert world.disconnector.disconnect("closed") == subs
    world.poster.gone.add("closed")
    report = world.sweeper().sweep()
    assert (report.checked, report.leaves) == (0, 0)
    assert world.leaves.left_subscriptions == subs


def test_disconnect_after_the_sweep_fires_nothing_more(world: World) -> None:
    subs = world.connect("vanished")
    world.poster.gone.add("vanished")
    assert world.sweeper().sweep().leaves == 2
    assert world.disconnector.disconnect("vanished") == []
    assert world.leaves.left_subscriptions == subs


def test_disconnect_while_a_live_answer_is_in_flight_is_not_undone(world: World) -> None:
    subs = world.connect("closing")

    def disconnect_route(connection_id: str) -> None:
        # The gateway still answers "alive", and $disconnect removes it before the sweeper postpones it.
        world.disconnector.disconnect(connection_id)

    world.poster.on_alive = disconnect_route
    report = world.sweeper().sweep()
    assert (report.checked, report.removed, report.leaves) == (1, [], 0)
    assert world.leaves.left_subscriptions == subs
    assert world.connections.get_connection("closing") is None  # postponing did not bring it back
    world.clock.advance(2 * RECHECK_MS)
    assert world.sweeper().sweep().checked == 0
    assert world.leaves.left_subscriptions == subs


def test_the_sweeper_queues_the_stream_leave_handlers_once() -> None:
    clock = FixedClock()
    registry_store = MemoryRegistryStore()
    registry = RegistryService(registry_store, clock)
    registry.register_function(FunctionRecord(function_id="presence::on-leave", target="on-leave"))
    registry.register_trigger(RegisterTriggerInput(type="stream:leave", function_id="presence::on-leave", id="t-1"))
    invoker = FakeInvoker({"on-leave": lambda payload: None})
    connections, poster = MemoryConnectionStore(), RecordingPoster()
    leave_handlers = TriggerLeaveHandlers(TriggerCache(registry_store), invoker)
    disconnector = Disconnector(connections, leave_handlers)
    connections.save_connection(Connection("c-1", clock.now_ms() - 3 * 3600 * 1000, {"user_id": "alice"}))
    connections.add_subscription(Subscription("c-1", "sub-1", "presence", "room-1", "user-1", {"user_id": "alice"}))
    poster.gone.add("c-1")
    sweeper = Sweeper(connections, poster, disconnector, clock)
    assert sweeper.sweep().leaves == 1
    clock.advance(RECHECK_MS)
    assert sweeper.sweep().leaves == 0
    assert disconnector.disconnect("c-1") == []
    assert invoker.async_calls == [
        (
            "on-leave",
            {
                "subscription_id": "sub-1",
                "stream_name": "presence",
                "group_id": "room-1",
                "id": "user-1",
                "context": {"user_id": "alice"},
            },
        )
    ]
