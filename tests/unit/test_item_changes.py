"""DynamoDB Streams records of the items table -> Changes (Lambda's event shape, DynamoDB-JSON images)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from iii_stream.adapters.item_changes import change_from_record
from iii_stream.core.changes import Change

NOW_MS = 1_800_000_000_000
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def _group_json(stream: str, group: str) -> str:
    return json.dumps([stream, group], ensure_ascii=False, separators=(",", ":"))


def _item_keys(stream: str, group: str, item_id: str) -> dict[str, Any]:
    return {"pk": {"S": "I" + _group_json(stream, group)}, "sk": {"S": "#" + item_id}}


def _item_image(
    stream: str, group: str, item_id: str, value: Any, ts: int, version: int = 1, expires_at: int | None = None
) -> dict[str, Any]:
    image = {
        **_item_keys(stream, group, item_id),
        "data": {"S": json.dumps(value, separators=(",", ":"))},
        "version": {"N": str(version)},
        "ts": {"N": str(ts)},
        "stream_key": {"S": "#" + stream},
        "group_key": {"S": "#" + group},
    }
    if expires_at is not None:
        image["expires_at"] = {"N": str(expires_at)}
    return image


def _event_keys(stream: str, group: str, ts: int) -> dict[str, Any]:
    return {"pk": {"S": "E" + _group_json(stream, group)}, "sk": {"S": f"{ts:013d}#0123456789abcdef0123456789abcdef"}}


def _event_image(
    stream: str, group: str, event_type: str, value: Any, ts: int, event_id: str | None = None
) -> dict[str, Any]:
    image = {
        **_event_keys(stream, group, ts),
        "kind": {"S": "event"},
        "event_type": {"S": event_type},
        "data": {"S": json.dumps(value)},
        "ts": {"N": str(ts)},
        "expires_at": {"N": str(ts // 1000 + 300)},
    }
    if event_id is not None:
        image["event_id"] = {"S": event_id}
    return image


def _record(
    event_name: str,
    keys: dict[str, Any],
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    user_identity: dict[str, str] | None = None,
) -> dict[str, Any]:
    stream_record: dict[str, Any] = {
        "ApproximateCreationDateTime": NOW_MS // 1000,
        "Keys": keys,
        "SequenceNumber": "100000000000000000001",
        "SizeBytes": 120,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        stream_record["NewImage"] = new
    if old is not None:
        stream_record["OldImage"] = old
    record: dict[str, Any] = {
        "eventID": "7de3041dd709b024af6f29e4fa13d34c",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": stream_record,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Items/stream/2024-01-01T00:00:00.000",
    }
    if user_identity is not None:
        record["userIdentity"] = user_identity
    return record


# --- items ------------------------------------------------------------------------------------------------


def test_an_insert_is_a_create_stamped_with_the_new_ts() -> None:
    new = _item_image("s", "g", "a", {"id": "a", "v": 1}, NOW_MS)

    change = change_from_record(_record("INSERT", _item_keys("s", "g", "a"), new=new))

    assert change == Change("s", "g", "a", "create", {"id": "a", "v": 1}, NOW_MS)


def test_a_modify_is_an_update_stamped_with_the_new_ts() -> None:
    old = _item_image("s", "g", "a", {"id": "a", "v": 1}, NOW_MS, version=1)
    new = _item_image("s", "g", "a", {"id": "a", "v": 2}, NOW_MS + 7, version=2)

    change = change_from_record(_record("MODIFY", _item_keys("s", "g", "a"), new=new, old=old))

    assert change == Change("s", "g", "a", "update", {"id": "a", "v": 2}, NOW_MS + 7)


def test_a_modify_over_an_item_expired_at_the_new_ts_is_a_create() -> None:
    expires_at = NOW_MS // 1000 + 5
    old = _item_image("s", "g", "a", {"id": "a", "v": 1}, NOW_MS, expires_at=expires_at)
    new = _item_image("s", "g", "a", {"id": "a", "v": 2}, expires_at * 1000, version=2)

    change = change_from_record(_record("MODIFY", _item_keys("s", "g", "a"), new=new, old=old))

    assert change == Change("s", "g", "a", "create", {"id": "a", "v": 2}, expires_at * 1000)


def test_a_modify_over_an_item_expiring_later_is_an_update() -> None:
    expires_at = NOW_MS // 1000 + 5
    old = _item_image("s", "g", "a", {"id": "a", "v": 1}, NOW_MS, expires_at=expires_at)
    new = _item_image("s", "g", "a", {"id": "a", "v": 2}, expires_at * 1000 - 1, version=2, expires_at=expires_at)

    change = change_from_record(_record("MODIFY", _item_keys("s", "g", "a"), new=new, old=old))

    assert change is not None
    assert change.kind == "update"


def test_a_remove_is_a_delete_of_the_old_value_one_ms_after_it() -> None:
    old = _item_image("s", "g", "a", {"id": "a", "v": 3}, NOW_MS + 40, version=3)

    change = change_from_record(_record("REMOVE", _item_keys("s", "g", "a"), old=old))

    assert change == Change("s", "g", "a", "delete", {"id": "a", "v": 3}, NOW_MS + 41)


def test_a_ttl_remove_is_a_delete_too() -> None:
    expires_at = NOW_MS // 1000 - 3600
    old = _item_image("s", "g", "a", {"id": "a"}, NOW_MS - 7_200_000, expires_at=expires_at)

    change = change_from_record(_record("REMOVE", _item_keys("s", "g", "a"), old=old, user_identity=TTL_IDENTITY))

    assert change == Change("s", "g", "a", "delete", {"id": "a"}, NOW_MS - 7_200_000 + 1)


def test_a_keys_only_insert_is_nothing() -> None:
    """moto writes one before an UpdateItem that creates an item; AWS never does."""
    keys = _item_keys("s", "g", "a")

    assert change_from_record(_record("INSERT", keys, new=dict(keys))) is None


def test_a_modify_after_a_keys_only_insert_is_a_create() -> None:
    keys = _item_keys("s", "g", "a")
    new = _item_image("s", "g", "a", {"id": "a"}, NOW_MS)

    change = change_from_record(_record("MODIFY", keys, new=new, old=dict(keys)))

    assert change == Change("s", "g", "a", "create", {"id": "a"}, NOW_MS)


def test_a_remove_without_an_old_value_is_nothing() -> None:
    keys = _item_keys("s", "g", "a")

    assert change_from_record(_record("REMOVE", keys, old=dict(keys))) is None


@pytest.mark.parametrize("value", [None, 0, "", [], {}, [1, "x", {"n": None}], "ü ☃", 1.5, True])
def test_any_json_value_survives(value: Any) -> None:
    new = _item_image("s", "g", "a", value, NOW_MS)

    change = change_from_record(_record("INSERT", _item_keys("s", "g", "a"), new=new))

    assert change is not None
    assert change.data == value


@pytest.mark.parametrize(
    ("stream", "group", "item_id"),
    [
        ('a:b#"c', '#:"', 'x#y:"z'),
        ("s", "", ""),
        ("::", "##", "#"),
        ('["s","g"]', "\\", '"'),
        ("ü", "☃", "日本"),
    ],
)
def test_names_with_any_characters_decode_exactly(stream: str, group: str, item_id: str) -> None:
    new = _item_image(stream, group, item_id, {"id": item_id}, NOW_MS)
    old = _item_image(stream, group, item_id, {"id": item_id, "old": True}, NOW_MS - 1)
    keys = _item_keys(stream, group, item_id)

    created = change_from_record(_record("INSERT", keys, new=new))
    deleted = change_from_record(_record("REMOVE", keys, old=old))

    assert created == Change(stream, group, item_id, "create", {"id": item_id}, NOW_MS)
    assert deleted == Change(stream, group, item_id, "delete", {"id": item_id, "old": True}, NOW_MS)


def test_the_frame_of_a_decoded_change() -> None:
    new = _item_image("s", "g", "a", {"id": "a"}, NOW_MS)

    change = change_from_record(_record("INSERT", _item_keys("s", "g", "a"), new=new))

    assert change is not None
    assert json.loads(change.frame_bytes()) == {
        "type": "stream",
        "timestamp": NOW_MS,
        "streamName": "s",
        "groupId": "g",
        "id": "a",
        "event": {"type": "create", "data": {"id": "a"}},
    }


# --- stream::send events ---------------------------------------------------------------------------------------


def test_an_event_insert_is_an_event_change_with_its_type_and_id() -> None:
    new = _event_image("s", "g", "typing", {"user": "u1"}, NOW_MS, event_id="a")

    change = change_from_record(_record("INSERT", _event_keys("s", "g", NOW_MS), new=new))

    assert change == Change("s", "g", "a", "event", {"user": "u1"}, NOW_MS, event_type="typing")
    assert json.loads(change.frame_bytes())["event"] == {
        "type": "event",
        "event": {"type": "typing", "data": {"user": "u1"}},
    }


def test_an_event_without_an_id_has_a_null_id() -> None:
    new = _event_image("s", "g", "typing", None, NOW_MS)

    change = change_from_record(_record("INSERT", _event_keys("s", "g", NOW_MS), new=new))

    assert change == Change("s", "g", None, "event", None, NOW_MS, event_type="typing")


def test_an_event_with_odd_names_decodes_exactly() -> None:
    stream, group = 'a:b#"c', '#:"'
    new = _event_image(stream, group, 'ty:pe#"', [1], NOW_MS, event_id='i:d#"')

    change = change_from_record(_record("INSERT", _event_keys(stream, group, NOW_MS), new=new))

    assert change == Change(stream, group, 'i:d#"', "event", [1], NOW_MS, event_type='ty:pe#"')


def test_the_ttl_removal_of_an_event_is_nothing() -> None:
    old = _event_image("s", "g", "typing", {"user": "u1"}, NOW_MS, event_id="a")
    record = _record("REMOVE", _event_keys("s", "g", NOW_MS), old=old, user_identity=TTL_IDENTITY)

    assert change_from_record(record) is None


def test_a_record_without_keys_is_nothing() -> None:
    assert change_from_record({"eventName": "INSERT", "dynamodb": {}}) is None


# --- timestamps across a delete -------------------------------------------------------------------------------


def _tombstone(stream: str, group: str, item_id: str, ts: int, version: int) -> dict[str, Any]:
    return {
        **_item_keys(stream, group, item_id),
        "version": {"N": str(version)},
        "ts": {"N": str(ts)},
        "expires_at": {"N": str(ts // 1000 + 3600)},
    }


def test_a_delete_is_stamped_by_its_tombstone_and_a_re_create_continues_after_it() -> None:
    # GIVEN set, delete, set of one item, all within one millisecond of the writers' clocks
    keys = _item_keys("s", "g", "a")
    written = _item_image("s", "g", "a", {"id": "a", "v": 1}, NOW_MS, version=1)
    tombstone = _tombstone("s", "g", "a", NOW_MS + 1, version=2)
    recreated = _item_image("s", "g", "a", {"id": "a", "v": 2}, NOW_MS + 2, version=3)
    # WHEN the table's stream carries the tombstone and the re-created item
    deleted = change_from_record(_record("MODIFY", keys, new=tombstone, old=written))
    created = change_from_record(_record("MODIFY", keys, new=recreated, old=tombstone))
    # THEN the delete carries the removed value at the tombstone's stamp, and the create comes after it
    assert deleted is not None and created is not None
    assert (deleted.kind, deleted.data, deleted.timestamp) == ("delete", {"id": "a", "v": 1}, NOW_MS + 1)
    assert (created.kind, created.timestamp) == ("create", NOW_MS + 2)
    assert change_from_record(_record("REMOVE", keys, old=tombstone)) is None  # the tombstone's TTL sweep
