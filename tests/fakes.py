"""In-memory fakes of the core's ports, checked against the real adapters by the contract suites."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from iii_stream.core.errors import ConflictError, ConnectionGoneError, FunctionFailedError, PostError
from iii_stream.core.limits import API_GATEWAY_IDLE_TIMEOUT_MS
from iii_stream.core.ports import Connection, ItemAddress, StoredItem, StreamEvent, Subscription, SyncMark
from iii_stream.core.registry import FunctionRecord, TriggerRecord

# A connection is due for its first liveness check this long after it opened (API Gateway's idle timeout).
FIRST_CHECK_MS = API_GATEWAY_IDLE_TIMEOUT_MS


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class MemoryItemStore:
    """The ItemStore port in a dict; the contract suite runs against it and against DynamoDB."""

    def __init__(self) -> None:
        self.items: dict[ItemAddress, StoredItem] = {}
        self.events: list[StreamEvent] = []
        self.requests = 0

    def put(
        self, address: ItemAddress, data: str, now_ms: int, expires_at: int | None
    ) -> tuple[StoredItem | None, StoredItem]:
        self.requests += 1
        old = self.items.get(address)
        new = StoredItem(data, (old.version + 1) if old else 1, max(now_ms, old.ts + 1) if old else now_ms, expires_at)
        self.items[address] = new
        return old, new

    def get(self, address: ItemAddress) -> StoredItem | None:
        self.requests += 1
        return self.items.get(address)

    def delete(self, address: ItemAddress, now_ms: int) -> StoredItem | None:
        self.requests += 1
        old = self.items.get(address)
        if old is None or old.deleted:
            return None
        self.items[address] = StoredItem("", old.version + 1, max(now_ms, old.ts + 1), now_ms // 1000 + 3600, True)
        return old

    def replace(self, address: ItemAddress, item: StoredItem, expected_version: int | None) -> None:
        self.requests += 1
        current = self.items.get(address)
        if (current.version if current else None) != expected_version:
            raise ConflictError("the item changed since it was read")
        self.items[address] = item

    def group_items(self, stream_name: str, group_id: str, now_ms: int) -> Iterator[tuple[str, StoredItem]]:
        self.requests += 1
        matching = sorted(
            (address.item_id.encode(), address.item_id, item)
            for address, item in self.items.items()
            if (address.stream_name, address.group_id) == (stream_name, group_id) and item.live(now_ms)
        )
        for _, item_id, item in matching:
            yield item_id, item

    def groups(self, stream_name: str, now_ms: int) -> list[str]:
        self.requests += 1
        live = {a.group_id for a, item in self.items.items() if a.stream_name == stream_name and item.live(now_ms)}
        return sorted(live, key=str.encode)

    def streams(self, now_ms: int) -> dict[str, set[str]]:
        self.requests += 1
        found: dict[str, set[str]] = {}
        for address, item in self.items.items():
            if item.live(now_ms):
                found.setdefault(address.stream_name, set()).add(address.group_id)
        return found

    def append_event(self, event: StreamEvent) -> None:
        self.requests += 1
        self.events.append(event)


class MemoryConnectionStore:
    """The ConnectionStore port in dicts; removals hand each subscription to exactly one caller."""

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.subscriber_queries: list[tuple[str, str]] = []
        self.due_at: dict[str, int] = {}  # postponed checks; otherwise due FIRST_CHECK_MS after connected_at
        self.postponed: list[tuple[str, int]] = []

    def save_connection(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection
        self.due_at.pop(connection.connection_id, None)

    def get_connection(self, connection_id: str) -> Connection | None:
        return self.connections.get(connection_id)

    def add_subscription(self, subscription: Subscription) -> bool:
        if subscription.connection_id not in self.connections:
            return False
        self.subscriptions[(subscription.connection_id, subscription.subscription_id)] = subscription
        return True

    def remove_subscription(self, connection_id: str, subscription_id: str) -> Subscription | None:
        return self.subscriptions.pop((connection_id, subscription_id), None)

    def remove_connection(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        self.connections.pop(connection_id, None)
        self.due_at.pop(connection_id, None)
        mine = [key for key in self.subscriptions if key[0] == connection_id]
        return [self.subscriptions.pop(key) for key in mine]

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        self.subscriber_queries.append((stream_name, group_id))
        return [s for s in self.subscriptions.values() if (s.stream_name, s.group_id) == (stream_name, group_id)]

    def mark_synced(self, subscription: Subscription, mark: SyncMark) -> None:
        key = (subscription.connection_id, subscription.subscription_id)
        if key in self.subscriptions:
            self.subscriptions[key] = replace(self.subscriptions[key], synced=mark)

    def of(self, connection_id: str) -> list[Subscription]:
        """The subscriptions a connection holds now."""
        return [s for (cid, _), s in self.subscriptions.items() if cid == connection_id]

    def due(self, connection_id: str) -> int:
        """When this connection's liveness check is due."""
        return self.due_at.get(connection_id, self.connections[connection_id].connected_at + FIRST_CHECK_MS)

    def due_connections(self, now_ms: int, limit: int) -> list[str]:
        due = sorted((self.due(cid), cid) for cid in self.connections)
        return [cid for at, cid in due if at <= now_ms][:limit]

    def postpone(self, connection_id: str, due_at_ms: int) -> None:
        # Like the DynamoDB adapter's conditional update: never brings a removed connection back.
        self.postponed.append((connection_id, due_at_ms))
        if connection_id in self.connections:
            self.due_at[connection_id] = due_at_ms


