"""How an item's address becomes DynamoDB keys, and back.

Names may hold any character, ``:`` and ``#`` included, and may be empty; DynamoDB keys may not be
empty. So the partition key is a tag plus the JSON array ``[stream_name, group_id]`` (unambiguous
and reversible), and the sort key and index keys carry a one-character prefix.
"""

from __future__ import annotations

import json
from typing import Final

from iii_stream.core.errors import NameTooLongError

ITEM_TAG: Final = "I"
EVENT_TAG: Final = "E"
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


def item_partition(stream_name: str, group_id: str) -> str:
    return _checked(ITEM_TAG + _group_json(stream_name, group_id), MAX_PARTITION_BYTES, "stream name and group id")


def event_partition(stream_name: str, group_id: str) -> str:
    return _checked(EVENT_TAG + _group_json(stream_name, group_id), MAX_PARTITION_BYTES, "stream name and group id")


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
