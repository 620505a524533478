"""The eight ``stream::*`` functions over an ItemStore, with upstream's shapes and error codes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from iii_stream.core import frames
from iii_stream.core.errors import (
    ConflictError,
    DeserializationError,
    NameTooLongError,
    PayloadTooLargeError,
    StoreError,
    StreamError,
)
from iii_stream.core.json_limits import json_problem
from iii_stream.core.limits import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, name_bytes_over
from iii_stream.core.models import (
    DeleteInput,
    GetInput,
    ListAllInput,
    ListGroupsInput,
    ListInput,
    SendInput,
    SetInput,
    UpdateInput,
)
from iii_stream.core.ports import Clock, ItemAddress, ItemStore, StoredItem, StreamEvent
from iii_stream.core.router import Route, Router
from iii_stream.core.update_ops import MISSING, apply_update_ops

# How long a stream::send event record lives in the feed before DynamoDB TTL may sweep it.
EVENT_TTL_SECONDS: Final = 300
# Optimistic-concurrency attempts for stream::update before it reports contention.
UPDATE_ATTEMPTS: Final = 64


@contextmanager
def _store_errors(code: str, prefix: str) -> Iterator[None]:
    """Translate an adapter failure into the function's upstream error code."""
    try:
        yield
    except StoreError as exc:
        raise StreamError(f"{prefix}: {exc}", code) from exc


def _check_names(**names: str) -> None:
    for field, name in names.items():
        size = name_bytes_over(name)
        if size is not None:
            what = field.replace("_", " ")
            raise NameTooLongError(f"The {what} is {size} bytes long; at most {MAX_NAME_BYTES} bytes are allowed.")


def _address(payload: GetInput | SetInput | DeleteInput | UpdateInput) -> ItemAddress:
    _check_names(stream_name=payload.stream_name, group_id=payload.group_id, item_id=payload.item_id)
    return ItemAddress(payload.stream_name, payload.group_id, payload.item_id)


def _live_value(item: StoredItem | None, now_ms: int) -> Any:
    if item is None or not item.live(now_ms):
        return MISSING
    return json.loads(item.data)


def _too_deep(value: Any) -> bool:
    """Does a value built from checked parts (a stored item, an update's result) nest over MAX_JSON_DEPTH?"""
    return value is not MISSING and json_problem(value) is not None


def _or_none(value: Any) -> Any:
    return None if value is MISSING else value