class RecordingPoster:
    """The Poster port: records every frame as parsed JSON; ``gone`` ids answer 410, ``failing`` ids fail.

    ``alive`` is False for ``gone`` ids and raises PostError for ``unreachable`` ids; ``on_alive`` (if set)
    runs first, so a test can make something happen while the gateway is being asked.
    """

    def __init__(self) -> None:
        self.frames: dict[str, list[Any]] = defaultdict(list)
        self.raw: dict[str, list[bytes]] = defaultdict(list)
        self.attempts: list[str] = []
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.unreachable: set[str] = set()
        self.alive_checks: list[str] = []
        self.on_alive: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    def post(self, connection_id: str, data: bytes) -> int:
        with self._lock:
            self.attempts.append(connection_id)
        if connection_id in self.gone:
            raise ConnectionGoneError(connection_id)
        if connection_id in self.failing:
            raise PostError(f"posting to {connection_id} failed")
        with self._lock:
            self.raw[connection_id].append(data)
            self.frames[connection_id].append(json.loads(data.decode("utf-8")))
        return 0

    def all_frames(self) -> list[Any]:
        return [frame for frames in self.frames.values() for frame in frames]

    def alive(self, connection_id: str) -> bool:
        with self._lock:
            self.alive_checks.append(connection_id)
        if self.on_alive is not None:
            self.on_alive(connection_id)
        if connection_id in self.unreachable:
            raise PostError(f"checking {connection_id} failed")
        return connection_id not in self.gone


class RecordingLeaveHook:
    """The LeaveHook port: remembers every subscription that left, in order."""

    def __init__(self) -> None:
        self.left_subscriptions: list[Subscription] = []

    def left(self, subscription: Subscription) -> None:
        self.left_subscriptions.append(subscription)


class ScriptedGate:
    """The JoinGate port: allows what ``allow`` says yes to, and remembers what it was asked."""

    def __init__(self, allow: Callable[[Subscription], bool] = lambda subscription: True) -> None:
        self.allow = allow
        self.asked: list[Subscription] = []

    def allows(self, subscription: Subscription) -> bool:
        self.asked.append(subscription)
        return self.allow(subscription)


class FakeInvoker:
    """The FunctionInvoker port over Python callables; a raising callable is a failed function.

    ``invoke_async`` only queues (the callable does not run, as with Lambda's ``Event`` invocation): a queued
    call lands in ``async_calls``; an unknown ref or one in ``queue_failures`` cannot be queued.
    """

    def __init__(self, functions: dict[str, Callable[[Any], Any]]) -> None:
        self.functions = functions
        self.calls: list[tuple[str, Any]] = []
        self.async_calls: list[tuple[str, Any]] = []
        self.queue_failures: set[str] = set()

    def invoke(self, function_ref: str, payload: Any) -> Any:
        self.calls.append((function_ref, payload))
        function = self.functions.get(function_ref)
        if function is None:
            raise FunctionFailedError(f"no function {function_ref}")
        try:
            return function(payload)
        except Exception as exc:
            raise FunctionFailedError(f"{function_ref} raised: {exc}") from exc

    def invoke_async(self, function_ref: str, payload: Any) -> None:
        if function_ref not in self.functions or function_ref in self.queue_failures:
            raise FunctionFailedError(f"{function_ref} could not be queued")
        self.async_calls.append((function_ref, payload))


class MemoryRegistryStore:
    """The RegistryStore port in dicts; ``triggers()`` in registration order (re-registering moves to the end)."""

    def __init__(self) -> None:
        self.function_records: dict[str, FunctionRecord] = {}
        self.trigger_records: dict[str, TriggerRecord] = {}
        self.function_reads = 0
        self.trigger_reads = 0

    def put_function(self, record: FunctionRecord) -> None:
        self.function_records[record.function_id] = record

    def delete_function(self, function_id: str) -> bool:
        return self.function_records.pop(function_id, None) is not None

    def functions(self) -> list[FunctionRecord]:
        self.function_reads += 1
        return list(self.function_records.values())

    def put_trigger(self, record: TriggerRecord) -> None:
        self.trigger_records.pop(record.trigger_id, None)
        self.trigger_records[record.trigger_id] = record

    def delete_trigger(self, trigger_id: str) -> bool:
        return self.trigger_records.pop(trigger_id, None) is not None

    def triggers(self) -> list[TriggerRecord]:
        self.trigger_reads += 1
        return list(self.trigger_records.values())


class MemoryTriggerLedger:
    """The TriggerLedger port: a pair marked done is never claimed again; one left claimed can be."""

    def __init__(self) -> None:
        self.status: dict[tuple[str, str], str] = {}

    def claim(self, change_id: str, trigger_id: str) -> bool:
        if self.status.get((change_id, trigger_id)) == "done":
            return False
        self.status[(change_id, trigger_id)] = "claimed"
        return True

    def complete(self, change_id: str, trigger_id: str) -> None:
        self.status[(change_id, trigger_id)] = "done"

    def release(self, change_id: str, trigger_id: str) -> None:
        self.status.pop((change_id, trigger_id), None)
