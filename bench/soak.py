"""Churn and soak through one ``iii-stream local``: ``python -m bench.soak [--minutes N]`` (default 10).

Not part of ``make bench`` (too long). Prints a report and writes ``bench/results/soak.json`` (gitignored), with the
service's log beside it (``soak-service.log``, and ``soak-store.log`` for the DynamoDB process). Exits 1 when a check
fails. A 10-minute run takes about 11.5 minutes in all.

The load, all on loopback, bounded in count and time, for ``--minutes``:
- **writers** (``--writers`` processes, ``--rate`` calls/s each) on the same items (``GROUPS`` x ``ITEMS`` of stream
  ``soak``): ``stream::update`` with an ``increment`` of the writer's own counter field ``c<w>`` (most calls),
  ``stream::set`` (which replaces the value, counters included), ``stream::delete`` then a re-create, and a few
  ``stream::send`` events. Each writer keeps a ledger: the increments that succeeded, and the counters every
  ``set`` and ``delete`` it made took away (their ``old_value``).
- **subscribers** (``--subscribers`` WebSocket clients kept alive, asyncio) joining and leaving groups and items at
  random, each living 5 to 45 s, then closing cleanly or vanishing (``transport.abort()``: no close frame); new
  ones connect continually.
- **handshake drops**: a partial HTTP upgrade request then close; the whole request then an abort before the 101
  (``$connect`` has run); the 101 read then an abort; and a client that joins then aborts at once.

Then writes and churn stop, and (after a settle) the checks:
- **No lost update.** For each item and writer w: the increments w's ledger says succeeded equal the item's final
  ``c<w>`` plus every ``c<w>`` that a ``set`` or ``delete`` (by anyone) took away. Exact, since each of those calls
  answers the value it replaced (``old_value``). Fewer accounted for than made: lost updates; more: some ``old_value``
  was not the value replaced (counted twice), and the report lists those calls beside the table's stream records of
  the item (``wrong_old_values``). A call whose answer never came is uncertain: its item is reported apart.
- **Every live subscriber holds the final state.** Each client applies frames with the published client's rules
  (``@motiadev/stream-client`` 0.17.14: routing to item and group rooms, the group's sync/create/update/delete
  rules with per-item timestamps, the item's strictly increasing timestamp); its state must equal ``stream::list``
  (group, as a set by id: the client appends) or ``stream::get`` (item). Polled until equal, up to ``SETTLE_S``.
- **No row for a socket that is gone.** The connections table, read straight from DynamoDB: while the last clients
  are open, exactly their connection and subscription rows; after they close (half cleanly, half vanishing, then
  ``$disconnect`` has had ``ROWS_WAIT_S``), none. A last probe repeats each way of leaving ``PROBE_REPEATS`` times
  and counts the rows each leaves, to say which one leaks, if any does.
- **Flat memory.** The service's RSS (``/proc/<pid>/status``, VmRSS) every ``--sample-seconds``; start, end, max and
  the slope of a least-squares line over the second half of the load. Flat means under ``FLAT_MB_PER_MIN``
  (1 MB/min): at the default churn (about 2.4 sockets and 32 writes a second) that is what a leak of about 7 KB per
  socket, or 500 bytes per write, would show, while a service that keeps nothing shows a few hundredths of a MB/min
  over five minutes (the allocator's own wobble).
- Reported, not checked: the delivery lag (a create/update/delete frame's timestamp to its arrival), by minute.

By default DynamoDB runs in a process of its own (``infra.embedded_dynamodb``, the very server ``iii-stream local``
embeds, passed with ``--dynamodb-endpoint``), so the service's RSS is the service's (moto keeps every stream record
for ever: its memory grows with the writes, reported apart as the store's). ``--embedded`` runs the service exactly
as ``make run`` does, with its own DynamoDB process (reported as the store too).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any, Final

from iii_stream.infra.offline_env import go_offline, offline_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.results import DETAIL_DIR, machine

CLI: Final = Path(sys.executable).parent / "iii-stream"
STREAM: Final = "soak"
GROUPS: Final = tuple(f"g{n}" for n in range(4))
ITEMS: Final = tuple(f"i{n}" for n in range(6))
GHOST: Final = "ghost"  # never written: an item join on it gets a null sync
CONNECTIONS_TABLE: Final = "iii-stream-connections"
ITEMS_TABLE: Final = "iii-stream-items"
FLAT_MB_PER_MIN: Final = 1.0
SETTLE_S: Final = 30.0
ROWS_WAIT_S: Final = 20.0
PROBE_REPEATS: Final = 5
MAX_SUBS_PER_SOCKET: Final = 5
TRACE_FRAMES: Final = 400  # the last frames each subscription keeps, for the report on a mismatch
MAX_CONNECTIONS: Final = 20_000  # a bound on sockets opened in one run, whatever the duration
HANDSHAKE_KINDS: Final = ("partial_request", "abort_before_101", "abort_after_101", "abort_after_join")


def _counter(writer: int) -> str:
    return f"c{writer}"


def _key(group: str, item: str) -> str:
    return f"{group}/{item}"


# --- the writers (one process each) ----------------------------------------------------------------------------
@dataclass
class Ledger:
    """What one writer did, to account for every increment at the end."""

    writer: int
    ops: Counter[str] = field(default_factory=Counter)
    increments: Counter[str] = field(default_factory=Counter)  # item key -> increments that succeeded
    removed: dict[str, Counter[str]] = field(default_factory=dict)  # item key -> counter -> taken away by set/delete
    uncertain: Counter[str] = field(default_factory=Counter)  # item key -> calls whose answer never came
    anomalies: list[str] = field(default_factory=list)  # answers that contradict themselves
    errors: list[str] = field(default_factory=list)
    journal: list[tuple[int, str, str, Any, Any]] = field(default_factory=list)  # (ms, key, op, old, new) per call

    def note(self, key: str, op: str, old: Any, new: Any) -> None:
        self.journal.append((int(time.time() * 1000), key, f"w{self.writer} {op}", old, new))

    def took_away(self, key: str, old_value: Any) -> None:
        if isinstance(old_value, dict):
            removed = self.removed.setdefault(key, Counter())
            for name, value in old_value.items():
                if re.fullmatch(r"c\d+", name) and isinstance(value, int):
                    removed[name] += value

    def to_json(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "ops": dict(self.ops),
            "increments": dict(self.increments),
            "removed": {key: dict(counters) for key, counters in self.removed.items()},
            "uncertain": dict(self.uncertain),
            "anomalies": self.anomalies[:20],
            "errors": self.errors[:20],
            "journal": self.journal,
        }


def _lambda_client(endpoint_url: str) -> Any:
    """No retries: a retried call could apply twice, and the ledger must know what happened exactly once."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        signature_version=UNSIGNED,
        region_name="us-east-1",
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("lambda", endpoint_url=endpoint_url, config=config)