class StreamService:
    """The stream functions; every method takes a validated input model and returns plain JSON."""

    def __init__(self, store: ItemStore, clock: Clock, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._store = store
        self._clock = clock
        self._max_bytes = max_message_bytes

    def set(self, payload: SetInput) -> dict[str, Any]:
        address = _address(payload)
        data_json = self._serialise(payload.data, "STREAM_SET_ERROR", "Failed to set value")
        self._check_change_size(payload, data_json)
        now = self._clock.now_ms()
        with _store_errors("STREAM_SET_ERROR", "Failed to set value"):
            old, _ = self._store.put(address, data_json, now, _expires_at(now, payload.ttl))
        return {"old_value": _or_none(_live_value(old, now)), "new_value": payload.data}

    def get(self, payload: GetInput) -> Any:
        now = self._clock.now_ms()
        with _store_errors("STREAM_GET_ERROR", "Failed to get value"):
            item = self._store.get(_address(payload))
        return _or_none(_live_value(item, now))

    def delete(self, payload: DeleteInput) -> dict[str, Any]:
        now = self._clock.now_ms()
        with _store_errors("STREAM_DELETE_ERROR", "Failed to delete value"):
            old = self._store.delete(_address(payload), now)
        return {"old_value": _or_none(_live_value(old, now))}

    def update(self, payload: UpdateInput) -> dict[str, Any]:
        address = _address(payload)
        with _store_errors("STREAM_UPDATE_ERROR", "Failed to update value"):
            for _ in range(UPDATE_ATTEMPTS):
                result = self._try_update(address, payload)
                if result is not None:
                    return result
        raise StreamError(
            f"Failed to update value: still contended after {UPDATE_ATTEMPTS} attempts", "STREAM_UPDATE_ERROR"
        )

    def list_items(self, payload: ListInput) -> list[Any]:
        _check_names(stream_name=payload.stream_name, group_id=payload.group_id)
        now = self._clock.now_ms()
        with _store_errors("STREAM_GET_GROUP_ERROR", "Failed to get group"):
            return [
                json.loads(item.data) for _, item in self._store.group_items(payload.stream_name, payload.group_id, now)
            ]

    def list_groups(self, payload: ListGroupsInput) -> list[str]:
        _check_names(stream_name=payload.stream_name)
        with _store_errors("STREAM_LIST_GROUPS_ERROR", "Failed to list groups"):
            return self._store.groups(payload.stream_name, self._clock.now_ms())

    def list_all(self, payload: ListAllInput) -> dict[str, Any]:
        with _store_errors("STREAM_LIST_ALL_ERROR", "Failed to list stream"):
            streams = self._store.streams(self._clock.now_ms())
        entries = [{"id": name, "groups": sorted(groups)} for name, groups in sorted(streams.items())]
        return {"stream": entries, "count": len(entries)}

    def send(self, payload: SendInput) -> None:
        _check_names(stream_name=payload.stream_name, group_id=payload.group_id, item_id=payload.id or "")
        data_json = self._serialise(payload.data, "STREAM_SEND_ERROR", "Failed to send event")
        size = frames.event_frame_bytes(payload.stream_name, payload.group_id, payload.id, payload.type, data_json)
        self._check_size(size, "event")
        now = self._clock.now_ms()
        event = StreamEvent(
            payload.stream_name,
            payload.group_id,
            payload.type,
            data_json,
            payload.id,
            now,
            _expires_at(now, EVENT_TTL_SECONDS) or 0,
        )
        with _store_errors("STREAM_SEND_ERROR", "Failed to send event"):
            self._store.append_event(event)

    def _try_update(self, address: ItemAddress, payload: UpdateInput) -> dict[str, Any] | None:
        """One optimistic read-apply-write round; None when another writer got there first."""
        old = self._store.get(address)
        now = self._clock.now_ms()
        old_value = _live_value(old, now)
        if _too_deep(old_value):  # written before the limit; the op engine copies it recursively
            too_deep = f"the stored item nests deeper than {MAX_JSON_DEPTH} levels"
            raise StreamError(f"Failed to update value: {too_deep}", "STREAM_UPDATE_ERROR")
        new_value, errors = apply_update_ops(old_value, payload.ops)
        if _too_deep(new_value):
            raise DeserializationError(
                f"Failed to deserialize input for stream::update: the ops would nest the item deeper than "
                f"{MAX_JSON_DEPTH} levels"
            )
        data_json = self._serialise(new_value, "STREAM_UPDATE_ERROR", "Failed to update value")
        self._check_change_size(payload, data_json)
        expires_at = (
            _expires_at(now, payload.ttl)
            if payload.ttl
            else (old.expires_at if old is not None and old_value is not MISSING else None)
        )
        written = StoredItem(
            data=data_json,
            version=(old.version + 1) if old is not None else 1,
            ts=max(now, old.ts + 1) if old is not None else now,
            expires_at=expires_at,
        )
        try:
            self._store.replace(address, written, old.version if old is not None else None)
        except ConflictError:
            return None
        result: dict[str, Any] = {"old_value": _or_none(old_value), "new_value": new_value}
        if errors:
            result["errors"] = errors
        return result

    def _serialise(self, value: Any, code: str, prefix: str) -> str:
        try:
            return frames.dumps(value)
        except (TypeError, ValueError) as exc:
            raise StreamError(f"{prefix}: value is not valid JSON ({exc})", code) from exc

    def _check_change_size(self, payload: SetInput | UpdateInput, data_json: str) -> None:
        size = frames.change_frame_bytes(payload.stream_name, payload.group_id, payload.item_id, "update", data_json)
        self._check_size(size, "item")

    def _check_size(self, size: int, what: str) -> None:
        if size > self._max_bytes:
            raise PayloadTooLargeError(
                f"The {what} would be a {size}-byte WebSocket message; API Gateway delivers at most "
                f"{self._max_bytes} bytes. Nothing was written."
            )


def _expires_at(now_ms: int, ttl: int | None) -> int | None:
    """Epoch seconds (DynamoDB TTL's unit), rounded up so an item never expires early."""
    return None if ttl is None else math.ceil(now_ms / 1000) + ttl


STREAM_FUNCTIONS: Final = Router[StreamService](
    {
        "stream::set": Route(SetInput, StreamService.set),
        "stream::get": Route(GetInput, StreamService.get),
        "stream::delete": Route(DeleteInput, StreamService.delete),
        "stream::update": Route(UpdateInput, StreamService.update),
        "stream::list": Route(ListInput, StreamService.list_items),
        "stream::list_groups": Route(ListGroupsInput, StreamService.list_groups),
        "stream::list_all": Route(ListAllInput, StreamService.list_all),
        "stream::send": Route(SendInput, StreamService.send),
    }
)
