"""Property: a DynamoDB Streams record of any shape becomes a Change every reader can use, nothing, or an exception.

``change_from_record`` is the one reader of the items table's records (broadcast and dispatch). It may raise on
a record it cannot read: both handlers then report that record as a batch item failure (see
tests/integration/test_property_stream_records.py). What it must never do is return a Change that breaks a
reader later: every Change it returns has string names, a known kind, an integer timestamp, and data that
the frame (and the trigger payload) can carry: JSON, valid Unicode, at most MAX_JSON_DEPTH levels deep.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event as count_outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.adapters.item_changes import change_from_record
from iii_stream.core.changes import Change
from iii_stream.core.json_limits import json_problem
from iii_stream.core.limits import MAX_JSON_DEPTH

RECORDS = settings(max_examples=500, deadline=None, derandomize=True, report_multiple_bugs=False)
NOW_MS = 1_800_000_000_000


# --- strategies -------------------------------------------------------------------------------------------------

any_char = st.characters(exclude_categories=())
odd_text = st.one_of(st.text(any_char, max_size=8), st.sampled_from(["", "\ud800", "I", "E", "#", "#a", "[]"]))
json_texts = st.one_of(
    st.builds(
        json.dumps, st.recursive(st.none() | st.integers() | st.text(), lambda inner: st.lists(inner, max_size=3))
    ),
    st.sampled_from(['{"id":"a","v":1}', "null", "[]", "{}", '"ü"', "1e999", "-0", "9" * 5_000, "NaN", "[1,", "", "x"]),
    st.sampled_from(['"\\ud800"', '{"\\udfff":1}', '["a\\udc00b"]', '"\\u0000"']),  # escapes of lone surrogates
    st.sampled_from([MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 500, 990, 1_000, 100_000]).map(
        lambda depth: "[" * depth + "]" * depth
    ),
    st.text(any_char, max_size=12),
)
attribute_values = st.one_of(
    st.fixed_dictionaries({"S": st.one_of(odd_text, json_texts)}),
    st.fixed_dictionaries(
        {"N": st.one_of(st.sampled_from(["1", "-1", "1.5", "1e400", "x", "", "9" * 5_000]), odd_text)}
    ),
    st.fixed_dictionaries({"BOOL": st.booleans()}),
    st.fixed_dictionaries({"NULL": st.just(True)}),
    st.dictionaries(st.sampled_from(["S", "N", "B", "M", "L"]), st.one_of(st.none(), st.integers(), odd_text)),
    st.one_of(st.none(), st.integers(), odd_text, st.lists(st.integers(), max_size=2)),
)
partition_keys = st.one_of(
    st.sampled_from(['I["s","g"]', 'E["s","g"]']),
    st.builds(
        lambda tag, stream, group: tag + json.dumps([stream, group]),
        st.sampled_from(["I", "E", "C", "X"]),
        odd_text,
        odd_text,
    ),
    st.sampled_from(['I["s","g"]', 'E["s","g"]', 'I["s"]', 'I["s","g","x"]', "I[1,2]", "I", "", 'I["\\ud800","g"]']),
    odd_text,
)


@st.composite
def images(draw: st.DrawFn, pk: str) -> Any:
    """An item or event image: well formed with odd data, or with attributes missing, retyped or added."""
    image: dict[str, Any] = {
        "pk": {"S": pk},
        "sk": {"S": draw(st.sampled_from(["#a", "#", "0001800000000000#ab", ""]))},
        "data": {"S": draw(json_texts)},
        "ts": {"N": str(draw(st.integers(0, 2 * NOW_MS)))},
        "version": {"N": "1"},
    }
    if draw(st.booleans()):
        image["event_type"] = {"S": draw(odd_text)}
    if draw(st.booleans()):
        image["event_id"] = {"S": draw(odd_text)}
    if draw(st.booleans()):
        image["expires_at"] = {"N": str(draw(st.integers(0, 2 * NOW_MS // 1000)))}
    mutations = st.lists(st.sampled_from(["data", "ts", "event_type", "event_id", "expires_at", "sk"]), max_size=2)
    for name in draw(mutations) if draw(st.integers(0, 2)) == 0 else []:
        if draw(st.booleans()):
            image.pop(name, None)
        else:
            image[name] = draw(attribute_values)
    return image if draw(st.integers(0, 12)) else draw(attribute_values)


@st.composite
def records(draw: st.DrawFn) -> Any:
    """A Lambda DynamoDB Streams record, malformed anywhere; now and then not a record at all."""
    pk = draw(partition_keys)
    body: dict[str, Any] = {"Keys": {"pk": {"S": pk}, "sk": {"S": draw(st.sampled_from(["#a", "#", "x", ""]))}}}
    for name in ("NewImage", "OldImage"):
        if draw(st.booleans()):
            body[name] = draw(images(pk))
    body["SequenceNumber"] = draw(st.one_of(st.just("100000000000000000001"), odd_text))
    if draw(st.integers(0, 5)) == 0:
        body["Keys"] = draw(st.one_of(attribute_values, st.dictionaries(odd_text, attribute_values, max_size=2)))
    record: dict[str, Any] = {
        "eventID": draw(st.one_of(st.just("7de3041dd709b024af6f29e4fa13d34c"), odd_text, st.none())),
        "eventName": draw(st.one_of(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]), odd_text, st.none())),
        "eventSource": "aws:dynamodb",
        "dynamodb": body if draw(st.integers(0, 15)) else draw(attribute_values),
    }
    return record if draw(st.integers(0, 30)) else draw(attribute_values)


def _readable(change: Change) -> None:
    """What broadcast and dispatch do with a Change, without a network."""
    assert isinstance(change.stream_name, str) and isinstance(change.group_id, str)
    assert change.item_id is None or isinstance(change.item_id, str)
    assert change.kind in ("create", "update", "delete", "event")
    assert isinstance(change.timestamp, int)
    assert json_problem(change.data) is None, json_problem(change.data)
    assert json.loads(change.frame_bytes()) == change.message()  # the frame (and the trigger payload)


@RECORDS
@given(record=records())
def test_any_record_is_a_usable_change_nothing_or_an_exception(record: Any) -> None:
    try:
        change = change_from_record(record)
    except Exception as exc:  # noqa: BLE001 - the handlers report the record as a batch item failure
        count_outcome(f"raised {type(exc).__name__}")
        return
    count_outcome("nothing" if change is None else change.kind)
    if change is not None:
        _readable(change)


# --- the failures found, one example each -----------------------------------------------------------------------


def _record(data: str, pk: str = 'I["s","g"]') -> dict[str, Any]:
    image = {"pk": {"S": pk}, "sk": {"S": "#a"}, "data": {"S": data}, "ts": {"N": str(NOW_MS)}, "version": {"N": "1"}}
    return {
        "eventID": "e1",
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"pk": image["pk"], "sk": image["sk"]}, "NewImage": image, "SequenceNumber": "1"},
    }


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_data_within_the_limit_is_a_change_that_frames(depth: int) -> None:
    change = change_from_record(_record("[" * depth + "]" * depth))
    assert change is not None
    _readable(change)


def test_data_too_deep_for_pythons_json_raises() -> None:
    # The broadcast handler reports it (and every later record) as a batch item failure; dispatch reports it.
    with pytest.raises(RecursionError):
        change_from_record(_record("[" * 100_000 + "]" * 100_000))


@pytest.mark.parametrize(
    "record",
    [
        _record('"\\ud800"'),  # a lone surrogate escape: the frame cannot be encoded as UTF-8
        _record('{"\\udfff":1}'),
        _record("1", pk='I["\\ud800","g"]'),  # a stream name with a lone surrogate
        _record('{"n":1e999}'),  # json.loads reads infinity; a frame cannot carry it
        _record("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)),  # past the limit every writer enforces
    ],
)
def test_a_record_whose_data_no_frame_can_carry_raises(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        change_from_record(record)
