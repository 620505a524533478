"""The ports the core needs, as Protocols; adapters implement them, tests pass fakes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


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

    def expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and now_ms >= self.expires_at * 1000


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

    def delete(self, address: ItemAddress) -> StoredItem | None:
        """Remove one item; return what was removed."""
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
