"""The fan-out tier: a batch's post plan, split into chunks that FanoutFunction posts, with nothing lost.

The chunks run through the FunctionInvoker port: ``FakeInvoker`` calls the real ``ChunkPoster`` (what
``fanout.handler`` runs) over a JSON round trip, as Lambda would, so every chunk crosses the same wire shape.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from iii_stream.core.broadcast import BroadcastService, FanoutSettings
from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import PostError
from iii_stream.core.fanout import ChunkPoster, PlanOutcome, PostPlan, post_plan, rounds
from iii_stream.core.ports import Connection, Subscription

from tests.fakes import FakeInvoker, MemoryConnectionStore, RecordingLeaveHook, RecordingPoster

FANOUT = "fanout-fn"


class FailingFrom(RecordingPoster):
    """Posts to ``connection_id`` fail from its ``after``-th frame on (the poster's retries exhausted)."""

    def __init__(self, connection_id: str, after: int) -> None:
        super().__init__()
        self._target, self._after = connection_id, after

    def heal(self) -> None:
        self._after = 10**9

    def post(self, connection_id: str, data: bytes) -> int:
        if connection_id == self._target and len(self.raw[connection_id]) >= self._after:
            raise PostError(f"posting to {connection_id} failed")
        return super().post(connection_id, data)


@dataclass
class World:
    connections: MemoryConnectionStore
    poster: RecordingPoster
    leaves: RecordingLeaveHook
    invoker: FakeInvoker
    service: BroadcastService

    def subscribe(self, connection_id: str, group: str = "g", item_id: str | None = None) -> None:
        if self.connections.get_connection(connection_id) is None:
            self.connections.save_connection(Connection(connection_id, 0))
        sid = f"{connection_id}-{group}-{item_id}"
        assert self.connections.add_subscription(Subscription(connection_id, sid, "s", group, item_id))

    def chunks(self) -> list[dict[str, Any]]:
        return [payload for ref, payload in self.invoker.calls if ref == FANOUT]


def _over_the_wire(chunk_poster: ChunkPoster, payload: Any) -> Any:
    """FanoutFunction as Lambda runs it: the chunk and its outcome cross as JSON."""
    return json.loads(json.dumps(chunk_poster.post(json.loads(json.dumps(payload)))))


def _world(poster: RecordingPoster | None = None, threshold: int = 10, chunk_size: int = 7) -> World:
    connections, leaves = MemoryConnectionStore(), RecordingLeaveHook()
    poster = poster or RecordingPoster()
    chunk_poster = ChunkPoster(poster, max_workers=4)
    invoker = FakeInvoker({FANOUT: lambda payload: _over_the_wire(chunk_poster, payload)})
    fanout = FanoutSettings(FANOUT, threshold=threshold, chunk_size=chunk_size, max_parallel_chunks=3)
    service = BroadcastService(connections, poster, Disconnector(connections, leaves), 4, invoker, fanout)
    return World(connections, poster, leaves, invoker, service)


@pytest.fixture
def world() -> Iterator[World]:
    world = _world()
    yield world
    world.service.close()


def _change(item_id: str, ts: int, group: str = "g", kind: str = "update") -> Change:
    return Change("s", group, item_id, kind, {"id": item_id, "ts": ts}, ts)  # type: ignore[arg-type]


def _received(poster: RecordingPoster) -> dict[str, list[tuple[str, int]]]:
    return {cid: [(f["id"], f["timestamp"]) for f in frames] for cid, frames in poster.frames.items() if frames}


# --- the plan and its chunks -------------------------------------------------------------------------------


def test_chunks_split_by_connection_and_carry_only_their_frames() -> None:
    plan = PostPlan({0: b"a", 1: b"b", 2: b"c"}, {"c1": [0, 2], "c2": [1], "c3": [2]})

    chunks = plan.chunks(2)

    assert [chunk.targets for chunk in chunks] == [{"c1": [0, 2], "c2": [1]}, {"c3": [2]}]
    assert [chunk.frames for chunk in chunks] == [{0: b"a", 1: b"b", 2: b"c"}, {2: b"c"}]
    assert sum(chunk.posts for chunk in chunks) == plan.posts == 4


def test_a_chunk_survives_its_json_round_trip() -> None:
    plan = PostPlan({3: '{"x":"ü"}'.encode(), 7: b"{}"}, {"R1kmxc2VNjMCFIA=": [3, 7]})

    again = PostPlan.from_json(json.loads(json.dumps(plan.to_json())))

    assert again == plan


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"frames": {}},
        {"frames": {"0": "x"}, "targets": {"c": [1]}},
        {"frames": {"0": "x"}, "targets": {"c": "0"}},
        {"frames": {"x": "x"}, "targets": {}},
    ],
)
def test_anything_but_a_chunk_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError):
        ChunkPoster(RecordingPoster()).post(raw)


