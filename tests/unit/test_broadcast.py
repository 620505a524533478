"""Broadcast: one frame per connection per change, 410s clean up, failed posts fail the record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from iii_stream.core import frames
from iii_stream.core.broadcast import BroadcastService
from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import PostError
from iii_stream.core.ports import PENDING_SYNC, SYNC_WINDOW_MS, Connection, Subscription, SyncMark

from tests.fakes import MemoryConnectionStore, RecordingPoster

TS = 1_800_000_000_123


class RecordingDisconnect(Disconnector):
    """The broadcast's disconnector: records each call, then removes the connection."""

    def __init__(self, connections: MemoryConnectionStore) -> None:
        super().__init__(connections)
        self.calls: list[tuple[str, list[Subscription]]] = []

    def disconnect(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        self.calls.append((connection_id, list(known or [])))
        return super().disconnect(connection_id, known)


@dataclass
class World:
    connections: MemoryConnectionStore
    poster: RecordingPoster
    disconnect: RecordingDisconnect
    service: BroadcastService

    @property
    def disconnects(self) -> list[tuple[str, list[Subscription]]]:
        return self.disconnect.calls

    def subscribe(
        self, connection_id: str, subscription_id: str, stream: str = "s", group: str = "g", item_id: str | None = None
    ) -> Subscription:
        if self.connections.get_connection(connection_id) is None:
            self.connections.save_connection(Connection(connection_id, 0))
        subscription = Subscription(connection_id, subscription_id, stream, group, item_id)
        assert self.connections.add_subscription(subscription)
        return subscription


@pytest.fixture
def world() -> Iterator[World]:
    connections, poster = MemoryConnectionStore(), RecordingPoster()
    disconnect = RecordingDisconnect(connections)
    service = BroadcastService(connections, poster, disconnect, max_workers=4)
    yield World(connections, poster, disconnect, service)
    service.close()


def _update(item_id: str | None = "a", stream: str = "s", group: str = "g", ts: int = TS) -> Change:
    return Change(stream, group, item_id, "update", {"id": item_id, "v": 1}, ts)


def _send(event_id: str | None, stream: str = "s", group: str = "g") -> Change:
    return Change(stream, group, event_id, "event", {"user": "u1"}, TS, event_type="typing")


def _receivers(poster: RecordingPoster) -> dict[str, int]:
    return {cid: len(frames) for cid, frames in poster.frames.items() if frames}


# --- who gets a change ------------------------------------------------------------------------------------


def test_a_change_reaches_group_subscribers_and_matching_item_subscribers(world: World) -> None:
    world.subscribe("group-conn", "s1")
    world.subscribe("item-a-conn", "s2", item_id="a")
    world.subscribe("item-b-conn", "s3", item_id="b")

    delivery = world.service.deliver(_update("a"))

    assert _receivers(world.poster) == {"group-conn": 1, "item-a-conn": 1}
    assert delivery.sent == 2
    assert delivery.gone == []
    assert delivery.failed == []


def test_a_connection_with_a_group_and_an_item_subscription_gets_one_frame(world: World) -> None:
    world.subscribe("c1", "group-sub")
    world.subscribe("c1", "item-sub", item_id="a")
    world.subscribe("c1", "other-item-sub", item_id="a")

    delivery = world.service.deliver(_update("a"))

    assert _receivers(world.poster) == {"c1": 1}
    assert world.poster.attempts == ["c1"]
    assert delivery.sent == 1


def test_a_send_without_id_reaches_only_group_subscriptions(world: World) -> None:
    world.subscribe("group-conn", "s1")
    world.subscribe("item-conn", "s2", item_id="a")

    world.service.deliver(_send(None))

    assert _receivers(world.poster) == {"group-conn": 1}


def test_a_send_with_an_id_reaches_the_group_and_that_items_subscriptions(world: World) -> None:
    world.subscribe("group-conn", "s1")
    world.subscribe("item-a-conn", "s2", item_id="a")
    world.subscribe("item-b-conn", "s3", item_id="b")

    world.service.deliver(_send("a"))

    assert _receivers(world.poster) == {"group-conn": 1, "item-a-conn": 1}


def test_subscriptions_of_other_groups_and_streams_get_nothing(world: World) -> None:
    world.subscribe("other-group", "s1", group="h")
    world.subscribe("other-stream", "s2", stream="t")
    world.subscribe("other-stream-item", "s3", stream="t", item_id="a")
    world.subscribe("prefix-group", "s4", group="g ")

    delivery = world.service.deliver(_update("a"))

    assert world.poster.attempts == []
    assert delivery.sent == 0


def test_an_empty_item_id_is_an_item_not_the_group(world: World) -> None:
    world.subscribe("empty-item", "s1", item_id="")
    world.subscribe("item-a", "s2", item_id="a")

    world.service.deliver(_update(""))

    assert _receivers(world.poster) == {"empty-item": 1}


# --- the frame ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "event"),
    [
        (Change("s", "g", "a", "create", {"id": "a", "n": 1}, TS), {"type": "create", "data": {"id": "a", "n": 1}}),
        (Change("s", "g", "a", "update", {"id": "a", "n": 2}, TS), {"type": "update", "data": {"id": "a", "n": 2}}),
        (Change("s", "g", "a", "delete", {"id": "a", "n": 2}, TS), {"type": "delete", "data": {"id": "a", "n": 2}}),
        (
            Change("s", "g", None, "event", {"user": "u1"}, TS, event_type="typing"),
            {"type": "event", "event": {"type": "typing", "data": {"user": "u1"}}},
        ),
        (
            Change("s", "g", "a", "event", None, TS, event_type="ping"),
            {"type": "event", "event": {"type": "ping", "data": None}},
        ),
    ],
)
def test_the_frame_is_the_stream_wrapper_message(world: World, change: Change, event: dict[str, Any]) -> None:
    world.subscribe("c1", "s1")

    world.service.deliver(change)

    expected = {"type": "stream", "timestamp": TS, "streamName": "s", "groupId": "g", "id": change.item_id,
                "event": event}  # fmt: skip
    assert world.poster.raw["c1"] == [frames.dumps(expected).encode("utf-8")]
    assert world.poster.frames["c1"] == [expected]