class _Writer:
    def __init__(self, index: int, endpoint_url: str, seed: int) -> None:
        from iii_stream.client import StreamClient

        self.ledger = Ledger(index)
        self.counter = _counter(index)
        self.client: Any = StreamClient.via_lambda(lambda_client=_lambda_client(endpoint_url))
        self.rng = random.Random(seed)
        self.n = 0

    def one(self) -> None:
        group, item = self.rng.choice(GROUPS), self.rng.choice(ITEMS)
        key, roll = _key(group, item), self.rng.random()
        self.n += 1
        try:
            if roll < 0.72:
                self._update(group, item, key)
            elif roll < 0.90:
                self._set(group, item, key, "set")
            elif roll < 0.97:
                self._delete(group, item, key)
                self._set(group, item, key, "recreate")
            else:
                self.client.send(STREAM, group, "tick", {"writer": self.ledger.writer, "n": self.n})
                self.ledger.ops["send"] += 1
        except Exception as error:  # noqa: BLE001 - the call's outcome is unknown; the item is set apart
            self.ledger.uncertain[key] += 1
            self.ledger.errors.append(f"{key}: {type(error).__name__}: {error}")

    def _update(self, group: str, item: str, key: str) -> None:
        ops = [{"type": "set", "path": "id", "value": item}, {"type": "increment", "path": self.counter, "by": 1}]
        result = self.client.update(STREAM, group, item, ops)
        self.ledger.ops["update"] += 1
        self.ledger.note(key, "update", result.get("old_value"), result.get("new_value"))
        if result.get("errors"):
            self.ledger.anomalies.append(f"update {key}: op errors {result['errors']}")
            return
        before = (result.get("old_value") or {}).get(self.counter, 0)
        if result["new_value"].get(self.counter) != before + 1:
            self.ledger.anomalies.append(f"update {key}: {self.counter} {before} -> {result['new_value']}")
        self.ledger.increments[key] += 1

    def _set(self, group: str, item: str, key: str, op: str) -> None:
        data = {"id": item, "label": f"w{self.ledger.writer}-{self.n}"}
        result = self.client.set(STREAM, group, item, data)
        self.ledger.ops[op] += 1
        self.ledger.note(key, op, result.get("old_value"), result.get("new_value"))
        self.ledger.took_away(key, result.get("old_value"))
        if result.get("new_value") != data:
            self.ledger.anomalies.append(f"{op} {key}: stored {result.get('new_value')!r}, not {data!r}")

    def _delete(self, group: str, item: str, key: str) -> None:
        result = self.client.delete(STREAM, group, item)
        self.ledger.ops["delete"] += 1
        self.ledger.note(key, "delete", result.get("old_value"), None)
        self.ledger.took_away(key, result.get("old_value"))


def _write(index: int, endpoint_url: str, stop_at: float, rate: float, seed: int, out: Queue[dict[str, Any]]) -> None:
    """A writer process: ``rate`` calls a second until ``stop_at`` (epoch seconds), then its ledger to ``out``."""
    go_offline()
    writer = _Writer(index, endpoint_url, seed)
    next_at = time.monotonic()
    while time.time() < stop_at:
        writer.one()
        next_at = max(next_at + 1 / rate, time.monotonic() - 1)  # never more than a second of debt
        time.sleep(max(0.0, next_at - time.monotonic()))
    out.put(writer.ledger.to_json())


# --- the published client's state rules ------------------------------------------------------------------------
def _id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else None


class GroupView:
    """``StreamGroupSubscription.listener`` of @motiadev/stream-client 0.17.14, rule for rule."""

    def __init__(self) -> None:
        self.state: Any = []
        self.last_timestamp = 0
        self.timestamps: dict[Any, int] = {}

    def apply(self, timestamp: int, event: dict[str, Any]) -> None:
        kind, data = event.get("type"), event.get("data")
        if kind == "sync":
            if timestamp < self.last_timestamp:
                return
            self.timestamps = {}
            self.last_timestamp = timestamp
            self.state = data
        elif kind == "create":
            if not any(_id_of(item) == _id_of(data) for item in self.state):
                self.state = [*self.state, data]
        elif kind == "update":
            current = self.timestamps.get(_id_of(data))
            if current and current >= timestamp:
                return
            self.last_timestamp = timestamp
            self.timestamps[_id_of(data)] = timestamp
            self.state = [data if _id_of(item) == _id_of(data) else item for item in self.state]
        elif kind == "delete":
            self.last_timestamp = timestamp
            self.timestamps[_id_of(data)] = timestamp
            self.state = [item for item in self.state if _id_of(item) != _id_of(data)]


