"""Broadcast benchmark: one change delivered to 10,000 subscribers of one group, through the real handlers.

Both tables live in moto in-process. API Gateway's ``@connections`` is simulated at the client boundary:
a botocore ``before-call`` hook on the handler's own client (``iii_stream.wiring.connections_api_client()``)
sleeps 20 ms per post and answers 200, so moto plays no part in posting. The change is made with the real
``stream_functions.handler``; the stream pump hands ``broadcast.handler`` Lambda's exact DynamoDB Streams
event, and only that handler call is timed. DynamoDB requests are counted on the handler's client
(``iii_stream.wiring.dynamodb_client()``); the pump's GetRecords are the event source mapping's, counted apart.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import boto3
from botocore.config import Config
from iii_stream import wiring
from iii_stream.adapters.dynamodb_connections import (
    RECORD_TTL_SECONDS,
    connection_row,
    subs_entry,
    subscription_row,
)
from iii_stream.core.ports import Connection, Subscription
from moto import mock_aws

from bench.fake_aws import FakeLambdaContext
from bench.measure import RequestCounter
from bench.report import RESULTS_DIR, machine, table_row
from infra import botocore_answers
from infra.handlers import load_handler
from infra.local.stream_pump import StreamPump
from infra.template import create_tables

Handler = Callable[[Any, Any], Any]

SUBSCRIBERS: Final = 10_000
POST_LATENCY_S: Final = 0.020
TARGET_S: Final = 5.0
CONCURRENCIES: Final = (64, 128, 256)

ITEMS_TABLE: Final = "iii-stream-bench-items"
CONNECTIONS_TABLE: Final = "iii-stream-bench-connections"
ENDPOINT: Final = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
STREAM: Final = "bench"
GROUP: Final = "room-1"
WARM_UP_GROUP: Final = "nobody-listens"
DATA: Final = {"text": "hello, subscribers", "author": "bench", "n": 1}
BATCH_WRITE: Final = 25  # BatchWriteItem's limit
_ENV: Final = ("ITEMS_TABLE", "CONNECTIONS_TABLE", "CONNECTIONS_ENDPOINT", "BROADCAST_CONCURRENCY")


def connection_id(index: int) -> str:
    """A fixed id per subscriber, shaped like API Gateway's: 16 characters of URL-safe base64 ending in '='."""
    return base64.urlsafe_b64encode(index.to_bytes(11, "big")).decode()