def test_the_frame_keeps_unicode_and_odd_names_exactly(world: World) -> None:
    stream, group = 'a:b#"c', "ü#:"
    world.subscribe("c1", "s1", stream=stream, group=group)

    world.service.deliver(Change(stream, group, 'x"y', "create", {"text": "héllo ☃"}, TS))

    [raw] = world.poster.raw["c1"]
    assert "héllo ☃".encode() in raw
    assert world.poster.frames["c1"][0]["streamName"] == stream
    assert world.poster.frames["c1"][0]["groupId"] == group
    assert world.poster.frames["c1"][0]["id"] == 'x"y'


# --- connections that are gone, posts that fail -------------------------------------------------------------------


def test_a_gone_connection_is_disconnected_once_with_its_subscriptions(world: World) -> None:
    gone_group = world.subscribe("gone", "s1")
    gone_item = world.subscribe("gone", "s2", item_id="a")
    world.subscribe("gone", "s3", group="elsewhere")
    world.subscribe("alive", "s4")
    world.poster.gone.add("gone")

    delivery = world.service.deliver(_update("a"))

    assert delivery.gone == ["gone"]
    assert delivery.sent == 1
    assert delivery.failed == []
    assert len(world.disconnects) == 1
    connection_id, known = world.disconnects[0]
    assert connection_id == "gone"
    assert sorted(known, key=lambda s: s.subscription_id) == [gone_group, gone_item]
    assert world.connections.get_connection("gone") is None
    assert _receivers(world.poster) == {"alive": 1}


def test_a_gone_connection_is_not_posted_again_in_the_same_batch(world: World) -> None:
    world.subscribe("gone", "s1")
    world.subscribe("alive", "s2")
    world.poster.gone.add("gone")

    world.service.deliver(_update("a", ts=TS))
    second = world.service.deliver(_update("b", ts=TS + 1))

    assert world.poster.attempts.count("gone") == 1
    assert second.gone == []
    assert second.sent == 1
    assert len(world.disconnects) == 1
    assert world.poster.frames["alive"] == [
        frames.wrapper("s", "g", "a", TS, {"type": "update", "data": {"id": "a", "v": 1}}),
        frames.wrapper("s", "g", "b", TS + 1, {"type": "update", "data": {"id": "b", "v": 1}}),
    ]


def test_a_gone_connection_is_not_posted_again_in_the_same_batch_for_another_group(world: World) -> None:
    world.subscribe("gone", "s1", group="g")
    world.subscribe("gone", "s2", group="h")
    world.subscribe("alive", "s3", group="h")
    world.service.deliver(_update("a", group="h"))  # reads (and caches) group h's subscribers
    world.poster.gone.add("gone")

    world.service.deliver(_update("a", group="g"))
    world.service.deliver(_update("b", group="h"))

    assert world.poster.attempts.count("gone") == 2  # the first (successful) post and the 410
    assert len(world.disconnects) == 1


def test_a_failing_post_raises_post_error_after_the_others_were_posted(world: World) -> None:
    for n in range(6):
        world.subscribe(f"c{n}", f"s{n}")
    world.poster.failing.add("c2")

    with pytest.raises(PostError, match="1 of 6"):
        world.service.deliver(_update("a"))

    assert sorted(world.poster.attempts) == [f"c{n}" for n in range(6)]
    assert _receivers(world.poster) == {f"c{n}": 1 for n in range(6) if n != 2}
    assert world.disconnects == []


