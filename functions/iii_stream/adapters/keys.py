"""Every DynamoDB key the service writes, and back: items and events (items table), connections and
subscriptions (connections table).

Names may hold any character, ``:`` and ``#`` included, and may be empty; DynamoDB keys may not be
empty. So a group's partition key is a tag plus the JSON array ``[stream_name, group_id]`` (unambiguous
and reversible), and the sort key and index keys carry a one-character prefix.
"""

from __future__ import annotations

import json
from typing import Final

from iii_stream.core.errors import NameTooLongError

ITEM_TAG: Final = "I"
EVENT_TAG: Final = "E"
SUBSCRIPTION_TAG: Final = "G"  # a group's subscriptions (connections table)
CONNECTION_TAG: Final = "C"
CONNECTION_SORT: Final = "C"
KEY_PREFIX: Final = "#"
# DynamoDB: partition keys up to 2048 bytes, sort keys up to 1024 bytes (table and index keys).
MAX_PARTITION_BYTES: Final = 2048
MAX_SORT_BYTES: Final = 1024


def _group_json(stream_name: str, group_id: str) -> str:
    return json.dumps([stream_name, group_id], ensure_ascii=False, separators=(",", ":"))


def _checked(value: str, limit: int, what: str) -> str:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise NameTooLongError(f"The {what} is too long: its key would be {size} bytes, DynamoDB allows {limit}.")
    return value


def group_partition(tag: str, stream_name: str, group_id: str) -> str:
    """A group's partition key in one of the tables: ``tag`` is ITEM_TAG, EVENT_TAG or SUBSCRIPTION_TAG."""
    return _checked(tag + _group_json(stream_name, group_id), MAX_PARTITION_BYTES, "stream name and group id")


def item_partition(stream_name: str, group_id: str) -> str:
    return group_partition(ITEM_TAG, stream_name, group_id)


def event_partition(stream_name: str, group_id: str) -> str:
    return group_partition(EVENT_TAG, stream_name, group_id)


def connection_key(connection_id: str) -> dict[str, dict[str, str]]:
    """The connection's own row: its context, its subscriptions' index and when the sweeper checks it."""
    return {"pk": {"S": CONNECTION_TAG + connection_id}, "sk": {"S": CONNECTION_SORT}}


def subscription_key(
    connection_id: str, subscription_id: str, stream_name: str, group_id: str
) -> dict[str, dict[str, str]]:
    """A subscription's row, in its group's partition: broadcast finds a group's subscribers with one Query."""
    return {
        "pk": {"S": group_partition(SUBSCRIPTION_TAG, stream_name, group_id)},
        "sk": {"S": f"{connection_id}#{subscription_id}"},
    }


def parse_connection_key(pk: str) -> str:
    """The connection id of a connection row's partition key."""
    return pk[len(CONNECTION_TAG) :]


def parse_subscription_sort(sk: str) -> tuple[str, str]:
    """``(connection_id, subscription_id)`` of a subscription row's sort key."""
    connection_id, _, subscription_id = sk.partition("#")
    return connection_id, subscription_id


def item_sort(item_id: str) -> str:
    return _checked(KEY_PREFIX + item_id, MAX_SORT_BYTES, "item id")


def stream_index_key(stream_name: str) -> str:
    return _checked(KEY_PREFIX + stream_name, MAX_PARTITION_BYTES, "stream name")


def group_index_key(group_id: str) -> str:
    return _checked(KEY_PREFIX + group_id, MAX_SORT_BYTES, "group id")


def unprefix(key: str) -> str:
    return key[len(KEY_PREFIX) :]


def parse_partition(pk: str) -> tuple[str, str, str]:
    """Return ``(tag, stream_name, group_id)`` of a partition key."""
    stream_name, group_id = json.loads(pk[1:])
    return pk[0], stream_name, group_id