def test_rounds_keep_order_and_a_byte_budget() -> None:
    frames = {0: b"x" * 60, 1: b"x" * 50, 2: b"x" * 200, 3: b"x"}
    assert list(rounds(frames, max_bytes=100)) == [[0], [1], [2], [3]]
    assert list(rounds(frames, max_bytes=120)) == [[0, 1], [2], [3]]
    assert list(rounds(frames, max_bytes=1000)) == [[0, 1, 2, 3]]


def test_a_plan_is_posted_breadth_first_in_each_connections_order() -> None:
    poster = RecordingPoster()
    plan = PostPlan({i: json.dumps({"n": i}).encode() for i in range(5)}, {"a": [0, 2, 4], "b": [1, 2, 3]})

    with ThreadPoolExecutor(4) as pool:
        outcome = post_plan(plan, poster, pool)

    assert outcome == PlanOutcome(sent=6)
    assert [f["n"] for f in poster.frames["a"]] == [0, 2, 4]
    assert [f["n"] for f in poster.frames["b"]] == [1, 2, 3]


def test_a_failed_frame_ends_the_plan_there_for_everyone() -> None:
    poster = FailingFrom("a", after=1)  # a gets its first frame, not its second
    plan = PostPlan({i: json.dumps({"n": i}).encode() for i in range(4)}, {"a": [0, 2], "b": [0, 1, 2, 3]})

    with ThreadPoolExecutor(4) as pool:
        outcome = post_plan(plan, poster, pool)

    assert (outcome.failed_at, outcome.failed) == (2, ["a"])
    assert [f["n"] for f in poster.frames["b"]] == [0, 1, 2]  # frame 2 went to b; frame 3 to nobody


# --- the broadcast through the fan-out tier ------------------------------------------------------------------


def test_a_small_batch_is_posted_by_the_broadcast_itself(world: World) -> None:
    for n in range(5):
        world.subscribe(f"c{n}")

    delivery = world.service.deliver_batch([_change("a", 1), _change("a", 2)])  # 10 posts: not over 10

    assert (delivery.sent, delivery.chunks) == (10, 0)
    assert world.chunks() == []


def test_many_interleaved_changes_reach_every_connection_in_order_through_chunks() -> None:
    # GIVEN 40 connections with group and item subscriptions over two groups, and 60 interleaved changes
    rng = random.Random(7)
    fanned, direct = _world(threshold=10, chunk_size=7), _world(threshold=10**9)
    for world in (fanned, direct):
        for n in range(40):
            world.subscribe(f"c{n:02d}", group="g1" if n % 3 else "g2")
            if n % 4 == 0:
                world.subscribe(f"c{n:02d}", group="g1", item_id=f"i{n % 5}")
    changes = [_change(f"i{rng.randrange(5)}", ts, group=rng.choice(["g1", "g2"])) for ts in range(1, 61)]

    # WHEN the same batch goes through the fan-out tier and through one invocation
    delivery = fanned.service.deliver_batch(changes)
    direct.service.deliver_batch(changes)

    # THEN the chunks delivered exactly what one invocation delivers, each connection's frames in order
    assert delivery.chunks == len(fanned.chunks()) >= 6
    assert delivery.failed_at is None
    assert _received(fanned.poster) == _received(direct.poster)
    for frames in _received(fanned.poster).values():
        assert [ts for _, ts in frames] == sorted(ts for _, ts in frames)
    fanned.service.close()
    direct.service.close()


