"""The ConnectionStore port on DynamoDB (the Connections table of template.yaml).

Two kinds of records share the table:
- a connection: ``pk`` = ``C`` + connection id, ``sk`` = ``C``; its auth ``context`` (JSON text) and
  ``subs``, a map of subscription id -> ``[stream_name, group_id, item_id]`` (JSON text);
- a subscription: ``pk`` = ``G`` + JSON ``[stream_name, group_id]``, ``sk`` = connection id + ``#`` +
  subscription id; so one strongly consistent Query finds every subscriber of a group.
Removing a subscription row with ``ReturnValues=ALL_OLD`` decides who fires its leave: only the
caller that actually deleted it gets the row back, so racing clean-ups never fire a leave twice.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any, Final

from iii_stream.adapters.dynamodb_common import is_condition_failure, mapped_errors, s
from iii_stream.core.errors import StoreError
from iii_stream.core.frames import dumps
from iii_stream.core.ports import Connection, Subscription, SyncMark

# API Gateway closes every connection after 2 hours; records outlive it by a day, then DynamoDB TTL sweeps them.
RECORD_TTL_SECONDS: Final = 2 * 3600 + 24 * 3600
_CONNECTION_SORT: Final = "C"
# The sweeper's index (by_due): connections spread over a few partitions, sorted by when to check them.
DUE_INDEX: Final = "by_due"
SWEEP_BUCKETS: Final = 8
FIRST_CHECK_MS: Final = 10 * 60 * 1000  # API Gateway's idle timeout


def _connection_key(connection_id: str) -> dict[str, Any]:
    return {"pk": s("C" + connection_id), "sk": s(_CONNECTION_SORT)}


def _group_partition(stream_name: str, group_id: str) -> str:
    return "G" + json.dumps([stream_name, group_id], ensure_ascii=False, separators=(",", ":"))


def _subscription_key(connection_id: str, subscription_id: str, stream_name: str, group_id: str) -> dict[str, Any]:
    return {"pk": s(_group_partition(stream_name, group_id)), "sk": s(f"{connection_id}#{subscription_id}")}


def _subscription_from_row(raw: dict[str, Any]) -> Subscription:
    connection_id, _, subscription_id = raw["sk"]["S"].partition("#")
    stream_name, group_id = json.loads(raw["pk"]["S"][1:])
    context = json.loads(raw["context"]["S"]) if "context" in raw else None
    item_id = raw["item_id"]["S"] if "item_id" in raw else None
    return Subscription(connection_id, subscription_id, stream_name, group_id, item_id, context)


class DynamoConnectionStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def save_connection(self, connection: Connection) -> None:
        item = {
            **_connection_key(connection.connection_id),
            "connected_at": {"N": str(connection.connected_at)},
            "subs": {"M": {}},
            "expires_at": {"N": str(connection.connected_at // 1000 + RECORD_TTL_SECONDS)},
            "sweep_bucket": s(_bucket(connection.connection_id)),
            "due_at": {"N": str(connection.connected_at + FIRST_CHECK_MS)},
        }
        if connection.context is not None:
            item["context"] = s(dumps(connection.context))
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=item)

    def get_connection(self, connection_id: str) -> Connection | None:
        with mapped_errors():
            raw = self._client.get_item(
                TableName=self._table, Key=_connection_key(connection_id), ConsistentRead=True
            ).get("Item")
        if not raw:
            return None
        context = json.loads(raw["context"]["S"]) if "context" in raw else None
        return Connection(connection_id, int(raw["connected_at"]["N"]), context)

    def add_subscription(self, subscription: Subscription) -> bool:
        entry = dumps([subscription.stream_name, subscription.group_id, subscription.item_id])
        try:
            with mapped_errors():
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_connection_key(subscription.connection_id),
                    UpdateExpression="SET subs.#sid = :entry",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#sid": subscription.subscription_id},
                    ExpressionAttributeValues={":entry": s(entry)},
                    ReturnValues="UPDATED_OLD",
                )
        except StoreError as exc:
            if is_condition_failure(exc):
                return False
            raise
        replaced = response.get("Attributes", {}).get("subs", {}).get("M", {}).get(subscription.subscription_id)
        row = {
            **_subscription_key(
                subscription.connection_id,
                subscription.subscription_id,
                subscription.stream_name,
                subscription.group_id,
            ),
            "expires_at": {"N": str(_expiry_from_now())},
        }
        if subscription.item_id is not None:
            row["item_id"] = s(subscription.item_id)
        if subscription.context is not None:
            row["context"] = s(dumps(subscription.context))
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=row)
        if replaced is not None:
            stream_name, group_id, _ = json.loads(replaced["S"])
            if (stream_name, group_id) != (subscription.stream_name, subscription.group_id):
                self._delete_row(subscription.connection_id, subscription.subscription_id, stream_name, group_id)
        return True

    def remove_subscription(self, connection_id: str, subscription_id: str) -> Subscription | None:
        try:
            with mapped_errors():
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_connection_key(connection_id),
                    UpdateExpression="REMOVE subs.#sid",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#sid": subscription_id},
                    ReturnValues="UPDATED_OLD",
                )
        except StoreError as exc:
            if is_condition_failure(exc):
                return None
            raise
        entry = response.get("Attributes", {}).get("subs", {}).get("M", {}).get(subscription_id)
        if entry is None:
            return None
        stream_name, group_id, _ = json.loads(entry["S"])
        return self._delete_row(connection_id, subscription_id, stream_name, group_id)

    def remove_connection(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        with mapped_errors():
            response = self._client.delete_item(
                TableName=self._table, Key=_connection_key(connection_id), ReturnValues="ALL_OLD"
            )
        targets: dict[str, tuple[str, str]] = {
            s.subscription_id: (s.stream_name, s.group_id) for s in known or [] if s.connection_id == connection_id
        }
        for subscription_id, entry in response.get("Attributes", {}).get("subs", {}).get("M", {}).items():
            stream_name, group_id, _ = json.loads(entry["S"])
            targets[subscription_id] = (stream_name, group_id)
        removed = [self._delete_row(connection_id, sid, stream, group) for sid, (stream, group) in targets.items()]
        return [subscription for subscription in removed if subscription is not None]

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        """Who to post to: only the keys and item ids are read (the context is for leaves, read when removed)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ConsistentRead": True,
            "ProjectionExpression": "sk, item_id, synced",
            "ExpressionAttributeValues": {":pk": s(_group_partition(stream_name, group_id))},
        }
        found: list[Subscription] = []
        while True:
            with mapped_errors():
                page = self._client.query(**request)
            for raw in page.get("Items", []):
                connection_id, _, subscription_id = raw["sk"]["S"].partition("#")
                item_id = raw["item_id"]["S"] if "item_id" in raw else None
                synced = _sync_mark(raw["synced"]["S"]) if "synced" in raw else None
                found.append(Subscription(connection_id, subscription_id, stream_name, group_id, item_id, None, synced))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_synced(self, subscription: Subscription, mark: SyncMark) -> None:
        key = _subscription_key(
            subscription.connection_id, subscription.subscription_id, subscription.stream_name, subscription.group_id
        )
        try:
            with mapped_errors():
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="SET synced = :mark",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":mark": s(dumps({"read_at": mark.read_at, "recent": mark.recent}))},
                )
        except StoreError as exc:
            if not is_condition_failure(exc):  # already removed (a racing leave): nothing to mark
                raise

    def due_connections(self, now_ms: int, limit: int) -> list[str]:
        found: list[str] = []
        for bucket in range(SWEEP_BUCKETS):
            with mapped_errors():
                page = self._client.query(
                    TableName=self._table,
                    IndexName=DUE_INDEX,
                    Limit=limit,
                    KeyConditionExpression="sweep_bucket = :b AND due_at <= :now",
                    ExpressionAttributeValues={":b": s(f"b{bucket}"), ":now": {"N": str(now_ms)}},
                )
            found.extend(raw["pk"]["S"][1:] for raw in page.get("Items", []))
        return found

    def postpone(self, connection_id: str, due_at_ms: int) -> None:
        try:
            with mapped_errors():
                self._client.update_item(
                    TableName=self._table,
                    Key=_connection_key(connection_id),
                    UpdateExpression="SET due_at = :due",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":due": {"N": str(due_at_ms)}},
                )
        except StoreError as exc:
            if not is_condition_failure(exc):
                raise

    def _delete_row(
        self, connection_id: str, subscription_id: str, stream_name: str, group_id: str
    ) -> Subscription | None:
        with mapped_errors():
            response = self._client.delete_item(
                TableName=self._table,
                Key=_subscription_key(connection_id, subscription_id, stream_name, group_id),
                ReturnValues="ALL_OLD",
            )
        raw = response.get("Attributes")
        return _subscription_from_row(raw) if raw else None


def _sync_mark(text: str) -> SyncMark:
    raw = json.loads(text)
    return SyncMark(int(raw["read_at"]), {str(k): int(v) for k, v in raw["recent"].items()})


def _bucket(connection_id: str) -> str:
    return f"b{zlib.crc32(connection_id.encode()) % SWEEP_BUCKETS}"


def _expiry_from_now() -> int:
    return int(time.time()) + RECORD_TTL_SECONDS