def _rows(index: int, connected_at_ms: int) -> list[dict[str, Any]]:
    """One subscriber: its subscription row and its connection row, built by the connection store's own
    row builders, so they are exactly what the connect and join routes write."""
    cid = connection_id(index)
    subscription = Subscription(cid, f"sub-{index}", STREAM, GROUP, None)
    connection = connection_row(Connection(cid, connected_at_ms))
    connection["subs"] = {"M": {subscription.subscription_id: subs_entry(subscription)}}
    return [subscription_row(subscription, connected_at_ms // 1000 + RECORD_TTL_SECONDS), connection]


def subscribe(client: Any, subscribers: int) -> int:
    """Write every subscriber's rows, 25 per BatchWriteItem; return the number of requests.

    Untimed set-up. Subscribing 10,000 sockets through the connect and join routes (each join a connection
    read, a conditional UpdateItem, a PutItem, snapshot reads of the group and sync posts) is another workload,
    and not what is measured here: the broadcast only reads the rows, so they are written directly, in the
    join route's exact layout (no auth context, whole-group subscriptions).
    """
    now_ms = int(time.time() * 1000)
    requests = [{"PutRequest": {"Item": row}} for index in range(subscribers) for row in _rows(index, now_ms)]
    sent = 0
    for start in range(0, len(requests), BATCH_WRITE):
        pending: dict[str, Any] = {CONNECTIONS_TABLE: requests[start : start + BATCH_WRITE]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            sent += 1
    return sent


class PostSimulator:
    """API Gateway's ``@connections`` at the client boundary: every PostToConnection waits, then answers 200.

    Answering from ``before-call`` skips botocore's signing and sending (and moto); the handler's poster sees
    a successful empty response. Counts posts and the distinct connections posted to, from any thread.
    """

    def __init__(self, client: Any, latency_s: float) -> None:
        self._latency_s = latency_s
        self._lock = threading.Lock()
        self.posts = 0
        self.connections: set[str] = set()
        self.first_started_ns = 0
        self.last_answered_ns = 0
        client.meta.events.register("before-call.apigatewaymanagementapi.PostToConnection", self._before_call)

    def _before_call(self, params: dict[str, Any], **_: Any) -> tuple[botocore_answers.HttpAnswer, dict[str, Any]]:
        started = time.perf_counter_ns()
        time.sleep(self._latency_s)
        answered = time.perf_counter_ns()
        target = unquote(params["url_path"].rsplit("/", 1)[-1])
        with self._lock:
            self.posts += 1
            self.connections.add(target)
            self.first_started_ns = min(self.first_started_ns or started, started)
            self.last_answered_ns = max(self.last_answered_ns, answered)
        return botocore_answers.success()

    @property
    def window_s(self) -> float:
        """From the first post's start to the last post's answer."""
        return (self.last_answered_ns - self.first_started_ns) / 1e9 if self.posts else 0.0


class QueryPages:
    """Each Query the client sends: when it was sent, when its response was parsed, and the rows of its page."""

    def __init__(self, client: Any) -> None:
        self._started_ns = 0
        self.pages: list[tuple[int, int, int]] = []  # (sent ns, parsed ns, rows)
        client.meta.events.register("before-call.dynamodb.Query", self._before)
        client.meta.events.register("after-call.dynamodb.Query", self._after)

    def _before(self, **_: Any) -> None:
        self._started_ns = time.perf_counter_ns()

    def _after(self, parsed: Any = None, **_: Any) -> None:
        rows = int(parsed.get("Count", 0)) if isinstance(parsed, dict) else 0
        self.pages.append((self._started_ns, time.perf_counter_ns(), rows))

    def take(self) -> list[tuple[int, int, int]]:
        pages, self.pages = self.pages, []
        return pages


class TimedHandler:
    """The broadcast handler as the pump calls it, timed call by call; keeps the partial-batch responses."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[tuple[int, int, int, int]] = []  # (started ns, ended ns, records, batch item failures)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        started = time.perf_counter_ns()
        response = self._handler(event, context)
        ended = time.perf_counter_ns()
        failures = len((response or {}).get("batchItemFailures") or [])
        self.calls.append((started, ended, len(event["Records"]), failures))
        return response

    def take(self) -> list[tuple[int, int, int, int]]:
        calls, self.calls = self.calls, []
        return calls


@dataclasses.dataclass(frozen=True)
class BroadcastRun:
    concurrency: int
    subscribers: int
    posts: int
    distinct_connections: int
    delivery_s: float  # the broadcast handler's calls, summed (one call: one batch)
    posts_per_s: float
    query_s: float  # the subscriber lookup: every Query page, request to parsed response
    posting_s: float  # first post started -> last post answered
    posting_floor_s: float  # subscribers x latency / concurrency: the best a pool of this size can do
    excluding_query_s: float  # delivery minus the Query: what is left when the lookup is free
    # Where the delivery's wall time went, in order: handler start -> first Query sent -> last page parsed ->
    # first post started (rows decoded, grouped by connection, the pool started) -> last post answered -> return.
    phases_s: dict[str, float]
    handler_calls: int
    records: int
    batch_item_failures: int
    query_pages: list[int]  # rows per page
    dynamodb_requests: dict[str, int]  # the broadcast's, by operation
    streams_requests: dict[str, int]  # the event source mapping's (the pump's GetRecords), not the Lambda's
    peak_rss_mb: float  # the process's high-water mark after this run
    target_s: float

    @property
    def met(self) -> bool:
        return self.delivery_s <= self.target_s

    @property
    def scans(self) -> int:
        return self.dynamodb_requests.get("Scan", 0)

    @property
    def complete(self) -> bool:
        """Every subscriber got exactly one post, no record failed, and no Scan was made."""
        return (
            self.posts == self.subscribers
            and self.distinct_connections == self.subscribers
            and self.batch_item_failures == 0
            and self.scans == 0
        )


@dataclasses.dataclass(frozen=True)
class BroadcastResult:
    subscribers: int
    post_latency_ms: float
    target_s: float
    setup_s: float
    setup_requests: int
    rss_before_mb: float
    runs: list[BroadcastRun]

    @property
    def complete(self) -> bool:
        return all(run.complete for run in self.runs)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KiB else


def _set(functions: Handler, group: str, item: str) -> None:
    payload = {"stream_name": STREAM, "group_id": group, "item_id": item, "data": DATA}
    response = functions({"function_id": "stream::set", "payload": payload}, FakeLambdaContext())
    if "error" in response:
        raise RuntimeError(f"benchmark set-up: stream::set failed: {response['error']}")


def _close_broadcast_pool() -> None:
    """Stop the previous run's post threads before the wiring is rebuilt with another pool size."""
    if wiring.broadcast_service.cache_info().currsize:
        wiring.broadcast_service().close()


def _phases(
    calls: list[tuple[int, int, int, int]], pages: list[tuple[int, int, int]], posts: PostSimulator
) -> dict[str, float]:
    """The delivery's wall time cut at its landmarks (one handler call, one Query page and posts expected)."""
    if not (calls and pages and posts.posts):
        return {}
    marks = [
        ("before Query", calls[0][0]),
        ("Query", pages[0][0]),
        ("Query to first post", pages[-1][1]),
        ("posting", posts.first_started_ns),
        ("after last post", posts.last_answered_ns),
    ]
    ends = [mark for _, mark in marks[1:]] + [calls[-1][1]]
    return {name: round((end - start) / 1e9, 3) for (name, start), end in zip(marks, ends, strict=True)}


@dataclasses.dataclass
class _Bench:
    functions: Handler
    pump: StreamPump
    broadcast: TimedHandler
    streams: RequestCounter
    subscribers: int

    def run(self, concurrency: int) -> BroadcastRun:
        """Rebuild the wiring at ``concurrency``, make one change, time its delivery."""
        _close_broadcast_pool()
        os.environ["BROADCAST_CONCURRENCY"] = str(concurrency)
        wiring.reset()
        posts = PostSimulator(wiring.connections_api_client(), POST_LATENCY_S)
        requests = RequestCounter(wiring.dynamodb_client())
        queries = QueryPages(wiring.dynamodb_client())
        # A change nobody subscribes to first, so first-use costs (service, operation models) stay out.
        _set(self.functions, WARM_UP_GROUP, f"warm-up-{concurrency}")
        self.pump.drain()
        _set(self.functions, GROUP, f"item-{concurrency}")  # the one change, untimed
        requests.take()  # the counts so far are the set-up's and the warm-up's
        queries.take()
        self.streams.take()
        self.broadcast.take()
        # moto's stored tables and earlier sections' objects are not the Lambda's heap: frozen, the collector
        # skips them, so its passes during the delivery cost what they would in a Lambda holding only the handler.
        gc.collect()
        gc.freeze()
        try:
            self.pump.drain()
        finally:
            gc.unfreeze()
        calls, pages = self.broadcast.take(), queries.take()
        delivery_s = sum(ended - started for started, ended, _, _ in calls) / 1e9
        query_s = sum(parsed - sent for sent, parsed, _ in pages) / 1e9
        return BroadcastRun(
            concurrency=concurrency,
            subscribers=self.subscribers,
            posts=posts.posts,
            distinct_connections=len(posts.connections),
            delivery_s=round(delivery_s, 3),
            posts_per_s=round(posts.posts / delivery_s, 1) if delivery_s else 0.0,
            query_s=round(query_s, 3),
            posting_s=round(posts.window_s, 3),
            posting_floor_s=round(self.subscribers * POST_LATENCY_S / concurrency, 3),
            excluding_query_s=round(delivery_s - query_s, 3),
            handler_calls=len(calls),
            phases_s=_phases(calls, pages, posts),
            records=sum(records for _, _, records, _ in calls),
            batch_item_failures=sum(failures for _, _, _, failures in calls),
            query_pages=[rows for _, _, rows in pages],
            dynamodb_requests=dict(sorted(requests.take().items())),
            streams_requests=dict(sorted(self.streams.take().items())),
            peak_rss_mb=_peak_rss_mb(),
            target_s=TARGET_S,
        )


@contextmanager
def _environment() -> Iterator[None]:
    """moto in-process with the broadcast's settings; the previous values come back afterwards."""
    saved = {name: os.environ.get(name) for name in (*_ENV, "AWS_ENDPOINT_URL_DYNAMODB")}
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    os.environ.update(ITEMS_TABLE=ITEMS_TABLE, CONNECTIONS_TABLE=CONNECTIONS_TABLE, CONNECTIONS_ENDPOINT=ENDPOINT)
    try:
        with mock_aws():
            wiring.reset()
            yield
    finally:
        _close_broadcast_pool()
        wiring.reset()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(concurrencies: Sequence[int] = CONCURRENCIES, subscribers: int = SUBSCRIBERS) -> BroadcastResult:
    """Set up ``subscribers`` subscriptions to one group once, then deliver one change at each concurrency."""
    rss_before = _peak_rss_mb()
    with _environment():
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, {"ItemsTable": ITEMS_TABLE, "ConnectionsTable": CONNECTIONS_TABLE})
        started = time.perf_counter()
        setup_requests = subscribe(dynamodb, subscribers)
        setup_s = time.perf_counter() - started
        # The pump is built after set-up, at the stream's start: it sees only the changes made from here on.
        stream_arn = dynamodb.describe_table(TableName=ITEMS_TABLE)["Table"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        broadcast = TimedHandler(load_handler("broadcast.handler"))
        pump = StreamPump(streams, stream_arn, broadcast, context_factory=FakeLambdaContext)
        bench = _Bench(
            load_handler("stream_functions.handler"),
            pump,
            broadcast,
            RequestCounter(streams, "dynamodb-streams"),
            subscribers,
        )
        runs = [bench.run(concurrency) for concurrency in concurrencies]
    return BroadcastResult(
        subscribers=subscribers,
        post_latency_ms=POST_LATENCY_S * 1000,
        target_s=TARGET_S,
        setup_s=round(setup_s, 3),
        setup_requests=setup_requests,
        rss_before_mb=rss_before,
        runs=runs,
    )


_COLUMNS: Final = (
    "concurrency",
    "posts",
    "delivery s",
    "posts/s",
    "Query s",
    "posting s",
    "floor s",
    "excl. Query s",
    "peak RSS MB",
    "DynamoDB requests of the broadcast",
)
_WIDTHS: Final = (12, 6, 11, 8, 9, 10, 8, 14, 12, 0)


def _row(cells: tuple[str, ...]) -> str:
    return table_row(cells, _WIDTHS)


def _requests(run: BroadcastRun) -> str:
    named = ", ".join(f"{name}: {count}" for name, count in run.dynamodb_requests.items()) or "none"
    rows = sum(run.query_pages)
    pages = len(run.query_pages)
    return f"{named} ({pages} page{'s' * (pages != 1)}, {rows} rows)"


def _run_row(run: BroadcastRun) -> str:
    return _row(
        (
            str(run.concurrency),
            str(run.posts),
            f"{run.delivery_s:.3f}",
            f"{run.posts_per_s:.0f}",
            f"{run.query_s:.3f}",
            f"{run.posting_s:.3f}",
            f"{run.posting_floor_s:.3f}",
            f"{run.excluding_query_s:.3f}",
            f"{run.peak_rss_mb:.0f}",
            _requests(run),
        )
    )


def _verdicts(result: BroadcastResult) -> list[str]:
    lines = []
    for run in result.runs:
        verdict = "TARGET MET" if run.met else "TARGET MISSED"
        lines.append(
            f"{verdict}: delivery <= {result.target_s:g} s at concurrency {run.concurrency} ({run.delivery_s:.3f} s)"
        )
    for run in result.runs:
        problems = []
        if run.posts != run.subscribers or run.distinct_connections != run.subscribers:
            problems.append(f"{run.posts} posts to {run.distinct_connections} connections")
        if run.batch_item_failures:
            problems.append(f"{run.batch_item_failures} batch item failures")
        if run.scans:
            problems.append(f"{run.scans} Scan request(s)")
        if problems:
            lines.append(f"FAILED at concurrency {run.concurrency}: " + "; ".join(problems))
    if result.complete:
        lines.append(f"OK: every run posted once to each of the {result.subscribers} subscribers; no Scan")
    return lines


def render(result: BroadcastResult) -> str:
    streams = "; ".join(
        f"concurrency {run.concurrency}: " + (", ".join(f"{op}: {n}" for op, n in run.streams_requests.items()))
        for run in result.runs
    )
    return "\n".join(
        [
            f"iii-stream broadcast benchmark: broadcast.handler over moto ({machine()})",
            "",
            f"one change to {result.subscribers} subscribers of one group, {result.post_latency_ms:g} ms per post "
            f"(simulated @connections), target <= {result.target_s:g} s",
            f"set-up (untimed): {result.subscribers} subscription + {result.subscribers} connection rows, "
            f"{result.setup_requests} BatchWriteItem requests, {result.setup_s:.1f} s",
            _row(_COLUMNS),
            *(_run_row(run) for run in result.runs),
            "  delivery: the broadcast handler call, timed; Query s: the subscriber lookup, request to parsed "
            "response (moto in-process);",
            f"  posting s: first post started to last post answered; floor s: subscribers x "
            f"{result.post_latency_ms:g} ms / concurrency;",
            "  excl. Query s: delivery minus the Query; peak RSS: the process's high-water mark "
            f"({result.rss_before_mb:.0f} MB before set-up)",
            f"event source mapping, not the Lambda (stream pump): {streams}",
            "where the delivery's time went, s:",
            *(
                f"  {run.concurrency:<10} "
                + ", ".join(f"{name} {seconds:.3f}" for name, seconds in run.phases_s.items())
                for run in result.runs
            ),
            "",
            *_verdicts(result),
        ]
    )


def write_json(result: BroadcastResult, name: str = "broadcast") -> Path:
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **dataclasses.asdict(result),
        "runs": [{**dataclasses.asdict(run), "met": run.met, "complete": run.complete} for run in result.runs],
        "complete": result.complete,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
