"""The embedded moto with and without ``infra/moto_fast.py``: time per request shape, and sequential stream::set.

One :class:`EmbeddedDynamoDB` in this process, driven through the adapters over loopback HTTP (boto3 included,
as the Lambda handlers call it). The layer is process-wide and reversible: each round measures every shape with
it on and with it off (in alternating order from round to round), so the machine's other work falls on both.

- per shape: the wall time of one adapter call, client to server and back (ms per request, the mean over a
  round's requests); the table gives the median over rounds;
- writes/s: ``DynamoItemStore.put`` (one conditional UpdateItem, the ``stream::set`` shape) back to back.

``python -m bench.moto_fast [rounds] [requests]`` prints the table.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iii_stream.infra.offline_env import go_offline

go_offline()

import boto3  # noqa: E402 - after go_offline: no client may see a real account
from botocore.config import Config  # noqa: E402
from iii_stream.adapters.dynamodb_connections import DynamoConnectionStore  # noqa: E402
from iii_stream.adapters.dynamodb_items import DynamoItemStore  # noqa: E402
from iii_stream.core.ports import Connection, ItemAddress, StreamEvent, Subscription  # noqa: E402
from iii_stream.infra import moto_fast  # noqa: E402
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB  # noqa: E402
from iii_stream.infra.template import create_tables  # noqa: E402

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, account_id_endpoint_mode="disabled")


@dataclass
class Fixture:
    """Tables with what the shapes read: a 100-item group, a group with 1 subscriber and one with 100."""

    items: DynamoItemStore
    connections: DynamoConnectionStore
    streams: Any
    iterator: str
    clock: list[int] = field(default_factory=lambda: [10_000])

    def tick(self) -> int:
        self.clock[0] += 1
        return self.clock[0]


def setup(endpoint: str) -> Fixture:
    client = boto3.client("dynamodb", endpoint_url=endpoint, config=NO_RETRIES)
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, config=NO_RETRIES)
    create_tables(client, {"ItemsTable": "bench-items", "ConnectionsTable": "bench-connections"})
    items = DynamoItemStore(client, "bench-items")
    connections = DynamoConnectionStore(client, "bench-connections")
    for n in range(100):
        items.put(ItemAddress("s", "g100", f"i{n:03d}"), json.dumps({"n": n, "text": "some item data"}), 1000 + n, None)
    connections.save_connection(Connection("c1", 1000, {"user": "u"}))
    for n in range(100):
        connections.add_subscription(Subscription("c1", f"sub{n:03d}", "s", "g100"))
    connections.add_subscription(Subscription("c1", "one", "s", "g1"))
    arn = client.describe_table(TableName="bench-items")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    return Fixture(items, connections, streams, iterator)


def shapes(fx: Fixture) -> dict[str, Callable[[], float]]:
    """Each shape: make one request, return its wall time (s)."""

    def timed(call: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            call()
            return time.perf_counter() - started

        return run

    def get_records() -> float:
        while True:  # not timed: read past what the other shapes wrote, then write the one record to read
            page = fx.streams.get_records(ShardIterator=fx.iterator)
            fx.iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
        fx.items.put(ItemAddress("s", "g", "rec"), '{"r": 1}', fx.tick(), None)
        started = time.perf_counter()
        page = fx.streams.get_records(ShardIterator=fx.iterator)
        elapsed = time.perf_counter() - started
        fx.iterator = page["NextShardIterator"]
        return elapsed

    event = StreamEvent("s", "g", "t", '{"e": 1}', None, 1000, 99999)
    return {
        "UpdateItem (stream::set)": timed(
            lambda: fx.items.put(ItemAddress("s", "g", "i1"), '{"n": 1}', fx.tick(), None)
        ),
        "PutItem (stream::send)": timed(lambda: fx.items.append_event(event)),
        "GetItem (stream::get)": timed(lambda: fx.items.get(ItemAddress("s", "g", "i1"))),
        "Query 1 row (subscribers)": timed(lambda: fx.connections.subscribers("s", "g1")),
        "Query 100 rows (subscribers)": timed(lambda: fx.connections.subscribers("s", "g100")),
        "Query 100 items (group)": timed(lambda: list(fx.items.group_items("s", "g100", 1000))),
        "GetRecords (1 record)": get_records,
    }


def set_layer(on: bool) -> None:
    layer = moto_fast._installed
    if on and layer is None:
        if moto_fast.install() is None:
            raise SystemExit("the fast layer cannot be installed here (see the log line)")
    elif not on and layer is not None:
        layer.uninstall()


def writes_per_second(fx: Fixture, count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        fx.items.put(ItemAddress("s", "w", f"i{n % 10}"), json.dumps({"n": n}), fx.tick(), None)
    return count / (time.perf_counter() - started)


def main(rounds: int = 5, requests: int = 40) -> None:
    server = EmbeddedDynamoDB()
    endpoint = server.start()
    try:
        fx = setup(endpoint)
        runs = shapes(fx)
        per_round: dict[tuple[str, bool], list[float]] = {}
        rates: dict[bool, list[float]] = {True: [], False: []}
        for on in (True, False):  # warm both
            set_layer(on)
            for run in runs.values():
                for _ in range(5):
                    run()
        for number in range(rounds):
            for on in (True, False) if number % 2 == 0 else (False, True):
                set_layer(on)
                for name, run in runs.items():
                    per_round.setdefault((name, on), []).append(statistics.fmean(run() for _ in range(requests)) * 1000)
                rates[on].append(writes_per_second(fx, requests * 3))
        set_layer(False)
    finally:
        server.stop()
    print(
        f"moto {moto_fast.MOTO_VERSION}, {rounds} rounds of {requests} requests per shape; ms per request "
        "(client wall time through boto3 and the embedded server), median over rounds"
    )
    print(f"{'shape':32} {'plain moto':>11} {'fast layer':>11} {'speed-up':>9}")
    for name in runs:
        plain = statistics.median(per_round[(name, False)])
        fast = statistics.median(per_round[(name, True)])
        print(f"{name:32} {plain:11.2f} {fast:11.2f} {plain / fast:8.2f}x")
    plain_rate, fast_rate = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{'sequential stream::set (w/s)':32} {plain_rate:11.0f} {fast_rate:11.0f} {fast_rate / plain_rate:8.2f}x")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
