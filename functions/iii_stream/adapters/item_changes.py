"""Turn a DynamoDB Streams record of the items table into a Change (or None: nothing to tell anyone)."""

from __future__ import annotations

import json
from typing import Any

from iii_stream.adapters import keys
from iii_stream.core.changes import Change, ChangeKind
from iii_stream.core.json_limits import json_problem


def change_from_record(record: dict[str, Any]) -> Change | None:
    """Decode one record (Lambda's DynamoDB Streams event shape, DynamoDB-JSON images).

    Raises on a record it cannot read, and ValueError on one no frame can carry (names or data that are not
    storable JSON: only another writer could have stored them); the handlers report it as a failed item.
    """
    change = _change(record)
    if change is not None:
        _check_sendable(change)
    return change


def _check_sendable(change: Change) -> None:
    names = [change.stream_name, change.group_id, change.item_id or "", change.event_type or ""]
    if not all(isinstance(name, str) for name in names):
        raise ValueError("the record's stream or group name is not a string")
    problem = json_problem([*names, change.data], envelope=1)
    if problem is not None:
        raise ValueError(f"the record cannot be sent: {problem.reason}")


def _change(record: dict[str, Any]) -> Change | None:
    stream_record = record.get("dynamodb", {})
    new, old = stream_record.get("NewImage"), stream_record.get("OldImage")
    pk = stream_record.get("Keys", {}).get("pk", {}).get("S")
    if not pk:
        return None
    tag, stream_name, group_id = keys.parse_partition(pk)
    if tag == keys.EVENT_TAG:
        return _event_change(record.get("eventName"), new, stream_name, group_id)
    item_id = keys.unprefix(stream_record["Keys"]["sk"]["S"])
    if not _has_data(new):
        # A REMOVE (TTL sweep) or a tombstone written by stream::delete; nothing to tell if nothing was live.
        # (moto also emits a keys-only INSERT before an UpdateItem creates an item; AWS never does.)
        return _removal(old, new, stream_name, group_id, item_id)
    new_ts = int(new["ts"]["N"])
    kind: ChangeKind = "update" if _has_data(old) and not _expired(old, new_ts) else "create"
    return Change(stream_name, group_id, item_id, kind, json.loads(new["data"]["S"]), new_ts)


def _event_change(event_name: Any, new: Any, stream_name: str, group_id: str) -> Change | None:
    if event_name != "INSERT" or not _has_data(new):
        return None  # the TTL removal of a send event is not news
    event_id = new["event_id"]["S"] if "event_id" in new else None
    return Change(
        stream_name,
        group_id,
        event_id,
        "event",
        json.loads(new["data"]["S"]),
        int(new["ts"]["N"]),
        event_type=new["event_type"]["S"],
    )


def _removal(old: Any, tombstone: Any, stream_name: str, group_id: str, item_id: str) -> Change | None:
    if not _has_data(old):
        return None
    # stream::delete stamps its tombstone; a TTL sweep has no stamp, so one ms after the removed version.
    ts = int(tombstone["ts"]["N"]) if isinstance(tombstone, dict) and "ts" in tombstone else int(old["ts"]["N"]) + 1
    return Change(stream_name, group_id, item_id, "delete", json.loads(old["data"]["S"]), ts)


def _has_data(image: Any) -> bool:
    return isinstance(image, dict) and "data" in image and "ts" in image


def _expired(image: dict[str, Any], now_ms: int) -> bool:
    expires = image.get("expires_at")
    return expires is not None and now_ms >= int(expires["N"]) * 1000
