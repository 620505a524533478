"""The ports the core needs, as Protocols; adapters implement them, tests pass fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ItemAddress:
    """Where an item lives: ``(stream_name, group_id, item_id)``."""

    stream_name: str
    group_id: str
    item_id: str


@dataclass(frozen=True)
class StoredItem:
    """One stored item as the store holds it; ``data`` is the item's JSON text."""

    data: str
    version: int
    ts: int
    expires_at: int | None = None
    deleted: bool = False  # a tombstone: keeps version and ts so a re-created item continues after them

    def expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and now_ms >= self.expires_at * 1000

    def live(self, now_ms: int) -> bool:
        return not self.deleted and not self.expired(now_ms)


@dataclass(frozen=True)
class StreamEvent:
    """A transient ``stream::send`` event, written to the feed and never read back."""

    stream_name: str
    group_id: str
    event_type: str
    data: str
    event_id: str | None
    ts: int
    expires_at: int


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...


class ItemStore(Protocol):
    """Durable storage of items, keyed by address, with per-item versions and timestamps."""

    def put(
        self, address: ItemAddress, data: str, now_ms: int, expires_at: int | None
    ) -> tuple[StoredItem | None, StoredItem]:
        """Write ``data`` in one request; return (the previous item or None, the written item)."""
        ...

    def get(self, address: ItemAddress) -> StoredItem | None:
        """Read one item with a strongly consistent read."""
        ...

    def delete(self, address: ItemAddress, now_ms: int) -> StoredItem | None:
        """Replace a live or expired item with a tombstone stamped after it; return what was removed."""
        ...

    def replace(self, address: ItemAddress, item: StoredItem, expected_version: int | None) -> None:
        """Write ``item`` if the stored version is still ``expected_version`` (None: absent), else ConflictError."""
        ...

    def group_items(self, stream_name: str, group_id: str, now_ms: int) -> Iterator[tuple[str, StoredItem]]:
        """Every live ``(item_id, item)`` of a group, ordered by item id, across all pages."""
        ...

    def groups(self, stream_name: str, now_ms: int) -> list[str]:
        """The groups of a stream that hold at least one live item, sorted."""
        ...

    def streams(self, now_ms: int) -> dict[str, set[str]]:
        """Every stream with the groups that hold live items."""
        ...

    def append_event(self, event: StreamEvent) -> None:
        """Write a transient event into the change feed."""
        ...


@dataclass(frozen=True)
class Connection:
    """An open WebSocket connection and the context its auth function returned."""

    connection_id: str
    connected_at: int
    context: Any = None


@dataclass(frozen=True)
class Subscription:
    """One accepted join: a whole group (``item_id`` None) or one item of it."""

    connection_id: str
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None = None
    context: Any = None
    # What a group subscription's sync already held: ``PENDING_SYNC`` from its join until its snapshot is
    # read; None for item subscriptions (their clients skip stale frames by timestamp).
    synced: SyncMark | None = None
    # Tells one join of a subscription id from a later join of the same id (its leave's ledger key).
    join_id: str = field(default="", compare=False)

    def matches(self, item_id: str | None) -> bool:
        """Does a change of ``item_id`` (None: a send without id) reach this subscription?"""
        return self.item_id is None or (item_id is not None and self.item_id == item_id)


# Changes older than this before a group's sync are in it, or superseded by what is (clock skew between
# writers is far below it); younger ones are told apart by the snapshot's own item stamps.
SYNC_WINDOW_MS = 60_000


@dataclass(frozen=True)
class SyncMark:
    """When a group subscription's snapshot was read, and the stamps of its recently changed items."""

    read_at: int
    recent: dict[str, int]
    pending: bool = False

    def holds(self, item_id: str | None, timestamp: int) -> bool:
        """Did the sync already carry this write (or a newer one) of the item? Pending (the join has not read
        its snapshot yet): every write so far is in that snapshot or its catch-up, so it is held."""
        if self.pending or timestamp < self.read_at - SYNC_WINDOW_MS:
            return True
        stamp = self.recent.get(item_id or "")
        return stamp is not None and timestamp <= stamp


# A group subscription between its join and the read of its snapshot.
PENDING_SYNC = SyncMark(0, {}, pending=True)


class ConnectionStore(Protocol):
    """Connections, and subscriptions keyed by (stream, group) so a change finds its subscribers in one query."""

    def save_connection(self, connection: Connection) -> None:
        """Record a new connection with no subscriptions."""
        ...

    def get_connection(self, connection_id: str) -> Connection | None:
        """Read a connection (strongly consistent)."""
        ...

    def add_subscription(self, subscription: Subscription) -> bool:
        """Record a subscription (replacing one with the same id); False when the connection is gone."""
        ...

    def remove_subscription(self, connection_id: str, subscription_id: str) -> Subscription | None:
        """Remove one subscription; only the one caller that removed it gets it back."""
        ...

    def remove_connection(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        """Remove a connection and its subscriptions; return those this call removed (each exactly once). A table
        failing half-way raises RemovalStoppedError with those removed so far, the connection itself kept."""
        ...

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        """Every subscription to a group, its item subscriptions included."""
        ...

    def mark_synced(self, subscription: Subscription, mark: SyncMark) -> None:
        """Record what a group subscription's sync holds, so broadcast sends it no older write."""
        ...

    def due_connections(self, now_ms: int, limit: int) -> list[str]:
        """Connections whose liveness check is due (from the sweeper's index, never a Scan)."""
        ...

    def postpone(self, connection_id: str, due_at_ms: int) -> None:
        """Check this connection again at ``due_at_ms``."""
        ...


class Poster(Protocol):
    """Delivers one frame to one connection (API Gateway's @connections, or the local gateway)."""

    def post(self, connection_id: str, data: bytes) -> int:
        """Send; returns how many throttled answers (429) it waited out on the way (backpressure, counted as a
        metric); raises ConnectionGoneError when the connection no longer exists, PostError when it failed."""
        ...

    def alive(self, connection_id: str) -> bool:
        """Does the gateway still hold this connection (``GetConnection``; False on 410)?"""
        ...


class JoinGate(Protocol):
    def allows(self, subscription: Subscription) -> bool:
        """Run the ``stream:join`` handlers; False rejects the subscription."""
        ...


class LeaveHook(Protocol):
    def left(self, subscription: Subscription) -> None:
        """Queue the ``stream:leave`` handlers of a subscription that ended; FunctionFailedError when some could
        not be queued and the leave is to be handed back to the next removal (see ``core/disconnect.py``)."""
        ...


class FunctionInvoker(Protocol):
    def invoke(self, function_ref: str, payload: Any) -> Any:
        """Call a user function synchronously; raises FunctionFailedError when it fails."""
        ...

    def invoke_async(self, function_ref: str, payload: Any) -> None:
        """Queue a call (Lambda's ``Event`` invocation); raises FunctionFailedError when it cannot be queued."""
        ...


class TriggerLedger(Protocol):
    """Remembers which (change, trigger) pairs were dispatched, so a redelivered change fires nothing twice."""

    def claim(self, change_id: str, trigger_id: str) -> bool:
        """Take the pair; False when it was already dispatched."""
        ...

    def complete(self, change_id: str, trigger_id: str) -> None:
        """The handler was invoked."""
        ...

    def release(self, change_id: str, trigger_id: str) -> None:
        """Invoking failed: let a retry take the pair again."""
        ...
