"""The ItemStore port on a DynamoDB table (the Items table of template.yaml).

Item attributes: ``pk``, ``sk`` (see keys), ``kind`` ("item" or "event"), ``data`` (the value's
JSON text, so any JSON survives exactly), ``version`` and ``ts`` (strictly increasing per item),
``expires_at`` (optional, epoch seconds, the table's TTL attribute), and for items the sparse
``by_stream`` index keys ``stream_key``/``group_key``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from iii_stream.adapters import keys
from iii_stream.adapters.dynamodb_common import mapped_errors, n, s
from iii_stream.core.errors import ConflictError, StoreError
from iii_stream.core.ports import ItemAddress, StoredItem, StreamEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

BY_STREAM_INDEX: Final = "by_stream"
_PUT_ATTEMPTS: Final = 8
# A deleted item leaves a tombstone this long, so a re-created item's timestamps continue after the delete.
TOMBSTONE_TTL_SECONDS: Final = 3600
_GROUP_PAGE: Final = 25


def _to_item(raw: dict[str, Any] | None) -> StoredItem | None:
    """A stored item, a tombstone (``deleted``), or None when there is no record (or a keys-only one)."""
    if not raw or "ts" not in raw or "version" not in raw:
        return None
    expires = raw.get("expires_at")
    return StoredItem(
        data=raw["data"]["S"] if "data" in raw else "",
        version=int(raw["version"]["N"]),
        ts=int(raw["ts"]["N"]),
        expires_at=int(expires["N"]) if expires else None,
        deleted="data" not in raw,
    )


def _live_filter(now_ms: int) -> dict[str, Any]:
    return {
        "FilterExpression": "attribute_not_exists(expires_at) OR expires_at > :now_s",
        "ExpressionAttributeValues": {":now_s": n(now_ms // 1000)},
    }


def _live_item_filter(now_ms: int) -> dict[str, Any]:
    """Live items of a group query: not expired, and not a tombstone."""
    return {
        "FilterExpression": "attribute_exists(#data) AND (attribute_not_exists(expires_at) OR expires_at > :now_s)",
        "ExpressionAttributeNames": {"#data": "data"},
        "ExpressionAttributeValues": {":now_s": n(now_ms // 1000)},
    }


class DynamoItemStore:
    """Items and send-events in one DynamoDB table, so one stream feeds broadcast and triggers."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _key(self, address: ItemAddress) -> dict[str, Any]:
        return {
            "pk": s(keys.item_partition(address.stream_name, address.group_id)),
            "sk": s(keys.item_sort(address.item_id)),
        }

    def _item_attributes(self, address: ItemAddress, item: StoredItem) -> dict[str, Any]:
        attributes = {
            **self._key(address),
            "kind": s("item"),
            "stream_key": s(keys.stream_index_key(address.stream_name)),
            "group_key": s(keys.group_index_key(address.group_id)),
            "data": s(item.data),
            "version": n(item.version),
            "ts": n(item.ts),
        }
        if item.expires_at is not None:
            attributes["expires_at"] = n(item.expires_at)
        return attributes

    def put(
        self, address: ItemAddress, data: str, now_ms: int, expires_at: int | None
    ) -> tuple[StoredItem | None, StoredItem]:
        ts, guard = now_ms, None
        for _ in range(_PUT_ATTEMPTS):
            try:
                return self._put_once(address, data, ts, expires_at, guard)
            except ConflictError as newer:
                # The stored ts is not older than our clock: go one ms past it, guarded on its version.
                current = _to_item(newer.current)
                ts, guard = (max(now_ms, current.ts + 1), current.version) if current else (now_ms, None)
        raise StoreError("the item kept changing while it was being written")

    def _put_once(
        self, address: ItemAddress, data: str, ts: int, expires_at: int | None, guard: int | None
    ) -> tuple[StoredItem | None, StoredItem]:
        values: dict[str, Any] = {
            ":data": s(data),
            ":ts": n(ts),
            ":one": n(1),
            ":zero": n(0),
            ":kind": s("item"),
            ":sk": s(keys.stream_index_key(address.stream_name)),
            ":gk": s(keys.group_index_key(address.group_id)),
        }
        expression = (
            "SET #data = :data, #ts = :ts, #version = if_not_exists(#version, :zero) + :one, "
            "kind = :kind, stream_key = :sk, group_key = :gk"
        )
        if expires_at is None:
            expression += " REMOVE expires_at"
        else:
            expression += ", expires_at = :exp"
            values[":exp"] = n(expires_at)
        if guard is None:
            condition = "attribute_not_exists(#ts) OR #ts < :ts"
        else:
            condition = "#version = :guard"
            values[":guard"] = n(guard)
        old = _to_item(self._stamped_update(address, expression, condition, values))
        new = StoredItem(data=data, version=(old.version + 1) if old else 1, ts=ts, expires_at=expires_at)
        return old, new

    def get(self, address: ItemAddress) -> StoredItem | None:
        with mapped_errors():
            response = self._client.get_item(TableName=self._table, Key=self._key(address), ConsistentRead=True)
        return _to_item(response.get("Item"))

    def delete(self, address: ItemAddress, now_ms: int) -> StoredItem | None:
        """Turn the item into a tombstone stamped after it (one request when clocks agree); None if none is live."""
        ts, guard = now_ms, None
        for _ in range(_PUT_ATTEMPTS):
            try:
                return self._tombstone(address, ts, guard)
            except ConflictError as newer:
                current = _to_item(newer.current)
                if current is None or current.deleted:
                    return None
                ts, guard = max(now_ms, current.ts + 1), current.version
        raise StoreError("the item kept changing while it was being deleted")

    def _tombstone(self, address: ItemAddress, ts: int, guard: int | None) -> StoredItem | None:
        values: dict[str, Any] = {":ts": n(ts), ":one": n(1), ":exp": n(ts // 1000 + TOMBSTONE_TTL_SECONDS)}
        condition = "attribute_exists(#data) AND " + ("#ts < :ts" if guard is None else "#version = :guard")
        if guard is not None:
            values[":guard"] = n(guard)
        expression = "SET #ts = :ts, #version = #version + :one, expires_at = :exp REMOVE #data, stream_key, group_key"
        return _to_item(self._stamped_update(address, expression, condition, values))

    def _stamped_update(
        self, address: ItemAddress, expression: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """One conditional UpdateItem; the previous attributes, or ConflictError holding what is stored."""
        with mapped_errors():
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(address),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames={"#data": "data", "#ts": "ts", "#version": "version"},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        attributes: dict[str, Any] | None = response.get("Attributes")
        return attributes

    def replace(self, address: ItemAddress, item: StoredItem, expected_version: int | None) -> None:
        if expected_version is None:
            guard: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            guard = {
                "ConditionExpression": "#version = :expected",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":expected": n(expected_version)},
            }
        with mapped_errors():  # a failed guard: ConflictError
            self._client.put_item(TableName=self._table, Item=self._item_attributes(address, item), **guard)

    def group_items(self, stream_name: str, group_id: str, now_ms: int) -> Iterator[tuple[str, StoredItem]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ConsistentRead": True,
            **_live_item_filter(now_ms),
        }
        request["ExpressionAttributeValues"][":pk"] = s(keys.item_partition(stream_name, group_id))
        for page in self._pages(self._client.query, request):
            for raw in page.get("Items", []):
                item = _to_item(raw)
                if item is not None:
                    yield keys.unprefix(raw["sk"]["S"]), item

    def groups(self, stream_name: str, now_ms: int) -> list[str]:
        """Skip-scan the sparse index: about one small query per live group, never a Scan."""
        found: list[str] = []
        stream_key = keys.stream_index_key(stream_name)
        after: str | None = None
        start: dict[str, Any] | None = None
        while True:
            page = self._group_page(stream_key, after, start, now_ms)
            live = [raw["group_key"]["S"] for raw in page.get("Items", [])]
            if live:
                for group_key in live:
                    if not found or found[-1] != keys.unprefix(group_key):
                        found.append(keys.unprefix(group_key))
                after, start = live[-1], None
            elif "LastEvaluatedKey" in page:
                start = page["LastEvaluatedKey"]
            else:
                return found

    def _group_page(
        self, stream_key: str, after: str | None, start: dict[str, Any] | None, now_ms: int
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_STREAM_INDEX,
            "Limit": _GROUP_PAGE,
            "KeyConditionExpression": "stream_key = :s" + (" AND group_key > :after" if after is not None else ""),
            **_live_filter(now_ms),
        }
        request["ExpressionAttributeValues"][":s"] = s(stream_key)
        if after is not None:
            request["ExpressionAttributeValues"][":after"] = s(after)
        if start is not None:
            request["ExclusiveStartKey"] = start
        with mapped_errors():
            page: dict[str, Any] = self._client.query(**request)
        return page

    def streams(self, now_ms: int) -> dict[str, set[str]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_STREAM_INDEX,
            "ProjectionExpression": "stream_key, group_key",
            **_live_filter(now_ms),
        }
        found: dict[str, set[str]] = {}
        for page in self._pages(self._client.scan, request):
            for raw in page.get("Items", []):
                found.setdefault(keys.unprefix(raw["stream_key"]["S"]), set()).add(keys.unprefix(raw["group_key"]["S"]))
        return found

    def append_event(self, event: StreamEvent) -> None:
        item: dict[str, Any] = {
            "pk": s(keys.event_partition(event.stream_name, event.group_id)),
            "sk": s(f"{event.ts:013d}#{uuid.uuid4().hex}"),
            "kind": s("event"),
            "event_type": s(event.event_type),
            "data": s(event.data),
            "ts": n(event.ts),
            "expires_at": n(event.expires_at),
        }
        if event.event_id is not None:
            item["event_id"] = s(event.event_id)
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=item)

    def _pages(self, operation: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            with mapped_errors():
                page = operation(**request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}
