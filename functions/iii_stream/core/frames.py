"""The one wire shape shared by WebSocket frames and ``stream`` trigger payloads (StreamWrapperMessage)."""

from __future__ import annotations

import json
from typing import Any, Final

# Widest timestamp we budget for when sizing a frame before it exists (ms epoch until year 2286).
_TIMESTAMP_WIDTH: Final = 13


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is: the one serialisation used for storage and frames."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def wrapper(
    stream_name: str, group_id: str, item_id: str | None, timestamp: int, event: dict[str, Any]
) -> dict[str, Any]:
    """Build a StreamWrapperMessage; ``id`` is always present, null when absent."""
    return {
        "type": "stream",
        "timestamp": timestamp,
        "streamName": stream_name,
        "groupId": group_id,
        "id": item_id,
        "event": event,
    }


def change_frame_bytes(stream_name: str, group_id: str, item_id: str | None, event_type: str, data_json: str) -> int:
    """The size in bytes of the frame that broadcasts ``data_json`` (already serialised)."""
    skeleton = wrapper(stream_name, group_id, item_id, 10 ** (_TIMESTAMP_WIDTH - 1), {"type": event_type, "data": None})
    return len(dumps(skeleton).encode("utf-8")) - len("null") + len(data_json.encode("utf-8"))


def event_frame_bytes(stream_name: str, group_id: str, event_id: str | None, event_type: str, data_json: str) -> int:
    """The size in bytes of the frame that carries a ``stream::send`` event."""
    event = {"type": "event", "event": {"type": event_type, "data": None}}
    skeleton = wrapper(stream_name, group_id, event_id, 10 ** (_TIMESTAMP_WIDTH - 1), event)
    return len(dumps(skeleton).encode("utf-8")) - len("null") + len(data_json.encode("utf-8"))
