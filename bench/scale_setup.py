"""What the broadcast benchmarks share: the tables in moto, the subscribers, and the settings."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import boto3
from iii_stream import wiring
from iii_stream.adapters.dynamodb_connections import (
    RECORD_TTL_SECONDS,
    connection_row,
    subs_entry,
    subscription_row,
)
from iii_stream.core.ports import Connection, Subscription
from iii_stream.infra.template import create_tables
from moto import mock_aws

from bench import fanout_pool
from bench.connections_sim import Simulated, simulated_connections

SUBSCRIBERS: Final = 10_000
POST_LATENCY_S: Final = 0.020
CHUNK_SIZE: Final = 250
POOL: Final = 128  # BROADCAST_CONCURRENCY: posts in flight per invocation
FANOUT_PROCESSES: Final = 4
NAIVE_SAMPLE: Final = 500
ITEMS_TABLE: Final = "iii-stream-bench-items"
CONNECTIONS_TABLE: Final = "iii-stream-bench-connections"
STREAM: Final = "bench"
GROUP: Final = "room-1"
DATA: Final = {"text": "hello, subscribers", "author": "bench", "n": 1}
BATCH_WRITE: Final = 25  # BatchWriteItem's limit
CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def connection_id(index: int) -> str:
    """A fixed id per subscriber, shaped like API Gateway's: 16 characters of URL-safe base64 ending in '='."""
    return base64.urlsafe_b64encode(index.to_bytes(11, "big")).decode()


def _rows(index: int, connected_at_ms: int, group: str) -> list[dict[str, Any]]:
    """One subscriber: its subscription row and its connection row, built by the connection store's own
    row builders, so they are exactly what the connect and join routes write."""
    cid = connection_id(index)
    subscription = Subscription(cid, f"sub-{index}", STREAM, group, None)
    connection = connection_row(Connection(cid, connected_at_ms))
    connection["subs"] = {"M": {subscription.subscription_id: subs_entry(subscription)}}
    return [subscription_row(subscription, connected_at_ms // 1000 + RECORD_TTL_SECONDS), connection]


def subscribe(client: Any, subscribers: int, group: str = GROUP, first: int = 0) -> None:
    """Write ``subscribers`` subscriptions to ``group`` (and their connections) with BatchWriteItem."""
    now_ms = int(time.time() * 1000)
    rows = [row for index in range(first, first + subscribers) for row in _rows(index, now_ms, group)]
    requests = [{"PutRequest": {"Item": row}} for row in rows]
    for start in range(0, len(requests), BATCH_WRITE):
        pending: dict[str, Any] = {CONNECTIONS_TABLE: requests[start : start + BATCH_WRITE]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def settings_env(endpoint_url: str, fanout_endpoint: str = "") -> dict[str, str]:
    """The broadcast's settings (as template.yaml sets them), pointed at the simulated endpoints."""
    env = {
        **CREDENTIALS,
        "ITEMS_TABLE": ITEMS_TABLE,
        "CONNECTIONS_TABLE": CONNECTIONS_TABLE,
        "CONNECTIONS_ENDPOINT": endpoint_url,
        "BROADCAST_CONCURRENCY": str(POOL),
        "FANOUT_CHUNK_SIZE": str(CHUNK_SIZE),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    if fanout_endpoint:
        env.update(FANOUT_FUNCTION=fanout_pool.FUNCTION_NAME, AWS_ENDPOINT_URL_LAMBDA=fanout_endpoint)
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """moto in-process with these settings; the previous values come back afterwards."""
    saved = {name: os.environ.get(name) for name in (*env, "AWS_ENDPOINT_URL_DYNAMODB")}
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    os.environ.update(env)
    try:
        with mock_aws():
            wiring.reset()
            yield
    finally:
        wiring.reset()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def world(subscribers: int, group: str = GROUP) -> Iterator[Simulated]:
    """The simulated ``@connections`` endpoint, the fan-out tier's processes, moto with the tables and
    ``subscribers`` subscriptions to ``group``, and the broadcast's settings pointing at all of them. The
    endpoint's ``posts`` are filled in when the block ends."""
    with (
        simulated_connections(POST_LATENCY_S) as sim,
        fanout_pool.fanout_tier(settings_env(sim.endpoint_url), FANOUT_PROCESSES) as lambda_url,
        environment(settings_env(sim.endpoint_url, lambda_url)),
    ):
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, {"ItemsTable": ITEMS_TABLE, "ConnectionsTable": CONNECTIONS_TABLE})
        subscribe(dynamodb, subscribers, group)
        yield sim
