"""Broadcast at scale: one change to 10,000 subscribers of one group, three designs side by side in one run.

- **fan-out tier** (ours): the broadcast (``wiring.broadcast_service()``: the lean poster, the fan-out
  settings) splits the posts into chunks of ``FANOUT_CHUNK_SIZE`` connections, and ``FanoutFunction``
  invocations post them, each in a process of its own (``bench/fanout_pool.py``), reached through the local
  Lambda Invoke endpoint with the broadcast's own boto3 ``lambda`` client;
- **single invocation** (the design before it): the same broadcast core posting every frame itself through
  boto3's ``post_to_connection`` and a pool of 128 threads;
- **naive** (what most serverless WebSocket samples do): a Scan of the connections table, then one post after
  another. Its posts are strictly sequential, so it posts to ``NAIVE_SAMPLE`` connections and the figure is
  that time scaled to 10,000, plus the full Scan (said so in the results).

The subscriptions live in moto in-process, written with the connection store's own row builders; every design
pays the same subscriber lookup. Posts go over real HTTP to a simulated ``@connections`` endpoint in another
process (``bench/connections_sim.py``): 20 ms per post, 200, or 410 for the connections it was told are gone.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from iii_stream import wiring
from iii_stream.adapters.connections_api import ConnectionsApiPoster
from iii_stream.core.broadcast import BroadcastService
from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector

from bench import fanout_pool, sustained
from bench.connections_sim import Post
from bench.scale_setup import (
    CONNECTIONS_TABLE,
    DATA,
    GROUP,
    NAIVE_SAMPLE,
    POOL,
    STREAM,
    SUBSCRIBERS,
    world,
)

Progress = Callable[[str], None]


def _change(item_id: str) -> Change:
    return Change(STREAM, GROUP, item_id, "create", {**DATA, "id": item_id}, int(time.time() * 1000))


def _timed(deliver: Callable[[], Any]) -> float:
    started = time.perf_counter()
    deliver()
    return time.perf_counter() - started


def _check(posts: list[Post], expected: int, what: str) -> None:
    got = {post.connection_id for post in posts}
    if len(posts) != expected or len(got) != expected:
        raise RuntimeError(f"{what}: {len(posts)} posts to {len(got)} connections, expected {expected} each once")


def _fanout_s() -> float:
    service = wiring.broadcast_service()
    service.new_batch()
    return _timed(lambda: service.deliver_batch([_change("fanout")]))


def _single_s() -> float:
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=os.environ["CONNECTIONS_ENDPOINT"],
        config=Config(max_pool_connections=POOL, retries={"mode": "standard"}),
    )
    store = wiring.connection_store()
    service = BroadcastService(store, ConnectionsApiPoster(client), Disconnector(store), max_workers=POOL)
    try:
        service.deliver_batch([_change("warm-up-single")])  # a group nobody's in: the client's first-use costs
        service.new_batch()
        return _timed(lambda: service.deliver_batch([_change("single")]))
    finally:
        service.close()


def _naive_s(subscribers: int) -> tuple[float, float]:
    """(the Scan, then NAIVE_SAMPLE sequential posts): the sample scaled to ``subscribers`` is the posting."""
    dynamodb = boto3.client("dynamodb")
    client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CONNECTIONS_ENDPOINT"])
    frame = _change("naive").frame_bytes()
    started = time.perf_counter()
    targets: list[str] = []
    request: dict[str, Any] = {"TableName": CONNECTIONS_TABLE}
    while True:
        page = dynamodb.scan(**request)
        targets += [row["sk"]["S"].partition("#")[0] for row in page["Items"] if row["pk"]["S"].startswith("G")]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    scan_s = time.perf_counter() - started
    if len(targets) != subscribers:
        raise RuntimeError(f"naive: the Scan found {len(targets)} subscribers, expected {subscribers}")
    started = time.perf_counter()
    for target in targets[:NAIVE_SAMPLE]:
        client.post_to_connection(ConnectionId=target, Data=frame)
    return scan_s, (time.perf_counter() - started) * subscribers / NAIVE_SAMPLE


def _chunk_overhead_ms(samples: int = 20) -> float:
    """One empty chunk's invocation, round trip: what a chunk costs besides its posts."""
    from iii_stream.adapters.lambda_invoker import LambdaInvoker

    invoker = LambdaInvoker(wiring.lambda_client())
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        invoker.invoke(fanout_pool.FUNCTION_NAME, fanout_pool.EMPTY_CHUNK)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure_scale(progress: Progress, subscribers: int = SUBSCRIBERS) -> dict[str, float]:
    """One run of every 10,000-subscriber design, then the sustained load; figures keyed as in results.json."""
    progress(f"broadcast: {subscribers} subscriptions in moto, the fan-out tier's processes")
    with world(subscribers) as sim:
        progress("broadcast: one change through the fan-out tier")
        wiring.broadcast_service().deliver_batch([Change(STREAM, "nobody", "w", "create", {}, 1)])  # warm
        figures = {"broadcast.chunk_overhead_ms": _chunk_overhead_ms()}
        figures["broadcast.10k_delivery_s"] = _fanout_s()
        progress("broadcast: one change through a single invocation (boto3)")
        figures["broadcast.10k_delivery_single_s"] = _single_s()
        progress(f"broadcast: the naive design (a Scan, then {NAIVE_SAMPLE} sequential posts, scaled)")
        scan_s, posting_s = _naive_s(subscribers)
        figures["broadcast.10k_delivery_naive_s"] = scan_s + posting_s
        figures["broadcast.naive_scan_s"] = scan_s
    _check([post for post in sim.posts if b'"fanout"' in post.body], subscribers, "fan-out tier")
    _check([post for post in sim.posts if b'"single"' in post.body], subscribers, "single invocation")
    progress("broadcast: sustained load (1,000 subscribers, 2 changes/s for 30 s)")
    figures.update(sustained.measure(progress))
    return figures


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure_scale(lambda line: print(line, file=sys.stderr, flush=True)), indent=2))