class ItemView:
    """``StreamItemSubscription.listener``: frames at or before the last timestamp are dropped."""

    def __init__(self) -> None:
        self.state: Any = None
        self.last_timestamp = 0

    def apply(self, timestamp: int, event: dict[str, Any]) -> None:
        if timestamp <= self.last_timestamp:
            return
        self.last_timestamp = timestamp
        if event.get("type") in ("sync", "create", "update"):
            self.state = event.get("data")
        elif event.get("type") == "delete":
            self.state = None


Room = tuple[str, str, str | None]


class Lags:
    """How long after its timestamp each create/update/delete frame arrived (ms), by minute of the run."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.by_minute: dict[int, list[int]] = {}

    def add(self, lag_ms: int) -> None:
        self.by_minute.setdefault(int((time.monotonic() - self.started) // 60), []).append(lag_ms)

    def summary(self) -> dict[str, Any]:
        every = sorted(lag for lags in self.by_minute.values() for lag in lags)
        return {
            "frames": len(every),
            "p50_ms": _quantile(every, 0.5),
            "p99_ms": _quantile(every, 0.99),
            "max_ms": every[-1] if every else None,
            "p99_ms_by_minute": [_quantile(sorted(lags), 0.99) for _, lags in sorted(self.by_minute.items())],
        }


def _quantile(ordered: Sequence[int], fraction: float) -> int | None:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else None


@dataclass
class Subscription:
    subscription_id: str
    group: str
    item: str | None
    view: GroupView | ItemView
    synced: bool = False  # its join was answered with a sync
    trace: deque[tuple[int, str, Any, str]] = field(default_factory=lambda: deque(maxlen=TRACE_FRAMES))

    def record(self, timestamp: int, event: dict[str, Any]) -> None:
        """The frame, as (timestamp, type, item id, what it carried), for the report on a mismatch."""
        kind, data = str(event.get("type")), event.get("data")
        if kind == "sync" and isinstance(data, list):
            self.trace.append((timestamp, kind, None, json.dumps(sorted(str(_id_of(v)) for v in data))))
        else:
            self.trace.append((timestamp, kind, _id_of(data), json.dumps(data, sort_keys=True)[:200]))

    @property
    def data(self) -> dict[str, str]:
        """The join's (and the leave's) ``data``: a group join has no ``id`` key at all."""
        data = {"streamName": STREAM, "groupId": self.group, "subscriptionId": self.subscription_id}
        return data if self.item is None else {**data, "id": self.item}

    @property
    def room(self) -> Room:
        return (STREAM, self.group, self.item)


class Subscriber:
    """One WebSocket client: its subscriptions, routed as ``Stream.messageListener`` routes frames."""

    def __init__(self, ws: ClientConnection, counts: Counter[str], lags: Lags) -> None:
        self.ws = ws
        self.counts = counts
        self.lags = lags
        self.subscriptions: dict[str, Subscription] = {}
        self.closing = False  # we are closing it: any close from now on is ours
        self.closed = False
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        try:
            async for message in self.ws:
                self.on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            if not self.closing:
                self.counts[f"closed_by_server_{self.ws.close_code}"] += 1

    def on_message(self, message: str | bytes) -> None:
        self.counts["frames"] += 1
        try:
            frame = json.loads(message)
            event, timestamp = frame["event"], int(frame["timestamp"])
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            self.counts["bad_frames"] += 1
            return
        self.counts[f"frames_{kind}"] += 1
        if kind in ("create", "update", "delete"):
            self.lags.add(int(time.time() * 1000) - timestamp)
        item = frame.get("id") or None
        self._deliver((frame.get("streamName"), frame.get("groupId"), item), timestamp, event)
        if item and kind != "sync":
            self._deliver((frame.get("streamName"), frame.get("groupId"), None), timestamp, event)

    def _deliver(self, room: tuple[Any, Any, Any], timestamp: int, event: dict[str, Any]) -> None:
        for subscription in list(self.subscriptions.values()):
            if subscription.room == room:
                if event.get("type") == "sync":
                    subscription.synced = True
                subscription.record(timestamp, event)
                subscription.view.apply(timestamp, event)

    async def join(self, rng: random.Random) -> None:
        group = rng.choice(GROUPS)
        item = None if rng.random() < 0.5 else (GHOST if rng.random() < 0.05 else rng.choice(ITEMS))
        view: GroupView | ItemView = GroupView() if item is None else ItemView()
        subscription = Subscription(str(uuid.uuid4()), group, item, view)
        self.subscriptions[subscription.subscription_id] = subscription
        subscription.trace.append((int(time.time() * 1000), "join sent (client clock)", None, ""))
        await self.ws.send(json.dumps({"type": "join", "data": subscription.data}))
        self.counts["joins"] += 1

    async def leave(self, rng: random.Random) -> None:
        subscription = self.subscriptions.pop(rng.choice(list(self.subscriptions)))
        await self.ws.send(json.dumps({"type": "leave", "data": subscription.data}))
        self.counts["leaves"] += 1

    async def end(self, vanish: bool) -> None:
        self.closing = True
        if vanish:
            self.ws.transport.abort()
            self.counts["vanishes"] += 1
        else:
            await self.ws.close()
            self.counts["clean_closes"] += 1
        if self.reader is not None:
            await self.reader


# --- the churn -------------------------------------------------------------------------------------------------
class Churn:
    """Keeps ``target`` subscribers alive, each joining, leaving and ending at random, and drops handshakes."""

    def __init__(self, host: str, port: int, target: int, seed: int) -> None:
        self.host, self.port, self.target = host, port, target
        self.url = f"ws://{host}:{port}/"
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.lags = Lags()
        self.errors: list[str] = []
        self.live: set[Subscriber] = set()
        self.frozen = asyncio.Event()
        self._connecting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until frozen; then only the subscribers alive at that moment remain, untouched."""
        dropper = asyncio.create_task(self._drop_handshakes())
        while not self.frozen.is_set():
            while len(self.live) + self._connecting < self.target and self.counts["connects"] < MAX_CONNECTIONS:
                self._connecting += 1  # until its socket is open (or failed to): counted at once, not when it runs
                self._spawn(self._life())
            await self._pause(self.rng.uniform(0.05, 0.3))
        await dropper
        if self._tasks:
            await asyncio.gather(*self._tasks)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.frozen.wait(), seconds)

    async def open(self) -> Subscriber | None:
        try:
            ws = await connect(self.url, max_size=None, ping_interval=None, open_timeout=20, close_timeout=5)
        except Exception as error:  # noqa: BLE001 - counted and kept: a refused or timed-out handshake is a finding
            self.counts["connect_failures"] += 1
            self.errors.append(f"connect: {type(error).__name__}: {error}")
            return None
        self.counts["connects"] += 1
        subscriber = Subscriber(ws, self.counts, self.lags)
        subscriber.reader = asyncio.create_task(subscriber.read())
        return subscriber

    async def _life(self) -> None:
        try:
            subscriber = await self.open()
            if subscriber is not None:
                self.live.add(subscriber)
        finally:
            self._connecting -= 1
        if subscriber is None:
            return
        try:
            for _ in range(self.rng.randint(1, 3)):
                await subscriber.join(self.rng)
            ends_at = time.monotonic() + self.rng.uniform(5, 45)
            while time.monotonic() < ends_at and not subscriber.closed:
                await self._pause(self.rng.uniform(0.5, 3.0))
                if self.frozen.is_set():
                    return  # it stays: one of the live subscribers the checks look at
                await self._act(subscriber)
            if not subscriber.closed:
                await subscriber.end(vanish=self.rng.random() < 0.5)
        except ConnectionClosed:
            pass  # closed under it (counted by its reader)
        except Exception as error:  # noqa: BLE001 - noted; the churn goes on
            self.errors.append(f"subscriber: {type(error).__name__}: {error}")
        self.live.discard(subscriber)

    async def _act(self, subscriber: Subscriber) -> None:
        roll = self.rng.random()
        if not subscriber.subscriptions or (roll < 0.45 and len(subscriber.subscriptions) < MAX_SUBS_PER_SOCKET):
            await subscriber.join(self.rng)
        elif roll < 0.80:
            await subscriber.leave(self.rng)

    async def _drop_handshakes(self) -> None:
        while not self.frozen.is_set():
            kind = self.rng.choice(HANDSHAKE_KINDS)
            try:
                await self.drop(kind)
            except Exception as error:  # noqa: BLE001 - a failed drop is noted, the soak goes on
                self.errors.append(f"{kind}: {type(error).__name__}: {error}")
            await self._pause(self.rng.uniform(0.5, 2.5))

    async def drop(self, kind: str) -> None:
        """One client that goes away during (or right after) its handshake."""
        if kind == "abort_after_join":
            subscriber = await self.open()
            if subscriber is not None:
                await subscriber.join(self.rng)
                await subscriber.end(vanish=True)
                self.counts["vanishes"] -= 1  # counted as what it is
                self.counts[kind] += 1
            return
        reader, writer = await asyncio.open_connection(self.host, self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: soak-{kind}\r\n\r\n"
        ).encode()
        if kind == "partial_request":
            writer.write(request[: len(request) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)
        else:
            writer.write(request)
            await writer.drain()
            if kind == "abort_after_101":
                status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
                if not status.startswith(b"HTTP/1.1 101"):
                    self.errors.append(f"{kind}: answered {status[:40]!r}")
        writer.transport.abort()
        self.counts[kind] += 1


# --- the service and its store ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_store(pipe: Pipe, log: str) -> None:
    """The DynamoDB process: ``iii-stream local``'s embedded server (atomic conditional writes), until told;
    what it prints (werkzeug's "Error on request" tracebacks) goes to ``log``."""
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    go_offline()
    from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB

    store = EmbeddedDynamoDB()
    pipe.send(store.start())
    with contextlib.suppress(EOFError):
        pipe.recv()
    store.stop()


class Service:
    """``iii-stream local`` on free ports, its log kept; with its own DynamoDB process unless ``embedded``."""

    def __init__(self, embedded: bool, log: Path, store_log: Path) -> None:
        self.ws_port, self.lambda_port = _free_port(), _free_port()
        self.log, self.store_log = log, store_log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.store: Any = None
        self._pipe: Pipe | None = None
        args = [str(CLI), "local", "--in-memory", "--port", str(self.ws_port), "--lambda-port", str(self.lambda_port)]
        if not embedded:
            self._pipe, child = multiprocessing.get_context("spawn").Pipe()
            self.store = multiprocessing.get_context("spawn").Process(
                target=_serve_store, args=(child, str(store_log)), daemon=True
            )
            self.store.start()
            if not self._pipe.poll(60):
                raise RuntimeError("the DynamoDB process did not start")
            args += ["--dynamodb-endpoint", str(self._pipe.recv())]
        with log.open("w") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=offline_env())
        deadline = time.monotonic() + 60
        while "iii-stream local is running" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("iii-stream local did not start:\n" + self.text()[-4000:])
            time.sleep(0.1)
        found = re.search(r"DynamoDB[^\n]*?(http://\S+)", self.text())
        if found is None:
            raise RuntimeError("iii-stream local printed no DynamoDB endpoint")
        self.dynamodb_endpoint = found.group(1)

    @property
    def lambda_url(self) -> str:
        return f"http://127.0.0.1:{self.lambda_port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGINT (as Ctrl-C: sockets closed, then exit); the exit code, or None if it had to be killed."""
        code: int | None = self.process.poll()
        if code is None:
            self.process.send_signal(signal.SIGINT)
            try:
                code = self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.send("stop")
            self.store.join(10)
            if self.store.is_alive():
                self.store.kill()
        return code


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def slope_mb_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (m - mean_m) for t, m in points) / spread if spread else None


