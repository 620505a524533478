"""The fan-out tier through the real handlers: the broadcast invokes FanoutFunction (the real
``fanout.handler``, behind a local Lambda endpoint, reached with the broadcast's own boto3 client) for the
chunks of a large batch. Posts are captured, and 410s injected, at the poster's transport (moto cannot
answer 410)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

from tests.integration.realtime import Realtime

pytestmark = pytest.mark.integration

FANOUT = "test-fanout"


@pytest.fixture
def rt(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Realtime]:
    chunks: list[Any] = []
    leaves: list[Any] = []
    fanout = load_handler("fanout.handler")

    def counted(event: Any, context: Any) -> Any:
        chunks.append(event)
        return fanout(event, context)

    endpoint = LambdaEndpoint({FANOUT: counted, "on_leave": lambda event, context: leaves.append(event)}, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    try:
        # more than 6 posts in a batch: chunks of 4 connections
        world = Realtime(monkeypatch, FANOUT_FUNCTION=FANOUT, FANOUT_THRESHOLD="6", FANOUT_CHUNK_SIZE="4")
        world.chunks = chunks  # type: ignore[attr-defined]
        world.leaves = leaves  # type: ignore[attr-defined]
        yield world
    finally:
        endpoint.stop()


def test_interleaved_changes_reach_every_subscriber_in_order_through_the_chunks(rt: Realtime) -> None:
    # GIVEN 10 connections on a group (and some on one item of it)
    connections = [rt.connect()[0] for _ in range(10)]
    for n, connection_id in enumerate(connections):
        rt.join(connection_id, "chat", "room")
        if n % 3 == 0:
            rt.join(connection_id, "chat", "room", item="a")
    # WHEN interleaved writes to three items, a send and a delete are broadcast in one batch
    for n in range(4):
        for item in ("a", "b", "c"):
            rt.call("stream::set", stream_name="chat", group_id="room", item_id=item, data={"id": item, "n": n})
    rt.call("stream::send", stream_name="chat", group_id="room", type="typing", data={"u": 1})
    rt.call("stream::delete", stream_name="chat", group_id="room", item_id="b")
    rt.pump.drain()

    # THEN it went through FanoutFunction, and every connection got every change once, in the order made
    assert rt.pump.dropped == []
    assert len(rt.chunks) >= 3  # type: ignore[attr-defined]
    expected = [("create", "a"), ("create", "b"), ("create", "c")] + [("update", i) for i in "abc" * 3]
    expected += [("event", None), ("delete", "b")]
    for connection_id in connections:
        assert [event for event in rt.events(connection_id) if event[0] != "sync"] == expected
        changes = [f for f in rt.frames(connection_id) if f["event"]["type"] != "sync"]
        stamps = [(f["id"], f["timestamp"]) for f in changes if f["id"]]
        for item in "abc":
            mine = [stamp for item_id, stamp in stamps if item_id == item]
            assert mine == sorted(set(mine))


def test_a_gone_connection_inside_a_chunk_is_removed_and_leaves_once(rt: Realtime) -> None:
    # GIVEN a leave trigger, and 8 connections of which two vanished without a $disconnect
    rt.register("registry::register_function", function_id="app::on_leave", target="on_leave")
    rt.register("registry::register_trigger", type="stream:leave", function_id="app::on_leave", config={})
    connections = [rt.connect()[0] for _ in range(8)]
    subscriptions = {connection_id: rt.join(connection_id, "chat", "room") for connection_id in connections}
    gone = {connections[1], connections[6]}
    rt.posts.gone.update(gone)

    # WHEN two batches are broadcast through the chunks
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="b", data={"id": "b"})
    rt.pump.drain()
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="c", data={"id": "c"})
    rt.pump.drain()

    # THEN the gone connections were posted to once each, then removed with their subscription
    assert rt.pump.dropped == []
    assert all(rt.posts.attempts[connection_id] == 2 for connection_id in gone)  # the sync, then one 410
    for connection_id in set(connections) - gone:
        assert [kind for kind, _ in rt.events(connection_id)] == ["sync", "create", "create", "create"]
    assert len(rt.chunks) == 2  # the first batch (16 posts) in chunks of 4 connections; the second, 6, posted itself
    rows = rt.dynamodb.scan(TableName="rt-connections")["Items"]
    assert not any(connection_id in str(row) for row in rows for connection_id in gone)
    # AND each of their subscriptions got exactly one stream:leave (queued as an Event invocation)
    deadline = time.monotonic() + 5
    while len(rt.leaves) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    time.sleep(0.2)  # and no more arrive
    left = sorted(leave["subscription_id"] for leave in rt.leaves)  # type: ignore[attr-defined]
    assert left == sorted(subscriptions[connection_id] for connection_id in gone)
