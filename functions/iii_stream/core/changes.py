"""A change of the items table (a write or a ``stream::send``), as broadcast and triggers see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from iii_stream.core import frames

ChangeKind = Literal["create", "update", "delete", "event"]


@dataclass(frozen=True)
class Change:
    """One change; ``timestamp`` is derived from the stored item, so it strictly increases per item."""

    stream_name: str
    group_id: str
    item_id: str | None
    kind: ChangeKind
    data: Any
    timestamp: int
    event_type: str | None = None

    def event(self) -> dict[str, Any]:
        if self.kind == "event":
            return {"type": "event", "event": {"type": self.event_type, "data": self.data}}
        return {"type": self.kind, "data": self.data}

    def message(self) -> dict[str, Any]:
        """The StreamWrapperMessage: the WebSocket frame and the ``stream`` trigger payload."""
        return frames.wrapper(self.stream_name, self.group_id, self.item_id, self.timestamp, self.event())

    def frame_bytes(self) -> bytes:
        return frames.dumps(self.message()).encode("utf-8")
