"""In-memory fakes of the core's ports, checked against the real adapters by the contract suites."""

from __future__ import annotations

from collections.abc import Iterator

from iii_stream.core.errors import ConflictError
from iii_stream.core.ports import ItemAddress, StoredItem, StreamEvent


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

    def delete(self, address: ItemAddress) -> StoredItem | None:
        self.requests += 1
        return self.items.pop(address, None)

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
            if (address.stream_name, address.group_id) == (stream_name, group_id) and not item.expired(now_ms)
        )
        for _, item_id, item in matching:
            yield item_id, item

    def groups(self, stream_name: str, now_ms: int) -> list[str]:
        self.requests += 1
        live = {
            a.group_id for a, item in self.items.items() if a.stream_name == stream_name and not item.expired(now_ms)
        }
        return sorted(live, key=str.encode)

    def streams(self, now_ms: int) -> dict[str, set[str]]:
        self.requests += 1
        found: dict[str, set[str]] = {}
        for address, item in self.items.items():
            if not item.expired(now_ms):
                found.setdefault(address.stream_name, set()).add(address.group_id)
        return found

    def append_event(self, event: StreamEvent) -> None:
        self.requests += 1
        self.events.append(event)