def scan_rows(dynamodb: Any) -> dict[str, list[str]]:
    """The connections table's rows by kind: ``connections`` (pk C…), ``subscriptions`` (pk G…), ``other``."""
    rows: dict[str, list[str]] = {"connections": [], "subscriptions": [], "other": []}
    request: dict[str, Any] = {"TableName": CONNECTIONS_TABLE, "ProjectionExpression": "pk, sk", "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**request)
        for row in page.get("Items", []):
            pk, sk = row["pk"]["S"], row["sk"]["S"]
            kind = {"C": "connections", "G": "subscriptions"}.get(pk[:1], "other")
            rows[kind].append(f"{pk} {sk}")
        if "LastEvaluatedKey" not in page:
            return rows
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Sampler:
    """Every ``interval`` s: each process's RSS, and the connections table's rows beside the live sockets."""

    def __init__(self, pids: dict[str, int], dynamodb_endpoint: str, churn: Churn, interval: float) -> None:
        import boto3

        self.pids, self.churn, self.interval = pids, churn, interval
        self.dynamodb: Any = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        sample: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1)}
        sample.update({f"rss_mb_{name}": rss_mb(pid) for name, pid in self.pids.items()})
        try:
            rows = scan_rows(self.dynamodb)
            sample.update(connection_rows=len(rows["connections"]), subscription_rows=len(rows["subscriptions"]))
        except Exception as error:  # noqa: BLE001 - a missed count is not a failed soak
            sample["rows_error"] = f"{type(error).__name__}: {error}"
        live = list(self.churn.live)
        sample.update(live_sockets=len(live), live_subscriptions=sum(len(s.subscriptions) for s in live))
        self.samples.append(sample)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def memory(self, name: str, load_seconds: float) -> dict[str, Any]:
        points = [(s["t"], s[f"rss_mb_{name}"]) for s in self.samples if s.get(f"rss_mb_{name}") is not None]
        during = [(t, m) for t, m in points if t <= load_seconds + self.interval / 2]
        second_half = [(t, m) for t, m in during if t >= load_seconds / 2]
        slope = slope_mb_per_min(second_half)
        return {
            "start_mb": round(points[0][1], 1) if points else None,
            "end_of_load_mb": round(during[-1][1], 1) if during else None,
            "end_mb": round(points[-1][1], 1) if points else None,
            "max_mb": round(max(m for _, m in points), 1) if points else None,
            "slope_mb_per_min_second_half": round(slope, 3) if slope is not None else None,
            "samples_in_fit": len(second_half),
            "flat": slope is not None and slope < FLAT_MB_PER_MIN,
        }