def test_a_chunk_failing_mid_way_fails_its_records_and_a_retry_loses_nothing() -> None:
    # GIVEN 30 connections, one of which cannot take its third frame for now
    poster = FailingFrom("c17", after=2)
    world = _world(poster, threshold=10, chunk_size=7)
    for n in range(30):
        world.subscribe(f"c{n}")
    batch = [_change("a", ts) for ts in range(1, 6)]

    # WHEN the batch is delivered
    delivery = world.service.deliver_batch(batch)

    # THEN the third change and every later one are to be retried; c17 got the first two
    assert (delivery.failed_at, delivery.failed) == (2, ["c17"])
    assert [ts for _, ts in _received(poster)["c17"]] == [1, 2]
    # AND when Lambda retries those records, once the connection takes posts again, every connection has
    # every change, in order (a connection of another chunk may see a change twice: never one missing)
    poster.heal()
    world.service.new_batch()
    assert world.service.deliver_batch(batch[delivery.failed_at :]).failed_at is None
    assert [ts for _, ts in _received(poster)["c17"]] == [1, 2, 3, 4, 5]
    for frames in _received(poster).values():
        first_seen = list(dict.fromkeys(ts for _, ts in frames))
        assert first_seen == [1, 2, 3, 4, 5]
    world.service.close()


def test_a_chunk_whose_invocation_fails_fails_from_its_first_frame(world: World) -> None:
    for n in range(20):
        world.subscribe(f"c{n}")
    world.invoker.functions[FANOUT] = lambda payload: (_ for _ in ()).throw(RuntimeError("Task timed out"))

    delivery = world.service.deliver_batch([None, _change("a", 1), _change("a", 2)])

    assert delivery.failed_at == 1  # the first record with a frame: nothing of it is known to have arrived
    assert "Task timed out" in delivery.error
    assert sorted(delivery.failed) == sorted(f"c{n}" for n in range(20))


def test_gone_connections_inside_chunks_leave_exactly_once(world: World) -> None:
    # GIVEN 20 connections, two of them gone (in different chunks), each with a group and an item subscription
    for n in range(20):
        world.subscribe(f"c{n:02d}")
        world.subscribe(f"c{n:02d}", item_id="a")
    world.poster.gone.update({"c03", "c15"})

    # WHEN two batches are delivered
    first = world.service.deliver_batch([_change("a", 1), _change("a", 2)])
    world.service.new_batch()
    second = world.service.deliver_batch([_change("a", 3)])

    # THEN each gone connection was posted to once, removed, and each of its subscriptions left once
    assert sorted(first.gone) == ["c03", "c15"] and second.gone == []
    assert sorted(s.subscription_id for s in world.leaves.left_subscriptions) == [
        "c03-g-None",
        "c03-g-a",
        "c15-g-None",
        "c15-g-a",
    ]
    assert world.poster.attempts.count("c03") == world.poster.attempts.count("c15") == 1
    assert first.sent == 18 * 2 and second.sent == 18


def test_throttles_seen_by_the_chunks_are_counted() -> None:
    class Throttled(RecordingPoster):
        def post(self, connection_id: str, data: bytes) -> int:
            super().post(connection_id, data)
            return 1  # a 429 the poster waited out before delivering

    slow = _world(Throttled(), threshold=10, chunk_size=5)
    for n in range(12):
        slow.subscribe(f"c{n}")

    delivery = slow.service.deliver_batch([_change("a", 1)])

    assert (delivery.sent, delivery.throttled, delivery.chunks) == (12, 12, 3)
    slow.service.close()
