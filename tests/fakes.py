"""In-memory fakes of the core's ports, checked against the real adapters by the contract suites."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from iii_stream.core.errors import ConflictError, ConnectionGoneError, FunctionFailedError, PostError
from iii_stream.core.ports import Connection, ItemAddress, StoredItem, StreamEvent, Subscription


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

    def save_connection(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection

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
        mine = [key for key in self.subscriptions if key[0] == connection_id]
        return [self.subscriptions.pop(key) for key in mine]

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        self.subscriber_queries.append((stream_name, group_id))
        return [s for s in self.subscriptions.values() if (s.stream_name, s.group_id) == (stream_name, group_id)]

    def of(self, connection_id: str) -> list[Subscription]:
        """The subscriptions a connection holds now."""
        return [s for (cid, _), s in self.subscriptions.items() if cid == connection_id]


class RecordingPoster:
    """The Poster port: records every frame as parsed JSON; ``gone`` ids answer 410, ``failing`` ids fail."""

    def __init__(self) -> None:
        self.frames: dict[str, list[Any]] = defaultdict(list)
        self.raw: dict[str, list[bytes]] = defaultdict(list)
        self.attempts: list[str] = []
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def post(self, connection_id: str, data: bytes) -> None:
        with self._lock:
            self.attempts.append(connection_id)
        if connection_id in self.gone:
            raise ConnectionGoneError(connection_id)
        if connection_id in self.failing:
            raise PostError(f"posting to {connection_id} failed")
        with self._lock:
            self.raw[connection_id].append(data)
            self.frames[connection_id].append(json.loads(data.decode("utf-8")))

    def all_frames(self) -> list[Any]:
        return [frame for frames in self.frames.values() for frame in frames]


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
    """The FunctionInvoker port over Python callables; a raising callable is a failed function."""

    def __init__(self, functions: dict[str, Callable[[Any], Any]]) -> None:
        self.functions = functions
        self.calls: list[tuple[str, Any]] = []

    def invoke(self, function_ref: str, payload: Any) -> Any:
        self.calls.append((function_ref, payload))
        function = self.functions.get(function_ref)
        if function is None:
            raise FunctionFailedError(f"no function {function_ref}")
        try:
            return function(payload)
        except Exception as exc:
            raise FunctionFailedError(f"{function_ref} raised: {exc}") from exc