# --- the checks ------------------------------------------------------------------------------------------------
def final_state(client: Any) -> tuple[dict[str, list[Any]], dict[tuple[str, str], Any]]:
    """What ``stream::list`` and ``stream::get`` say now: every group, and every item (the ghost included)."""
    groups = {group: client.list(STREAM, group) for group in GROUPS}
    items = {(group, item): client.get(STREAM, group, item) for group in GROUPS for item in (*ITEMS, GHOST)}
    return groups, items


def mismatches(
    live: Sequence[Subscriber], groups: dict[str, list[Any]], items: dict[tuple[str, str], Any]
) -> list[dict[str, Any]]:
    """Every live subscription whose state is not the stored one: what it holds, what is stored, its last frames
    (for a group, those of the items that differ)."""
    found = []
    for subscriber in live:
        for subscription in subscriber.subscriptions.values():
            held, stored = subscription.view.state, None
            if subscription.item is None:
                stored = groups[subscription.group]
                by_id = {str(_id_of(v)): v for v in held} if isinstance(held, list) else {}
                want = {str(_id_of(v)): v for v in stored}
                same = isinstance(held, list) and len(by_id) == len(held) and by_id == want
                differ = {key for key in by_id.keys() | want.keys() if by_id.get(key) != want.get(key)}
            else:
                stored = items[(subscription.group, subscription.item)]
                same, differ = held == stored, {str(subscription.item)}
            if subscription.synced and same:
                continue
            trace = [
                f"{ts} {kind} {item_id or ''} {text}".rstrip()
                for ts, kind, item_id, text in subscription.trace
                if item_id is None or str(item_id) in differ
            ]
            found.append(
                {
                    "room": list(subscription.room),
                    "synced": subscription.synced,
                    "held": held,
                    "stored": stored,
                    "trace": trace[-80:],
                }
            )
    return found


