"""Sustained load: a group of 1,000 subscribers receiving 2 changes per second for 30 s, end to end.

The real ``stream_functions.handler`` writes to moto; a stream pump (polling 4 times a second, as Lambda
polls a shard) hands the records to the real ``broadcast.handler``, which sends each batch's posts through
the fan-out tier (``bench/fanout_pool.py``) to the simulated ``@connections`` endpoint (20 ms a post). The
endpoint records every post; afterwards every connection must hold every change exactly once, each item's
frames in order. The lag of a post is its arrival at the endpoint minus the change's own timestamp (the
stored item's write time): p99 over the run, and over its first and last 10 s to see whether it grows.
What was missing, duplicated or out of order is counted and reported as figures (targets: none).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
from botocore.config import Config
from iii_stream import wiring
from iii_stream.adapters.item_changes import change_from_record
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.stream_pump import StreamPump

from bench.connections_sim import Post
from bench.scale_setup import ITEMS_TABLE, STREAM, connection_id, world

SUBSCRIBERS: Final = 1_000
CHANGES_PER_S: Final = 2.0
SECONDS: Final = 30.0
ITEMS: Final = 10  # the changes rotate over this many items, so per-item order is checked too
GROUP: Final = "hot"
DRAIN_SECONDS: Final = 60.0  # after the last write, how long the broadcast may take to catch up


class _Counted:
    """The broadcast handler, counting the changes it answered for (a record moto adds without the item's data,
    as it does for an UpdateItem that creates the item, is no change; failed records are not counted)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self.changes = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        response = self._handler(event, context)
        failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        self.changes += sum(
            1
            for record in event["Records"]
            if record["dynamodb"]["SequenceNumber"] not in failed and change_from_record(record) is not None
        )
        return response


def _write(functions: Any, count: int) -> None:
    """``count`` changes at CHANGES_PER_S, on a fixed schedule (a late write does not shift the next)."""
    started = time.monotonic()
    for n in range(count):
        delay = started + n / CHANGES_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        payload = {"stream_name": STREAM, "group_id": GROUP, "item_id": f"i{n % ITEMS}", "data": {"n": n}}
        response = functions({"function_id": "stream::set", "payload": payload}, LocalLambdaContext("fn"))
        if "error" in response:
            raise RuntimeError(f"sustained load: stream::set failed: {response['error']}")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else (values[0] if values else 0.0)


@dataclass
class Check:
    """What the endpoint got, against every change once per connection, each item's frames in order."""

    lags: list[tuple[float, float]] = field(default_factory=list)  # (write ms, lag ms) per post
    missing: int = 0  # (connection, change) pairs never posted
    duplicated: int = 0  # posts of a change the connection already had
    out_of_order: int = 0  # frames older than one the connection already had for that item


def verify(posts: list[Post], connections: list[str], changes: int) -> Check:
    check = Check()
    by_connection: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for post in posts:
        frame = json.loads(post.body)
        by_connection[post.connection_id].append((frame["id"], frame["timestamp"]))
        check.lags.append((frame["timestamp"], post.arrived_ms - frame["timestamp"]))
    for connection in connections:
        frames = by_connection.get(connection, [])
        check.missing += max(0, changes - len(set(frames)))
        check.duplicated += len(frames) - len(set(frames))
        last: dict[str, int] = {}
        for item_id, stamp in frames:
            check.out_of_order += stamp < last.get(item_id, -1)
            last[item_id] = max(stamp, last.get(item_id, -1))
    return check


def measure(progress: Callable[[str], None], seconds: float = SECONDS) -> dict[str, float]:
    changes = int(seconds * CHANGES_PER_S)
    with world(SUBSCRIBERS, GROUP) as sim:
        dynamodb = boto3.client("dynamodb")
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        arn = dynamodb.describe_table(TableName=ITEMS_TABLE)["Table"]["LatestStreamArn"]
        broadcast = _Counted(load_handler("broadcast.handler"))
        pump = StreamPump(
            streams, arn, broadcast, context_factory=lambda: LocalLambdaContext("broadcast"), start="LATEST"
        )
        thread = threading.Thread(target=pump.run, kwargs={"idle_poll_seconds": 0.25}, daemon=True)
        thread.start()
        progress(f"sustained load: {changes} changes over {seconds:g} s to {SUBSCRIBERS} subscribers")
        _write(load_handler("stream_functions.handler"), changes)
        # A change counts once the broadcast answered for its record: its posts are all made by then.
        deadline = time.monotonic() + DRAIN_SECONDS
        while broadcast.changes < changes and time.monotonic() < deadline:
            time.sleep(0.1)
        behind = changes - broadcast.changes
        pump.stop()
        thread.join(timeout=30)
        wiring.broadcast_service().close()
    if behind > 0:
        progress(f"sustained load: {behind} change(s) still not broadcast {DRAIN_SECONDS:g} s after the last write")
    check = verify(sim.posts, [connection_id(index) for index in range(SUBSCRIBERS)], changes)
    lags = check.lags or [(0.0, float("inf"))]
    start = min(written for written, _ in lags)
    first = [lag for written, lag in lags if written - start < 10_000] or [float("inf")]
    last = [lag for written, lag in lags if written - start >= (seconds - 10) * 1000] or [float("inf")]
    return {
        "broadcast.sustained_lag_p99_ms": _p99([lag for _, lag in lags]),
        "broadcast.sustained_lag_p50_ms": statistics.median(lag for _, lag in lags),
        "broadcast.sustained_lag_p99_first_10s_ms": _p99(first),
        "broadcast.sustained_lag_p99_last_10s_ms": _p99(last),
        "broadcast.sustained_frames_missing": float(check.missing),
        "broadcast.sustained_frames_duplicated": float(check.duplicated),
        "broadcast.sustained_frames_out_of_order": float(check.out_of_order),
    }
