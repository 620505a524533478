"""Join, leave and disconnect: one sync per accepted join, exactly one leave per subscription, bad frames ignored."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from iii_stream.core import frames
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import StoreError
from iii_stream.core.limits import MAX_MESSAGE_BYTES
from iii_stream.core.ports import PENDING_SYNC, Connection, ItemAddress, StoredItem, Subscription, SyncMark
from iii_stream.core.subscriptions import SubscriptionService
from iii_stream.core.triggers import leave_change_id

from tests.fakes import (
    FixedClock,
    MemoryConnectionStore,
    MemoryItemStore,
    RecordingLeaveHook,
    RecordingPoster,
    ScriptedGate,
)

CONN = "conn-1"


@dataclass
class World:
    clock: FixedClock
    items: MemoryItemStore
    connections: MemoryConnectionStore
    poster: RecordingPoster
    gate: ScriptedGate
    leaves: RecordingLeaveHook
    disconnector: Disconnector
    service: SubscriptionService

    def put(self, stream: str, group: str, item_id: str, value: Any, now_ms: int | None = None) -> StoredItem:
        address = ItemAddress(stream, group, item_id)
        return self.items.put(address, json.dumps(value), self.clock.now_ms() if now_ms is None else now_ms, None)[1]

    def frames(self, connection_id: str = CONN) -> list[Any]:
        return self.poster.frames.get(connection_id, [])


def _world(items: MemoryItemStore | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES) -> World:
    clock = FixedClock()
    store = items or MemoryItemStore()
    connections = MemoryConnectionStore()
    connections.save_connection(Connection(CONN, clock.now_ms(), {"user": "u1"}))
    poster, gate, leaves = RecordingPoster(), ScriptedGate(), RecordingLeaveHook()
    disconnector = Disconnector(connections, leaves)
    service = SubscriptionService(connections, store, poster, clock, gate, disconnector, max_message_bytes)
    return World(clock, store, connections, poster, gate, leaves, disconnector, service)


@pytest.fixture
def world() -> World:
    return _world()


def _frame(kind: str, subscription_id: str, stream: str, group: str, item_id: str | None = None) -> str:
    data: dict[str, Any] = {"streamName": stream, "groupId": group, "subscriptionId": subscription_id}
    if item_id is not None:
        data["id"] = item_id
    return json.dumps({"type": kind, "data": data})


def _join(world: World, subscription_id: str, stream: str, group: str, item_id: str | None = None) -> None:
    world.service.message(CONN, _frame("join", subscription_id, stream, group, item_id))


def _leave(world: World, subscription_id: str, stream: str = "s", group: str = "g") -> None:
    world.service.message(CONN, _frame("leave", subscription_id, stream, group))


def _wrapper(stream: str, group: str, item_id: str | None, timestamp: int, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "stream", "timestamp": timestamp, "streamName": stream, "groupId": group, "id": item_id,
            "event": event}  # fmt: skip


# --- the sync -------------------------------------------------------------------------------------


def test_a_group_join_gets_one_sync_with_null_id_and_the_values_ordered_by_item_id(world: World) -> None:
    world.put("s", "g", "b", {"id": "b", "v": 2})
    world.put("s", "g", "a", {"id": "a", "v": 1})
    world.put("s", "g", "c", {"id": "c", "v": 3})
    world.put("s", "other", "z", {"id": "z"})

    _join(world, "sub-1", "s", "g")

    [frame] = world.frames()
    assert frame["type"] == "stream"
    assert (frame["streamName"], frame["groupId"], frame["id"]) == ("s", "g", None)
    assert frame["event"] == {"type": "sync", "data": [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 3}]}
    assert list(frame) == ["type", "timestamp", "streamName", "groupId", "id", "event"]


def test_a_join_to_an_empty_group_syncs_an_empty_array(world: World) -> None:
    _join(world, "sub-1", "s", "g")

    [frame] = world.frames()
    assert frame["event"] == {"type": "sync", "data": []}
    assert frame["id"] is None


def test_the_group_sync_is_stamped_no_earlier_than_now_or_any_item(world: World) -> None:
    now = world.clock.now_ms()
    world.put("s", "g", "a", {"id": "a"}, now_ms=now - 50)
    future = world.put("s", "g", "b", {"id": "b"}, now_ms=now + 5_000)  # a writer whose clock runs ahead

    _join(world, "sub-1", "s", "g")

    [frame] = world.frames()
    assert frame["timestamp"] >= now
    assert frame["timestamp"] >= future.ts


def test_the_group_sync_of_older_items_is_stamped_now_at_least(world: World) -> None:
    world.put("s", "g", "a", {"id": "a"}, now_ms=world.clock.now_ms() - 10_000)

    _join(world, "sub-1", "s", "g")

    assert world.frames()[0]["timestamp"] >= world.clock.now_ms()


def test_an_item_join_gets_a_sync_with_the_item_id_and_value_stamped_with_the_stored_ts(world: World) -> None:
    world.put("s", "g", "a", {"id": "a", "v": 1}, now_ms=world.clock.now_ms() - 300)
    stored = world.put("s", "g", "a", {"id": "a", "v": 2}, now_ms=world.clock.now_ms() - 200)
    world.put("s", "g", "b", {"id": "b"})

    _join(world, "sub-1", "s", "g", "a")

    assert world.frames() == [_wrapper("s", "g", "a", stored.ts, {"type": "sync", "data": {"id": "a", "v": 2}})]


def test_an_item_join_of_a_missing_item_syncs_null_stamped_before_now(world: World) -> None:
    _join(world, "sub-1", "s", "g", "nope")

    [frame] = world.frames()
    assert frame["id"] == "nope"
    assert frame["event"] == {"type": "sync", "data": None}
    assert 0 < frame["timestamp"] < world.clock.now_ms()


def test_an_item_join_of_an_expired_item_syncs_null(world: World) -> None:
    address = ItemAddress("s", "g", "a")
    world.items.put(address, '{"id":"a"}', world.clock.now_ms() - 5_000, world.clock.now_ms() // 1000 - 1)

    _join(world, "sub-1", "s", "g", "a")

    assert world.frames()[0]["event"] == {"type": "sync", "data": None}


def test_an_accepted_join_is_recorded_with_the_connection_context(world: World) -> None:
    _join(world, "sub-1", "s", "g", "a")

    assert world.connections.of(CONN) == [Subscription(CONN, "sub-1", "s", "g", "a", {"user": "u1"})]
    assert world.gate.asked == [Subscription(CONN, "sub-1", "s", "g", "a", {"user": "u1"})]


def test_names_with_any_characters_round_trip_into_the_sync(world: World) -> None:
    stream, group, item_id = 'a:b#"c', '#:"ü', 'x#y:"z'
    world.put(stream, group, item_id, {"id": item_id})

    _join(world, "sub-1", stream, group, item_id)

    [frame] = world.frames()
    assert (frame["streamName"], frame["groupId"], frame["id"]) == (stream, group, item_id)
    assert frame["event"]["data"] == {"id": item_id}


# --- refused joins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("item_id", [None, "a"])
def test_a_rejected_join_gets_one_unauthorized_frame_and_is_not_recorded(item_id: str | None) -> None:
    world = _world()
    world.gate.allow = lambda subscription: False
    world.put("s", "g", "a", {"id": "a"})

    _join(world, "sub-1", "s", "g", item_id)

    assert world.frames() == [_wrapper("s", "g", item_id, world.clock.now_ms(), {"type": "unauthorized"})]
    assert world.connections.subscriptions == {}
    _leave(world, "sub-1")
    world.disconnector.disconnect(CONN)
    assert world.leaves.left_subscriptions == []


def test_the_gate_decides_per_subscription(world: World) -> None:
    world.gate.allow = lambda subscription: subscription.group_id != "secret"

    _join(world, "sub-1", "s", "secret")
    _join(world, "sub-2", "s", "open")

    assert [f["event"]["type"] for f in world.frames()] == ["unauthorized", "sync"]
    assert [s.subscription_id for s in world.connections.of(CONN)] == ["sub-2"]


def test_a_join_from_an_unknown_connection_does_nothing(world: World) -> None:
    world.service.message("stranger", _frame("join", "sub-1", "s", "g"))

    assert world.poster.attempts == []
    assert world.connections.subscriptions == {}
    assert world.gate.asked == []


# --- re-join, leave, disconnect ------------------------------------------------------------------------


def test_a_rejoin_with_the_same_subscription_id_replaces_the_subscription(world: World) -> None:
    _join(world, "sub-1", "s", "old")
    _join(world, "sub-1", "s", "new")

    [held] = world.connections.of(CONN)
    assert replace(held, synced=None) == Subscription(CONN, "sub-1", "s", "new", None, {"user": "u1"})
    assert held.synced is not None and held.synced.read_at == world.clock.now_ms()
    assert world.connections.subscribers("s", "old") == []
    assert [f["groupId"] for f in world.frames()] == ["old", "new"]
    assert world.leaves.left_subscriptions == []


def test_a_leave_fires_the_leave_hook_once(world: World) -> None:
    _join(world, "sub-1", "s", "g", "a")
    _join(world, "sub-2", "s", "g")

    _leave(world, "sub-1")
    _leave(world, "sub-1")
    _leave(world, "never-joined")

    assert world.leaves.left_subscriptions == [Subscription(CONN, "sub-1", "s", "g", "a", {"user": "u1"})]
    assert [s.subscription_id for s in world.connections.of(CONN)] == ["sub-2"]
    assert len(world.frames()) == 2  # the two syncs; a leave gets no reply


def test_a_disconnect_fires_one_leave_per_subscription_and_a_second_disconnect_none(world: World) -> None:
    _join(world, "sub-1", "s", "g")
    _join(world, "sub-2", "s", "g", "a")
    _join(world, "sub-3", "t", "h")

    removed = world.disconnector.disconnect(CONN)
    again = world.disconnector.disconnect(CONN)

    assert sorted(s.subscription_id for s in removed) == ["sub-1", "sub-2", "sub-3"]
    assert sorted(s.subscription_id for s in world.leaves.left_subscriptions) == ["sub-1", "sub-2", "sub-3"]
    assert again == []
    assert len(world.leaves.left_subscriptions) == 3
    assert world.connections.get_connection(CONN) is None


def test_a_leave_after_the_disconnect_fires_nothing(world: World) -> None:
    _join(world, "sub-1", "s", "g")
    world.disconnector.disconnect(CONN)

    _leave(world, "sub-1")

    assert len(world.leaves.left_subscriptions) == 1


def test_a_join_after_the_disconnect_is_ignored(world: World) -> None:
    world.disconnector.disconnect(CONN)

    _join(world, "sub-1", "s", "g")

    assert world.poster.attempts == []
    assert world.connections.subscriptions == {}


# --- malformed frames ----------------------------------------------------------------------------------

_GOOD = {"streamName": "s", "groupId": "g", "subscriptionId": "sub-1"}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _GOOD.items() if k != key}


MALFORMED: list[Any] = [
    pytest.param("not json", id="non-json"),
    pytest.param("{", id="truncated-json"),
    pytest.param("", id="empty"),
    pytest.param("   \n\t", id="whitespace"),
    pytest.param(None, id="none"),
    pytest.param(b'{"type":"join","data":{}}', id="bytes"),
    pytest.param(json.dumps({"type": "subscribe", "data": _GOOD}), id="unknown-type"),
    pytest.param(json.dumps({"type": "JOIN", "data": _GOOD}), id="upper-case-type"),
    pytest.param(json.dumps({"data": _GOOD}), id="no-type"),
    pytest.param(json.dumps({"type": "join"}), id="no-data"),
    pytest.param(json.dumps({"type": "join", "data": None}), id="null-data"),
    pytest.param(json.dumps({"type": "join", "data": _without("subscriptionId")}), id="no-subscription-id"),
    pytest.param(json.dumps({"type": "join", "data": _without("streamName")}), id="no-stream-name"),
    pytest.param(json.dumps({"type": "join", "data": _without("groupId")}), id="no-group-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "subscriptionId": ""}}), id="empty-subscription-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "streamName": 1}}), id="numeric-stream-name"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "groupId": 2}}), id="numeric-group-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "subscriptionId": 3}}), id="numeric-subscription-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "streamName": "x" * 600}}), id="600-byte-stream"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "groupId": "é" * 300}}), id="600-byte-group"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "id": 7}}), id="numeric-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "id": ["a"]}}), id="list-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "id": {"a": 1}}}), id="object-id"),
    pytest.param(json.dumps({"type": "join", "data": {**_GOOD, "id": True}}), id="boolean-id"),
    pytest.param(json.dumps([{"type": "join", "data": _GOOD}]), id="json-array"),
    pytest.param(json.dumps("join"), id="json-string"),
    pytest.param("null", id="json-null"),
    pytest.param("42", id="json-number"),
    pytest.param(json.dumps({"type": "leave", "data": _without("subscriptionId")}), id="leave-without-id"),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_a_malformed_frame_is_ignored(body: Any) -> None:
    world = _world()
    _join(world, "keep", "s", "g")
    before = list(world.poster.attempts)

    world.service.message(CONN, body)

    assert world.poster.attempts == before
    assert [s.subscription_id for s in world.connections.of(CONN)] == ["keep"]
    assert world.leaves.left_subscriptions == []
    assert [s.subscription_id for s in world.gate.asked] == ["keep"]


def test_a_frame_with_extra_fields_and_a_null_id_is_a_group_join(world: World) -> None:
    body = json.dumps({"type": "join", "extra": 1, "data": {**_GOOD, "id": None, "more": True}})

    world.service.message(CONN, body)

    assert world.frames()[0]["id"] is None
    assert world.connections.of(CONN)[0].item_id is None


# --- a group too big for one message --------------------------------------------------------------------


def test_a_group_sync_over_the_message_limit_is_split_into_a_sync_and_creates() -> None:
    limit = 2000
    world = _world(max_message_bytes=limit)
    values = [{"id": f"item-{n:03d}", "text": "x" * 90} for n in range(60)]  # ~6 KB in all
    stored = {value["id"]: world.put("s", "g", value["id"], value) for value in values}

    _join(world, "sub-1", "s", "g")

    sent = world.poster.raw[CONN]
    first, rest = world.frames()[0], world.frames()[1:]
    assert first["event"]["type"] == "sync"
    assert first["id"] is None
    assert len(sent[0]) <= limit
    assert 0 < len(first["event"]["data"]) < len(values)
    assert rest
    assert all(frame["event"]["type"] == "create" for frame in rest)
    assert first["event"]["data"] + [frame["event"]["data"] for frame in rest] == values
    assert [frame["id"] for frame in rest] == [value["id"] for value in values[len(first["event"]["data"]) :]]
    assert all(frame["timestamp"] == stored[frame["id"]].ts for frame in rest)
    assert all(len(data) <= limit for data in sent)


def test_the_sync_keeps_as_many_values_as_fit() -> None:
    limit = 2000
    world = _world(max_message_bytes=limit)
    values = [{"id": f"item-{n:03d}", "text": "y" * 90} for n in range(60)]
    for value in values:
        world.put("s", "g", value["id"], value)

    _join(world, "sub-1", "s", "g")

    first = world.frames()[0]
    kept = len(first["event"]["data"])
    one_more = {**first, "event": {"type": "sync", "data": values[: kept + 1]}}
    assert len(frames.dumps(one_more).encode("utf-8")) > limit


def test_a_group_sync_that_fits_exactly_is_not_split() -> None:
    values = [{"id": f"i{n}", "t": "z" * 50} for n in range(10)]
    probe = _world()
    for value in values:
        probe.put("s", "g", value["id"], value)
    _join(probe, "sub-1", "s", "g")
    exact = len(probe.poster.raw[CONN][0])

    world = _world(max_message_bytes=exact)
    for value in values:
        world.put("s", "g", value["id"], value)
    _join(world, "sub-1", "s", "g")

    assert len(world.frames()) == 1
    assert world.frames()[0]["event"]["data"] == values


# --- catch-up after the sync -----------------------------------------------------------------------------


class SecondReadChanges(MemoryItemStore):
    """An item store that applies ``between`` just before the second snapshot is read."""

    def __init__(self) -> None:
        super().__init__()
        self.between: Callable[[], None] = lambda: None
        self.reads = 0

    def _count(self) -> None:
        self.reads += 1
        if self.reads == 2:
            self.between()

    def get(self, address: ItemAddress) -> StoredItem | None:
        self._count()
        return super().get(address)

    def group_items(self, stream_name: str, group_id: str, now_ms: int) -> Iterator[tuple[str, StoredItem]]:
        self._count()
        return super().group_items(stream_name, group_id, now_ms)


def test_changes_between_the_two_snapshots_follow_the_group_sync() -> None:
    items = SecondReadChanges()
    world = _world(items)
    world.put("s", "g", "keep", {"id": "keep"})
    old_changed = world.put("s", "g", "changed", {"id": "changed", "v": 1})
    old_removed = world.put("s", "g", "removed", {"id": "removed"})
    written: dict[str, StoredItem] = {}

    def between() -> None:
        world.clock.advance(10)
        written["added"] = world.put("s", "g", "added", {"id": "added"})
        written["changed"] = world.put("s", "g", "changed", {"id": "changed", "v": 2})
        items.delete(ItemAddress("s", "g", "removed"), world.clock.now_ms())

    items.between = between

    _join(world, "sub-1", "s", "g")

    sync, *catch_up = world.frames()
    assert sync["event"] == {"type": "sync", "data": [{"id": "changed", "v": 1}, {"id": "keep"}, {"id": "removed"}]}
    assert written["changed"].ts > old_changed.ts
    assert catch_up == [
        _wrapper("s", "g", "added", written["added"].ts, {"type": "create", "data": {"id": "added"}}),
        _wrapper("s", "g", "changed", written["changed"].ts, {"type": "update", "data": {"id": "changed", "v": 2}}),
        _wrapper("s", "g", "removed", old_removed.ts + 1, {"type": "delete", "data": {"id": "removed"}}),
    ]


def test_no_catch_up_frames_when_nothing_changed(world: World) -> None:
    world.put("s", "g", "a", {"id": "a"})

    _join(world, "sub-1", "s", "g")
    _join(world, "sub-2", "s", "g", "a")

    assert [f["event"]["type"] for f in world.frames()] == ["sync", "sync"]


def test_an_item_created_between_the_snapshots_follows_its_null_sync() -> None:
    items = SecondReadChanges()
    world = _world(items)
    written: dict[str, StoredItem] = {}
    items.between = lambda: written.update(a=world.put("s", "g", "a", {"id": "a"}))

    _join(world, "sub-1", "s", "g", "a")

    sync, create = world.frames()
    assert sync["event"] == {"type": "sync", "data": None}
    assert create == _wrapper("s", "g", "a", written["a"].ts, {"type": "create", "data": {"id": "a"}})
    assert create["timestamp"] > sync["timestamp"]


def test_an_item_deleted_between_the_snapshots_follows_its_sync_as_a_delete() -> None:
    items = SecondReadChanges()
    world = _world(items)
    first = world.put("s", "g", "a", {"id": "a", "v": 1}, now_ms=world.clock.now_ms() - 100)

    def between() -> None:
        items.delete(ItemAddress("s", "g", "a"), world.clock.now_ms())

    items.between = between

    _join(world, "sub-1", "s", "g", "a")

    sync, delete = world.frames()
    assert sync == _wrapper("s", "g", "a", first.ts, {"type": "sync", "data": {"id": "a", "v": 1}})
    assert delete == _wrapper("s", "g", "a", first.ts + 1, {"type": "delete", "data": {"id": "a", "v": 1}})


# --- the connection vanishes mid-join -----------------------------------------------------------------------


def test_a_gone_connection_while_posting_the_sync_is_removed_with_its_leaves(world: World) -> None:
    _join(world, "sub-1", "s", "g")
    world.poster.gone.add(CONN)

    _join(world, "sub-2", "s", "g", "a")

    assert world.connections.get_connection(CONN) is None
    assert world.connections.subscriptions == {}
    assert sorted(s.subscription_id for s in world.leaves.left_subscriptions) == ["sub-1", "sub-2"]


def test_a_gone_connection_while_posting_unauthorized_is_removed(world: World) -> None:
    _join(world, "sub-1", "s", "g")
    world.poster.gone.add(CONN)
    world.gate.allow = lambda subscription: False

    _join(world, "sub-2", "s", "g")

    assert world.connections.get_connection(CONN) is None
    assert [s.subscription_id for s in world.leaves.left_subscriptions] == ["sub-1"]


# --- the sync mark, the join id, a table failing mid-join ---------------------------------------------------


class FirstReadWatched(MemoryItemStore):
    """Calls ``at_read`` as the join reads its first snapshot (the subscription is recorded by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.at_read: Callable[[], None] = lambda: None

    def group_items(self, stream_name: str, group_id: str, now_ms: int) -> Iterator[tuple[str, StoredItem]]:
        self.at_read()
        self.at_read = lambda: None
        return super().group_items(stream_name, group_id, now_ms)


def test_a_group_subscription_is_pending_until_its_snapshot_is_read_then_marked() -> None:
    # GIVEN a join whose first snapshot read is watched (a broadcast reading subscribers at that moment)
    items = FirstReadWatched()
    world = _world(items)
    world.put("s", "g", "a", {"id": "a"})
    seen: list[Subscription] = []
    items.at_read = lambda: seen.extend(world.connections.subscribers("s", "g"))
    # WHEN it joins
    _join(world, "sub-1", "s", "g")
    # THEN a broadcast then saw it pending (it skips it: the snapshot carries what was written so far)
    assert [s.synced for s in seen] == [PENDING_SYNC]
    # AND afterwards it holds the real mark: the read time and the stamp of the item its sync carried
    (marked,) = world.connections.subscribers("s", "g")
    assert marked.synced is not None and not marked.synced.pending
    assert marked.synced.recent == {"a": world.items.items[ItemAddress("s", "g", "a")].ts}


def test_an_item_subscription_gets_no_mark(world: World) -> None:
    _join(world, "sub-1", "s", "g", "a")
    assert [s.synced for s in world.connections.subscribers("s", "g")] == [None]


def test_each_join_has_its_own_join_id_even_with_the_same_subscription_id(world: World) -> None:
    # GIVEN a subscription joined, left, and joined again under the same id
    _join(world, "sub-1", "s", "g")
    _leave(world, "sub-1")
    _join(world, "sub-1", "s", "g")
    _leave(world, "sub-1")
    # THEN both leaves fired, each with its own join id (the leave ledger keys on it: the second is not a repeat)
    first, second = world.leaves.left_subscriptions
    assert first.join_id and second.join_id and first.join_id != second.join_id
    assert leave_change_id(first) != leave_change_id(second)


class FailingMark(MemoryConnectionStore):
    def mark_synced(self, subscription: Subscription, mark: SyncMark) -> None:
        raise StoreError("ProvisionedThroughputExceededException: injected")


def test_a_table_failing_mid_join_leaves_no_half_made_subscription() -> None:
    # GIVEN a connection store whose sync mark cannot be written (a throttled table)
    world = _world()
    connections = FailingMark()
    connections.save_connection(Connection(CONN, 0, {"user": "u1"}))
    disconnector = Disconnector(connections, world.leaves)
    service = SubscriptionService(connections, world.items, world.poster, world.clock, world.gate, disconnector)
    # WHEN a client joins
    service.message(CONN, _frame("join", "sub-1", "s", "g"))
    # THEN the join was undone (its leave fired once), nothing was posted, and the connection stays
    assert connections.of(CONN) == []
    assert [s.subscription_id for s in world.leaves.left_subscriptions] == ["sub-1"]
    assert world.poster.frames == {}
    assert connections.get_connection(CONN) is not None