def lost_updates(ledgers: Sequence[dict[str, Any]], items: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Per item and writer: increments the ledger says succeeded, against the final counter plus those taken away."""
    uncertain = {key for ledger in ledgers for key in ledger["uncertain"]}
    lost, extra, checked, increments = [], [], 0, 0
    for group in GROUPS:
        for item in ITEMS:
            key = _key(group, item)
            if key in uncertain:
                continue
            final = items[(group, item)] if isinstance(items[(group, item)], dict) else {}
            for ledger in ledgers:
                counter = _counter(ledger["writer"])
                made = ledger["increments"].get(key, 0)
                taken = sum(other["removed"].get(key, {}).get(counter, 0) for other in ledgers)
                accounted = final.get(counter, 0) + taken
                checked, increments = checked + 1, increments + made
                if accounted < made:
                    lost.append(f"{key} {counter}: {made} made, {accounted} accounted for")
                elif accounted > made:
                    extra.append(f"{key} {counter}: {made} made, {accounted} accounted for")
    wrong = sorted({entry.split(" ")[0] for entry in lost + extra})[:3]
    journals = {
        key: sorted(tuple(entry) for ledger in ledgers for entry in ledger["journal"] if entry[1] == key)
        for key in wrong
    }
    return {
        "lost": lost,
        "extra": extra,
        "journals": journals,  # every call on the items that do not add up (at most 3), in the callers' time order
        "checked": checked,
        "increments": increments,
        "uncertain_items": sorted(uncertain),
    }


Version = dict[str, Any]  # {"v": version, "ts": ms, "data": the value, or None for a tombstone}


def item_history(dynamodb_endpoint: str, keys: Sequence[str]) -> dict[str, list[tuple[Version | None, Version]]]:
    """Each item's every write as the table's stream recorded it (moto keeps them all): (replaced, written)."""
    import boto3
    from botocore.config import Config

    dynamodb: Any = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    streams: Any = boto3.client(
        "dynamodbstreams", endpoint_url=dynamodb_endpoint, config=Config(account_id_endpoint_mode="disabled")
    )
    arn = dynamodb.describe_table(TableName=ITEMS_TABLE)["Table"]["LatestStreamArn"]
    wanted = {
        ("I" + json.dumps([STREAM, key.split("/")[0]], separators=(",", ":")), "#" + key.split("/")[1]): key
        for key in keys
    }
    found: dict[str, list[tuple[Version | None, Version]]] = {key: [] for key in keys}
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        iterator = iterator["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                body = record["dynamodb"]
                key = wanted.get((body["Keys"]["pk"]["S"], body["Keys"]["sk"]["S"]))
                new = _version(body.get("NewImage"))
                if key is not None and new is not None:
                    found[key].append((_version(body.get("OldImage")), new))
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return found


def _version(image: dict[str, Any] | None) -> Version | None:
    if not image:
        return None
    data = json.loads(image["data"]["S"]) if "data" in image else None
    return {"v": int(image["version"]["N"]), "ts": int(image["ts"]["N"]), "data": data}


def wrong_old_values(journal: Sequence[Sequence[Any]], history: Sequence[tuple[Version | None, Version]]) -> list[str]:
    """The ``set``s and ``delete``s whose answered ``old_value`` is not the value the stream says they replaced.

    A set is found by the value it wrote (its label is unique); a delete by a tombstone that replaced the value
    it answered (each tombstone used once).
    """
    by_written = {json.dumps(new["data"], sort_keys=True): old for old, new in history if new["data"] is not None}
    tombstones = [old for old, new in history if new["data"] is None]
    wrong = []
    for at, _, op, answered, written in journal:
        if op.endswith(("set", "recreate")):
            replaced = by_written.get(json.dumps(written, sort_keys=True), {"data": "(not in the stream)"})
            if (replaced or {}).get("data") != answered:
                wrong.append(f"{op} at {at}: answered old_value {answered}, replaced {replaced}")
        elif op.endswith("delete") and answered is not None:
            match = next((old for old in tombstones if old is not None and old["data"] == answered), None)
            if match is None:
                wrong.append(f"{op} at {at}: answered old_value {answered}, which no tombstone replaced")
            else:
                tombstones.remove(match)
    return wrong


async def _converge(churn: Churn, client: Any) -> tuple[list[dict[str, Any]], float, Any]:
    """Poll until every live subscriber holds the stored state (or ``SETTLE_S``); what is left, and when."""
    started = time.monotonic()
    while True:
        groups, items = await asyncio.to_thread(final_state, client)
        found = mismatches([s for s in churn.live if not s.closed], groups, items)
        if not found or time.monotonic() - started > SETTLE_S:
            return found, time.monotonic() - started, (groups, items)
        await asyncio.sleep(1)


async def _rows_until(dynamodb: Any, done: Callable[[dict[str, list[str]]], bool], seconds: float) -> Any:
    started = time.monotonic()
    while True:
        rows = await asyncio.to_thread(scan_rows, dynamodb)
        if done(rows) or time.monotonic() - started > seconds:
            return rows, time.monotonic() - started
        await asyncio.sleep(0.5)


async def _probe(churn: Churn, dynamodb: Any) -> dict[str, int]:
    """Each way of leaving, ``PROBE_REPEATS`` times on its own: the connection and subscription rows it leaves."""
    left: dict[str, int] = {}
    for kind in (*HANDSHAKE_KINDS, "vanish_after_sync", "clean_close_after_sync"):
        before = await asyncio.to_thread(scan_rows, dynamodb)
        for _ in range(PROBE_REPEATS):
            if kind in HANDSHAKE_KINDS:
                await churn.drop(kind)
                continue
            subscriber = await churn.open()
            if subscriber is not None:
                await subscriber.join(churn.rng)
                await asyncio.sleep(0.3)
                await subscriber.end(vanish=kind.startswith("vanish"))
        await asyncio.sleep(2)
        after = await asyncio.to_thread(scan_rows, dynamodb)
        left[kind] = sum(len(after[k]) - len(before[k]) for k in ("connections", "subscriptions", "other"))
    return left


@dataclass
class Plan:
    minutes: float
    writers: int
    subscribers: int
    rate: float
    sample_seconds: float
    embedded: bool
    seed: int


async def _soak(
    plan: Plan, service: Service, sampler_pids: dict[str, int], ledgers_out: Queue[dict[str, Any]], writers: list[Any]
) -> dict[str, Any]:
    import boto3
    from iii_stream.client import StreamClient

    load_seconds = plan.minutes * 60
    churn = Churn("127.0.0.1", service.ws_port, plan.subscribers, plan.seed)
    sampler = Sampler(sampler_pids, service.dynamodb_endpoint, churn, plan.sample_seconds)
    dynamodb: Any = boto3.client("dynamodb", endpoint_url=service.dynamodb_endpoint)
    client: Any = StreamClient.via_lambda(endpoint_url=service.lambda_url)
    sampler.start()
    churning = asyncio.create_task(churn.run())
    await asyncio.sleep(load_seconds)
    churn.frozen.set()
    await churning
    ledgers = [await asyncio.to_thread(ledgers_out.get, True, 120) for _ in writers]
    for process in writers:
        process.join(30)
    sampler.sample()
    left, settle_s, (groups, items) = await _converge(churn, client)
    live = [s for s in churn.live if not s.closed]
    want = {"connections": len(live), "subscriptions": sum(len(s.subscriptions) for s in live)}
    rows_live, _ = await _rows_until(
        dynamodb, lambda rows: all(len(rows[k]) == n for k, n in want.items()) and not rows["other"], 10
    )
    for n, subscriber in enumerate(live):
        await subscriber.end(vanish=n % 2 == 1)
    rows_after, rows_wait = await _rows_until(dynamodb, lambda rows: not any(rows.values()), ROWS_WAIT_S)
    sampler.sample()
    probe = await _probe(churn, dynamodb)
    accounting = lost_updates(ledgers, items)
    if accounting["journals"]:
        histories = await asyncio.to_thread(item_history, service.dynamodb_endpoint, list(accounting["journals"]))
        accounting["wrong_old_values"] = {
            key: wrong_old_values(accounting["journals"][key], history) for key, history in histories.items()
        }
        accounting["histories"] = {key: history[-300:] for key, history in histories.items()}
    sampler.stop()
    return {
        "counts": dict(churn.counts),
        "delivery_lag": churn.lags.summary(),
        "client_errors": churn.errors[:30],
        "ledgers": [{k: v for k, v in ledger.items() if k != "journal"} for ledger in ledgers],
        "lost_updates": accounting,
        "state": {
            "live_sockets": len(live),
            "live_subscriptions": want["subscriptions"],
            "mismatches": left[:10],
            "mismatch_count": len(left),
            "settled_in_s": round(settle_s, 1),
            "final_groups": groups,
        },
        "rows": {
            "while_live_expected": want,
            "while_live_found": {k: len(v) for k, v in rows_live.items()},
            "after_close": {k: len(v) for k, v in rows_after.items()},
            "after_close_sample": [row for rows in rows_after.values() for row in rows][:20],
            "waited_s": round(rows_wait, 1),
            "probe_rows_left_per_kind": probe,
        },
        "memory": {name: sampler.memory(name, load_seconds) for name in sampler_pids},
        "samples": sampler.samples,
    }


def _service_log_findings(text: str) -> dict[str, Any]:
    failures = [line for line in text.splitlines() if re.search(r"failed|set aside|Error|Traceback", line)]
    return {
        "tracebacks": text.count("Traceback"),
        "failure_lines": len(failures),
        "failure_sample": failures[:15],
        "route_calls": len(re.findall(r" route ", text)),
        "posts": len(re.findall(r"connections post ", text)),
    }


def _embedded_store(pid: int) -> int | None:
    """The pid of the DynamoDB process ``iii-stream local`` started (a child of ``pid``), if it has one (Linux)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if (
                parent == pid
                and b"iii_stream.infra.local.dynamodb_process" in Path(f"/proc/{entry}/cmdline").read_bytes()
            ):
                return int(entry)
    return None


def run(plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    log, store_log = DETAIL_DIR / "soak-service.log", DETAIL_DIR / "soak-store.log"
    service = Service(plan.embedded, log, store_log)
    pids = {"service": service.process.pid}
    if service.store is not None:
        pids["store"] = service.store.pid
    elif (embedded := _embedded_store(service.process.pid)) is not None:
        pids["store"] = embedded  # iii-stream local's own DynamoDB process
    context = multiprocessing.get_context("spawn")
    ledgers: Queue[dict[str, Any]] = context.Queue()
    stop_at = time.time() + plan.minutes * 60
    writers = [
        context.Process(
            target=_write,
            args=(n, service.lambda_url, stop_at, plan.rate, plan.seed + 1 + n, ledgers),
            name=f"soak-writer-{n}",
            daemon=True,
        )
        for n in range(plan.writers)
    ]
    exit_code: int | None = None
    try:
        for process in writers:
            process.start()
        outcome = asyncio.run(_soak(plan, service, pids, ledgers, writers))
        crashed = service.process.poll()
    finally:
        for process in writers:
            if process.is_alive():
                process.terminate()
        exit_code = service.stop()
    outcome["service"] = {
        "crashed_during_run": crashed,
        "exit_code_on_stop": exit_code,
        "log": str(log),
        **_service_log_findings(service.text()),
    }
    if service.store is not None:
        outcome["store"] = {"log": str(store_log), **_service_log_findings(store_log.read_text(errors="replace"))}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": asdict(plan),
        "wall_s": round(time.monotonic() - started, 1),
        **outcome,
    }


# --- the report ------------------------------------------------------------------------------------------------
def verdicts(doc: dict[str, Any]) -> dict[str, bool]:
    rows, state, lost = doc["rows"], doc["state"], doc["lost_updates"]
    return {
        "no lost update": not lost["lost"] and not any(x["anomalies"] for x in doc["ledgers"]),
        "no increment counted twice (every old_value is the value replaced)": not lost["extra"],
        "live subscribers hold the final state": state["mismatch_count"] == 0,
        "rows while live = live sockets": rows["while_live_found"] == {**rows["while_live_expected"], "other": 0},
        "no row left after close": not any(rows["after_close"].values())
        and not any(rows["probe_rows_left_per_kind"].values()),
        "service memory flat": bool(doc["memory"]["service"]["flat"]),
        "service alive, no traceback": doc["service"]["crashed_during_run"] is None
        and doc["service"]["tracebacks"] == 0,
        "DynamoDB answered every request": doc.get("store", {}).get("tracebacks", 0) == 0,
    }


def _lines(doc: dict[str, Any]) -> Iterator[str]:
    plan, counts = doc["plan"], Counter(doc["counts"])
    ops: Counter[str] = Counter()
    for ledger in doc["ledgers"]:
        ops.update(ledger["ops"])
    store = "embedded (as make run)" if plan["embedded"] else "its own process"
    yield (
        f"soak: {plan['minutes']:g} min of load ({doc['wall_s']:.0f} s in all), {plan['writers']} writers at "
        f"{plan['rate']:g} calls/s each, {plan['subscribers']} live subscribers, DynamoDB in {store}"
    )
    yield (
        f"writes: {ops['update']} updates (increments), {ops['set']} sets, {ops['delete']} deletes "
        f"(+{ops['recreate']} re-creates), {ops['send']} sends"
    )
    yield (
        f"sockets: {counts['connects']} opened, {counts['joins']} joins, {counts['frames_sync']} syncs, "
        f"{counts['leaves']} leaves, {counts['clean_closes']} clean closes, {counts['vanishes']} vanishes, "
        f"{counts['frames']} frames; {counts['connect_failures']} failed opens"
    )
    lag = doc["delivery_lag"]
    yield (
        f"delivery lag (a frame's timestamp to its arrival): p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max "
        f"{lag['max_ms']} ms; p99 by minute {lag['p99_ms_by_minute']}"
    )
    drops = ", ".join(f"{kind} {counts[kind]}" for kind in HANDSHAKE_KINDS)
    yield f"handshake drops: {sum(counts[kind] for kind in HANDSHAKE_KINDS)} ({drops})"
    server_closes = {k: v for k, v in counts.items() if k.startswith("closed_by_server")}
    if server_closes or counts["bad_frames"]:
        yield f"closed by the server: {server_closes}; bad frames {counts['bad_frames']}"
    lost = doc["lost_updates"]
    yield (
        f"lost updates: {len(lost['lost'])} lost, {len(lost['extra'])} extra, over {lost['increments']} increments "
        f"({lost['checked']} item-writer pairs; {len(lost['uncertain_items'])} items set apart as uncertain)"
    )
    for key, wrong in lost.get("wrong_old_values", {}).items():
        yield f"  {key}: {len(wrong)} answer(s) whose old_value is not what the stream says was replaced"
        yield from (f"    {line}" for line in wrong[:3])
    state = doc["state"]
    yield (
        f"state mismatches: {state['mismatch_count']} of {state['live_subscriptions']} subscriptions on "
        f"{state['live_sockets']} live sockets (checked after {state['settled_in_s']} s of settle)"
    )
    rows = doc["rows"]
    yield (
        f"rows while live: {rows['while_live_found']} (expected {rows['while_live_expected']}); after close: "
        f"{rows['after_close']} after {rows['waited_s']} s; probe, rows left per kind: "
        f"{rows['probe_rows_left_per_kind']}"
    )
    for name, memory in doc["memory"].items():
        yield (
            f"memory ({name}): start {memory['start_mb']} MB, end of load {memory['end_of_load_mb']} MB, end "
            f"{memory['end_mb']} MB, max {memory['max_mb']} MB; slope over the 2nd half "
            f"{memory['slope_mb_per_min_second_half']} MB/min ({memory['samples_in_fit']} samples; flat < "
            f"{FLAT_MB_PER_MIN:g})"
        )
    service = doc["service"]
    yield (
        f"service: {'alive' if service['crashed_during_run'] is None else 'DIED'} through the run, exit "
        f"{service['exit_code_on_stop']} on stop, {service['tracebacks']} tracebacks, {service['failure_lines']} "
        f"failure lines in {service['log']}"
    )
    if "store" in doc:
        yield f"DynamoDB process: {doc['store']['tracebacks']} tracebacks in {doc['store']['log']}"
    for name, ok in verdicts(doc).items():
        yield f"  {'ok  ' if ok else 'FAIL'} {name}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=40, help="WebSocket clients kept alive (default 40)")
    parser.add_argument("--rate", type=float, default=10.0, help="calls a second per writer (default 10)")
    parser.add_argument("--sample-seconds", type=float, default=None, help="default 15 (5 under 5 minutes)")
    parser.add_argument("--embedded", action="store_true", help="DynamoDB inside the service, as make run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    go_offline()
    sample = args.sample_seconds or (15.0 if args.minutes >= 5 else 5.0)
    plan = Plan(args.minutes, args.writers, args.subscribers, args.rate, sample, args.embedded, args.seed)
    print(f"soak: {plan.minutes:g} min of load, then the checks (about a minute more) ...", file=sys.stderr, flush=True)
    doc = run(plan)
    DETAIL_DIR.mkdir(parents=True, exist_ok=True)
    path = DETAIL_DIR / "soak.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print("\n".join(_lines(doc)))
    print(f"written: {path}")
    return 0 if all(verdicts(doc).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