def test_a_failing_post_and_a_gone_connection_in_one_change(world: World) -> None:
    world.subscribe("failing", "s1")
    world.subscribe("gone", "s2")
    world.subscribe("alive", "s3")
    world.poster.failing.add("failing")
    world.poster.gone.add("gone")

    with pytest.raises(PostError):
        world.service.deliver(_update("a"))

    assert [cid for cid, _ in world.disconnects] == ["gone"]
    assert _receivers(world.poster) == {"alive": 1}


# --- one subscriber query per (stream, group) per batch ----------------------------------------------------------


def test_subscribers_are_read_once_per_group_per_batch(world: World) -> None:
    world.subscribe("c1", "s1")
    world.subscribe("c2", "s2", group="h")

    for n in range(5):
        world.service.deliver(_update(f"i{n}", ts=TS + n))
        world.service.deliver(_update(f"i{n}", group="h", ts=TS + n))
    world.service.deliver(_send(None))

    assert sorted(world.connections.subscriber_queries) == [("s", "g"), ("s", "h")]
    assert _receivers(world.poster) == {"c1": 6, "c2": 5}


def test_a_group_without_subscribers_is_read_once_too(world: World) -> None:
    world.service.deliver(_update("a"))
    world.service.deliver(_update("b"))

    assert world.connections.subscriber_queries == [("s", "g")]


def test_a_new_batch_reads_the_subscribers_again(world: World) -> None:
    world.subscribe("c1", "s1")
    world.service.deliver(_update("a"))
    world.subscribe("c2", "s2")

    world.service.deliver(_update("b"))  # same batch: c2 is not known yet
    world.service.new_batch()
    world.service.deliver(_update("c"))

    assert world.connections.subscriber_queries == [("s", "g"), ("s", "g")]
    assert [f["id"] for f in world.poster.frames["c1"]] == ["a", "b", "c"]
    assert [f["id"] for f in world.poster.frames["c2"]] == ["c"]


def test_many_subscribers_each_get_one_frame(world: World) -> None:
    for n in range(50):
        world.subscribe(f"c{n}", "group")
        world.subscribe(f"c{n}", "item", item_id="a")

    delivery = world.service.deliver(_update("a"))

    assert delivery.sent == 50
    assert sorted(world.poster.attempts) == sorted(f"c{n}" for n in range(50))


# --- writes a group sync already held ------------------------------------------------------------------------


def _synced(world: World, connection_id: str, read_at: int, recent: dict[str, int]) -> None:
    subscription = world.subscribe(connection_id, "s-" + connection_id)
    world.connections.mark_synced(subscription, SyncMark(read_at, recent))


@pytest.mark.parametrize(
    ("change", "posted"),
    [
        (_update("a", ts=TS - 5), False),  # the sync held a@TS: an older write of it is stale
        (_update("a", ts=TS), False),  # the very write the sync held
        (_update("a", ts=TS + 1), True),  # newer than the sync
        (_update("b", ts=TS - 10), True),  # b was not in the sync's recent items: written after the read
        (_update("b", ts=TS - SYNC_WINDOW_MS // 4), True),  # within the window before the read, not in the sync
        (_update("c", ts=TS - 2 * SYNC_WINDOW_MS), False),  # long before the read: in the sync, or superseded
        # a delete older than the write the sync held: posting it would remove the item the sync carried
        (Change("s", "g", "a", "delete", {"id": "a"}, TS - 5), False),
        (Change("s", "g", "a", "delete", {"id": "a"}, TS + 1), True),  # a delete after the write the sync held
        (Change("s", "g", "b", "delete", {"id": "b"}, TS - 10), True),  # not in the sync: harmless, posted
        (Change("s", "g", "a", "event", {"x": 1}, TS - 5, event_type="t"), True),  # events are not state
    ],
)
def test_a_synced_group_subscription_gets_no_write_its_sync_held(world: World, change: Change, posted: bool) -> None:
    _synced(world, "synced", read_at=TS + SYNC_WINDOW_MS // 2, recent={"a": TS})
    world.subscribe("legacy", "s-legacy")  # no mark at all (a row from before marks): gets everything
    pending = world.subscribe("joining", "s-joining")  # joined, its snapshot not read yet
    world.connections.mark_synced(pending, PENDING_SYNC)
    world.service.deliver(change)
    assert ("synced" in _receivers(world.poster)) is posted
    assert "legacy" in _receivers(world.poster)
    # the join's snapshot (read after this change was written) or its catch-up carries every write; events go
    assert ("joining" in _receivers(world.poster)) is (change.kind == "event")
