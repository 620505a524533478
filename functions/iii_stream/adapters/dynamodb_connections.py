"""The ConnectionStore port on DynamoDB (the Connections table of template.yaml).

Two kinds of records share the table (their keys: ``adapters/keys.py``; their rows: ``connection_row`` and
``subscription_row`` below):
- a connection: its auth ``context`` (JSON text), ``subs``, a map of subscription id ->
  ``[stream_name, group_id, item_id]`` (JSON text), and when the sweeper checks it;
- a subscription, in its group's partition: so one strongly consistent Query finds every subscriber of a group.
Removing a subscription row with ``ReturnValues=ALL_OLD`` decides who fires its leave: only the
caller that actually deleted it gets the row back, so racing clean-ups never fire a leave twice.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any, Final

from iii_stream.adapters import keys
from iii_stream.adapters.dynamodb_common import mapped_errors, n, s
from iii_stream.core.errors import ConflictError, RemovalStoppedError, StoreError
from iii_stream.core.frames import dumps
from iii_stream.core.limits import API_GATEWAY_IDLE_TIMEOUT_MS
from iii_stream.core.ports import Connection, Subscription, SyncMark

# API Gateway closes every connection after 2 hours; records outlive it by a day, then DynamoDB TTL sweeps them.
RECORD_TTL_SECONDS: Final = 2 * 3600 + 24 * 3600
# The sweeper's index (by_due): connections spread over a few partitions, sorted by when to check them.
DUE_INDEX: Final = "by_due"
SWEEP_BUCKETS: Final = 8
FIRST_CHECK_MS: Final = API_GATEWAY_IDLE_TIMEOUT_MS

_connection_key = keys.connection_key
_subscription_key = keys.subscription_key


def connection_row(connection: Connection) -> dict[str, Any]:
    """The connection's record, as save_connection writes it."""
    row = {
        **_connection_key(connection.connection_id),
        "connected_at": n(connection.connected_at),
        "subs": {"M": {}},
        "expires_at": n(connection.connected_at // 1000 + RECORD_TTL_SECONDS),
        "sweep_bucket": s(_bucket(connection.connection_id)),
        "due_at": n(connection.connected_at + FIRST_CHECK_MS),
    }
    if connection.context is not None:
        row["context"] = s(dumps(connection.context))
    return row


def subscription_row(subscription: Subscription, expires_at: int) -> dict[str, Any]:
    """A subscription's record, as add_subscription writes it (``expires_at``: epoch seconds)."""
    row = {
        **_subscription_key(
            subscription.connection_id, subscription.subscription_id, subscription.stream_name, subscription.group_id
        ),
        "expires_at": n(expires_at),
    }
    if subscription.item_id is not None:
        row["item_id"] = s(subscription.item_id)
    if subscription.context is not None:
        row["context"] = s(dumps(subscription.context))
    if subscription.synced is not None:
        row["synced"] = s(sync_text(subscription.synced))
    if subscription.join_id:
        row["join_id"] = s(subscription.join_id)
    return row


def sync_text(mark: SyncMark) -> str:
    """A sync mark as the subscription row's ``synced`` holds it."""
    return dumps({"read_at": mark.read_at, "recent": mark.recent, **({"pending": True} if mark.pending else {})})


def subs_entry(subscription: Subscription) -> dict[str, str]:
    """The subscription's entry in its connection's ``subs`` map."""
    return s(dumps([subscription.stream_name, subscription.group_id, subscription.item_id]))


def _subscription_from_row(raw: dict[str, Any]) -> Subscription:
    connection_id, subscription_id = keys.parse_subscription_sort(raw["sk"]["S"])
    _, stream_name, group_id = keys.parse_partition(raw["pk"]["S"])
    context = json.loads(raw["context"]["S"]) if "context" in raw else None
    item_id = raw["item_id"]["S"] if "item_id" in raw else None
    join_id = raw["join_id"]["S"] if "join_id" in raw else ""
    return Subscription(connection_id, subscription_id, stream_name, group_id, item_id, context, join_id=join_id)


class DynamoConnectionStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def save_connection(self, connection: Connection) -> None:
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=connection_row(connection))

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
        entry = subs_entry(subscription)
        row = subscription_row(subscription, _expiry_from_now())  # first: names its key cannot hold write nothing
        try:
            with mapped_errors():
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_connection_key(subscription.connection_id),
                    UpdateExpression="SET subs.#sid = :entry",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#sid": subscription.subscription_id},
                    ExpressionAttributeValues={":entry": entry},
                    ReturnValues="UPDATED_OLD",
                )
        except ConflictError:
            return False
        replaced = response.get("Attributes", {}).get("subs", {}).get("M", {}).get(subscription.subscription_id)
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
        except ConflictError:
            return None
        entry = response.get("Attributes", {}).get("subs", {}).get("M", {}).get(subscription_id)
        if entry is None:
            return None
        stream_name, group_id, _ = json.loads(entry["S"])
        return self._delete_row(connection_id, subscription_id, stream_name, group_id)

    def remove_connection(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        """The subscription rows go first, the connection row last: if this stops half-way (a throttled table),
        the connection row is still there for the sweeper to finish the job (and fire the remaining leaves)."""
        targets: dict[str, tuple[str, str]] = {
            s.subscription_id: (s.stream_name, s.group_id) for s in known or [] if s.connection_id == connection_id
        }
        try:
            with mapped_errors():
                response = self._client.update_item(
                    TableName=self._table,
                    Key=_connection_key(connection_id),
                    UpdateExpression="SET closing_at = :now",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":now": n(int(time.time() * 1000))},
                    ReturnValues="ALL_NEW",
                )
            targets.update(_subs_of(response))
        except ConflictError:
            pass  # the connection row is gone already: only ``known`` rows may be left
        removed: list[Subscription] = []
        self._delete_rows(connection_id, targets, removed)
        try:
            with mapped_errors():
                response = self._client.delete_item(
                    TableName=self._table, Key=_connection_key(connection_id), ReturnValues="ALL_OLD"
                )
        except StoreError as exc:
            raise RemovalStoppedError(str(exc), removed) from exc
        # Joins that landed while the rows above were removed.
        late = {sid: where for sid, where in _subs_of(response).items() if sid not in targets}
        self._delete_rows(connection_id, late, removed)
        return removed

    def _delete_rows(self, connection_id: str, rows: dict[str, tuple[str, str]], removed: list[Subscription]) -> None:
        """Delete subscription rows, adding those this call removed to ``removed``; a failing table stops it with
        RemovalStoppedError (carrying every subscription removed so far: their leaves are owed)."""
        for subscription_id, (stream_name, group_id) in rows.items():
            try:
                subscription = self._delete_row(connection_id, subscription_id, stream_name, group_id)
            except StoreError as exc:
                raise RemovalStoppedError(str(exc), removed) from exc
            if subscription is not None:
                removed.append(subscription)

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        """Who to post to: only the keys and item ids are read (the context is for leaves, read when removed)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ConsistentRead": True,
            "ProjectionExpression": "sk, item_id, synced",
            "ExpressionAttributeValues": {":pk": s(keys.group_partition(keys.SUBSCRIPTION_TAG, stream_name, group_id))},
        }
        found: list[Subscription] = []
        while True:
            with mapped_errors():
                page = self._client.query(**request)
            for raw in page.get("Items", []):
                connection_id, subscription_id = keys.parse_subscription_sort(raw["sk"]["S"])
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
                    ExpressionAttributeValues={":mark": s(sync_text(mark))},
                )
        except ConflictError:
            pass  # already removed (a racing leave): nothing to mark

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
            found.extend(keys.parse_connection_key(raw["pk"]["S"]) for raw in page.get("Items", []))
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
        except ConflictError:
            pass  # the connection is already gone

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


def _subs_of(response: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Subscription id -> (stream, group) of a connection row in an answer's ``Attributes``."""
    found: dict[str, tuple[str, str]] = {}
    for subscription_id, entry in response.get("Attributes", {}).get("subs", {}).get("M", {}).items():
        stream_name, group_id, _ = json.loads(entry["S"])
        found[subscription_id] = (stream_name, group_id)
    return found


def _sync_mark(text: str) -> SyncMark:
    raw = json.loads(text)
    recent = {str(k): int(v) for k, v in raw["recent"].items()}
    return SyncMark(int(raw["read_at"]), recent, pending=raw.get("pending") is True)


def _bucket(connection_id: str) -> str:
    return f"b{zlib.crc32(connection_id.encode()) % SWEEP_BUCKETS}"


def _expiry_from_now() -> int:
    return int(time.time()) + RECORD_TTL_SECONDS
