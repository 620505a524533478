"""Property: no Lambda event breaks a ``stream::*`` function; a failed call writes nothing, a good one round-trips.

Payloads of every shape (wrong types, missing and extra fields, odd and huge strings, lone surrogates, NaN and
infinities, integers past 2^63 and past f64, values nested 127/128/129 levels and far beyond, empty names) and
events of the wrong shape go through the Lambda contract (``invocation_error`` then ``STREAM_FUNCTIONS.invoke``,
as ``stream_functions.handler`` does) over the in-memory store. Every answer is ``{"result"}`` or
``{"error": {"code", "message"}}`` with a code from the README's error table, and the answer can be sent by
the python3.12 runtime (JSON, UTF-8).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event as count_outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.core import frames
from iii_stream.core.json_limits import json_problem
from iii_stream.core.limits import MAX_JSON_DEPTH, MAX_NAME_BYTES
from iii_stream.core.models import invocation_error
from iii_stream.core.service import STREAM_FUNCTIONS, StreamService

from tests.conftest import FakeLambdaContext
from tests.fakes import FixedClock, MemoryItemStore

PAYLOADS = settings(max_examples=300, deadline=None, derandomize=True)
UPDATES = settings(max_examples=300, deadline=None, derandomize=True)
EVENTS = settings(max_examples=150, deadline=None, derandomize=True)
FUNCTION_IDS = sorted(STREAM_FUNCTIONS)
KEY = {"stream_name": "s", "group_id": "g", "item_id": "i"}


def _documented_codes() -> set[str]:
    """The codes in the first column of README's "Error codes" table."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {code for cell in rows for code in re.findall(r"`([A-Za-z_]+)`", cell)}


DOCUMENTED = _documented_codes()


def test_the_error_table_lists_the_codes() -> None:
    assert {"deserialization_error", "invalid_invocation", "function_not_found", "STREAM_SET_ERROR"} <= DOCUMENTED
    assert {"STREAM_PAYLOAD_TOO_LARGE", "STREAM_NAME_TOO_LONG", "STREAM_GET_GROUP_ERROR"} <= DOCUMENTED


# --- strategies -------------------------------------------------------------------------------------------------

any_char = st.characters(exclude_categories=())  # lone surrogates, NUL and other controls included
odd_text = st.one_of(
    st.text(any_char, max_size=16),
    st.sampled_from(["", "\ud800", "a\udfffb", "\udc00\ud800", "\x00", "\u2028", "\ufeff", "😀", "\U0010ffff"]),
)
names = st.one_of(
    st.sampled_from(["s", "g", "i", "", " ", "a:b#c", "😀", "null", "x" * MAX_NAME_BYTES, "é" * 257, "\ud800"]),
    odd_text,
)
huge_strings = st.sampled_from([1, 1_000, 140_000]).map(lambda size: "ü" * size)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.sampled_from([-(2**63) - 1, 2**200, -(2**1023), 2**1024]),
    st.sampled_from([400, 4_400]).map(lambda digits: 10**digits),  # past f64; past Python's 4,300-digit str()
    st.floats(),  # NaN and the infinities included
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3), max_leaves=10
)
depths = st.one_of(
    st.sampled_from([MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 1_000, 100_000]),
    st.integers(min_value=0, max_value=300),
)


def nest(depth: int, kind: str = "list", leaf: Any = 1) -> Any:
    """A value ``depth`` levels deep: lists, objects, or both in turn."""
    value = leaf
    for level in range(depth):
        as_dict = kind == "dict" or (kind == "mixed" and level % 2)
        value = {"k": value} if as_dict else [value]
    return value


deep_values = st.builds(nest, depths, st.sampled_from(["list", "dict", "mixed"]), st.sampled_from([1, "\ud800", None]))
values = st.one_of(json_values, deep_values, huge_strings)
FIELDS = ("stream_name", "group_id", "item_id", "data", "type", "id", "ops", "ttl")


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    """A plausible input with some fields dropped, retyped or added; now and then no object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    payload: dict[str, Any] = {
        "stream_name": draw(names),
        "group_id": draw(names),
        "item_id": draw(names),
        "data": draw(values),
        "type": draw(names),
        "ops": draw(st.lists(ops(), max_size=3)),
    }
    if draw(st.booleans()):
        payload["id"] = draw(st.one_of(st.none(), names))
    if draw(st.booleans()):
        payload["ttl"] = draw(st.one_of(st.integers(-1, 400_000_000), numbers, odd_text))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        payload.pop(field, None)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        payload[field] = draw(values)
    payload.update(draw(st.dictionaries(odd_text, values, max_size=2)))  # unknown fields
    return payload


paths = st.one_of(
    st.none(),
    odd_text,
    st.sampled_from(["", "a", "n", "__proto__", "x" * 300]),
    st.lists(st.sampled_from(["a", "b", "", "constructor"]), max_size=3),
    st.integers(0, 40).map(lambda n: ["p"] * n),
    values,
)


@st.composite
def ops(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove", "bogus", None]))
    op: dict[str, Any] = {"type": kind} if kind is not None else {}
    if draw(st.integers(0, 4)):
        op["path"] = draw(paths)
    if kind in ("increment", "decrement") or draw(st.integers(0, 5)) == 0:
        op["by"] = draw(st.one_of(st.integers(-(2**64), 2**64), st.booleans(), st.floats(), odd_text))
    if draw(st.integers(0, 4)):
        op["value"] = draw(st.one_of(values, st.dictionaries(st.sampled_from(["a", "b", "__proto__"]), values)))
    return op if draw(st.integers(0, 15)) else draw(values)


keys = st.one_of(st.sampled_from(["", "a", "b", "n", "__proto__", "x" * 257]), st.text(max_size=6))
good_values = st.one_of(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text()),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=10,
    ),
    st.builds(nest, st.integers(MAX_JSON_DEPTH - 40, MAX_JSON_DEPTH), st.sampled_from(["list", "dict", "mixed"])),
)


@st.composite
def good_ops(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed op of any kind, with any path (nested ones up to 34 segments) and value."""
    kind = draw(st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove"]))
    nested = st.one_of(st.none(), keys, st.lists(keys, max_size=4), st.integers(0, 34).map(lambda n: ["p"] * n))
    op: dict[str, Any] = {"type": kind, "path": draw(nested if kind in ("merge", "append") else keys)}
    if kind in ("increment", "decrement"):
        op["by"] = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "merge":
        op["value"] = draw(st.one_of(st.dictionaries(keys, good_values, max_size=3), good_values))
    elif kind != "remove":
        op["value"] = draw(good_values)
    return op


# --- the contract -----------------------------------------------------------------------------------------------


def _service() -> tuple[StreamService, MemoryItemStore]:
    store = MemoryItemStore()
    return StreamService(store, FixedClock()), store


def _invoke(service: StreamService, event: Any) -> dict[str, Any]:
    """What ``stream_functions.handler`` does with the event (without its logging and wiring)."""
    return invocation_error(event) or STREAM_FUNCTIONS.invoke(service, event)


def _snapshot(store: MemoryItemStore) -> tuple[dict[Any, Any], list[Any]]:
    return dict(store.items), list(store.events)


def _assert_answer(response: Any) -> None:
    assert isinstance(response, dict) and len(response) == 1, response
    count_outcome(response["error"]["code"] if "error" in response else "result")  # --hypothesis-show-statistics
    # The python3.12 runtime encodes with ensure_ascii=False, then as UTF-8: no lone surrogate may be left.
    json.dumps(response, ensure_ascii=False, allow_nan=False).encode("utf-8")
    if "error" in response:
        error = response["error"]
        assert set(error) == {"code", "message"}, error
        assert error["code"] in DOCUMENTED, error
        assert isinstance(error["message"], str) and error["message"]
    else:
        assert "result" in response


def _assert_round_trip(service: StreamService, function_id: str, payload: dict[str, Any], result: Any) -> None:
    key = {field: payload[field] for field in ("stream_name", "group_id", "item_id")}
    stored = _invoke(service, {"function_id": "stream::get", "payload": key})
    expected = payload["data"] if function_id == "stream::set" else result["new_value"]
    assert frames.dumps(stored["result"]) == frames.dumps(expected)
    assert json_problem(expected) is None


@PAYLOADS
@given(function_id=st.sampled_from(FUNCTION_IDS), payload=payloads())
def test_any_payload_gets_a_documented_answer_and_a_failure_writes_nothing(function_id: str, payload: Any) -> None:
    service, store = _service()
    _invoke(service, {"function_id": "stream::set", "payload": {**KEY, "data": {"n": 1, "a": [1]}}})
    before = _snapshot(store)
    response = _invoke(service, {"function_id": function_id, "payload": payload})
    _assert_answer(response)
    if "error" in response:
        assert _snapshot(store) == before, response
    elif function_id in ("stream::set", "stream::update"):
        _assert_round_trip(service, function_id, payload, response["result"])
    elif function_id == "stream::send":
        assert json.loads(store.events[-1].data) == payload["data"]


@UPDATES
@given(
    start=st.one_of(st.none(), good_values, json_values, deep_values),
    update_ops=st.one_of(st.lists(good_ops(), max_size=6), st.lists(st.one_of(good_ops(), ops()), max_size=3)),
)
def test_any_update_ops_get_a_documented_answer(start: Any, update_ops: Any) -> None:
    service, store = _service()
    if start is not None:
        _invoke(service, {"function_id": "stream::set", "payload": {**KEY, "data": start}})
    before = _snapshot(store)
    response = _invoke(service, {"function_id": "stream::update", "payload": {**KEY, "ops": update_ops}})
    _assert_answer(response)
    if "error" in response:
        assert _snapshot(store) == before, response
    else:
        _assert_round_trip(service, "stream::update", KEY, response["result"])
        for error in response["result"].get("errors", []):
            assert set(error) == {"op_index", "code", "message", "doc_url"}


@EVENTS
@given(
    event=st.one_of(
        values,
        st.dictionaries(odd_text, values, max_size=3),
        st.fixed_dictionaries(
            {"function_id": st.one_of(st.sampled_from(FUNCTION_IDS), odd_text, values)},
            optional={"payload": st.one_of(values, payloads()), "extra": values},
        ),
    )
)
def test_any_event_gets_a_documented_answer(event: Any) -> None:
    service, store = _service()
    response = _invoke(service, event)
    _assert_answer(response)
    if "error" in response:
        assert _snapshot(store) == ({}, [])


def test_the_handler_answers_and_logs_a_lone_surrogate_function_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import stream_functions
    from iii_stream import wiring

    service, _ = _service()
    monkeypatch.setattr(wiring, "stream_service", lambda: service)
    response = stream_functions.handler({"function_id": "stream::\ud800", "payload": {}}, FakeLambdaContext())
    assert response["error"]["code"] == "deserialization_error"
    assert "invalid Unicode (a lone surrogate) at `function_id`" in response["error"]["message"]
    assert "Logging error" not in capsys.readouterr().err  # the log line could be written


# --- regressions: the failures the properties found -------------------------------------------------------------


def _call(service: StreamService, function_id: str, **payload: Any) -> dict[str, Any]:
    return _invoke(service, {"function_id": function_id, "payload": payload})


@pytest.mark.parametrize(
    ("function_id", "payload", "where"),
    [
        ("stream::set", {**KEY, "data": "\ud800"}, "at `data`"),
        ("stream::set", {**KEY, "data": {"a": ["ok", "x\udfff"]}}, "at `data.a[1]`"),
        ("stream::set", {**KEY, "data": {"\ud800": 1}}, "in a key at `data`"),
        ("stream::set", {**KEY, "item_id": "\ud800", "data": 1}, "at `item_id`"),
        ("stream::get", {**KEY, "stream_name": "a\udc00"}, "at `stream_name`"),
        ("stream::list", {"stream_name": "s", "group_id": "\ud800"}, "at `group_id`"),
        ("stream::send", {"stream_name": "s", "group_id": "g", "type": "\ud800", "data": 1}, "at `type`"),
        ("stream::send", {"stream_name": "s", "group_id": "g", "type": "t", "data": 1, "id": "\udbff"}, "at `id`"),
        ("stream::update", {**KEY, "ops": [{"type": "set", "path": "\ud800", "value": 1}]}, "at `ops[0].path`"),
        ("stream::update", {**KEY, "ops": [{"type": "merge", "value": {"\ud800": 1}}]}, "in a key at `ops[0].value`"),
        ("stream::list_all", {"\ud800": 1}, "in a key at `input`"),
    ],
)
def test_a_lone_surrogate_is_a_deserialization_error_and_nothing_is_written(
    function_id: str, payload: dict[str, Any], where: str
) -> None:
    # Was: an unhandled UnicodeEncodeError (from the name check, the frame size or the store).
    service, store = _service()
    error = _call(service, function_id, **payload)["error"]
    assert error["code"] == "deserialization_error"
    assert (
        error["message"] == f"Failed to deserialize input for {function_id}: invalid Unicode (a lone surrogate) {where}"
    )
    assert _snapshot(store) == ({}, [])


@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
@pytest.mark.parametrize("function_id", ["stream::set", "stream::send"])
def test_data_nests_at_most_128_levels(function_id: str, kind: str) -> None:
    service, store = _service()
    fields = {**KEY} if function_id == "stream::set" else {"stream_name": "s", "group_id": "g", "type": "t"}
    for depth in (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH):
        assert "result" in _call(service, function_id, **fields, data=nest(depth, kind))
    before = _snapshot(store)
    for depth in (MAX_JSON_DEPTH + 1, 990, 1_000, 100_000):  # was: stored up to ~990, RecursionError beyond
        error = _call(service, function_id, **fields, data=nest(depth, kind))["error"]
        assert error == {
            "code": "deserialization_error",
            "message": f"Failed to deserialize input for {function_id}: nesting deeper than 128 levels at `data`",
        }
    assert _snapshot(store) == before


def test_a_128_deep_item_round_trips_through_set_get_list_and_delete() -> None:
    service, _ = _service()
    value = nest(MAX_JSON_DEPTH, "mixed", "leaf")
    assert _call(service, "stream::set", **KEY, data=value)["result"] == {"old_value": None, "new_value": value}
    assert _call(service, "stream::get", **KEY)["result"] == value
    assert _call(service, "stream::list", stream_name="s", group_id="g")["result"] == [value]
    assert _call(service, "stream::delete", **KEY)["result"] == {"old_value": value}


@pytest.mark.parametrize(
    ("op", "where"),
    [
        ({"type": "set", "path": "a", "value": nest(MAX_JSON_DEPTH + 1)}, "ops[0].value"),
        ({"type": "append", "path": ["a", "b"], "value": nest(100_000, "dict")}, "ops[0].value"),
        ({"type": "merge", "value": {"a": nest(MAX_JSON_DEPTH)}}, "ops[0].value"),
    ],
)
def test_an_op_value_nests_at_most_128_levels(op: dict[str, Any], where: str) -> None:
    service, store = _service()
    error = _call(service, "stream::update", **KEY, ops=[op])["error"]
    assert error == {
        "code": "deserialization_error",
        "message": f"Failed to deserialize input for stream::update: nesting deeper than 128 levels at `{where}`",
    }
    assert _snapshot(store) == ({}, [])


@pytest.mark.parametrize(
    ("update_ops", "fits"),
    [
        ([{"type": "set", "path": "", "value": nest(MAX_JSON_DEPTH)}], True),
        ([{"type": "set", "path": "a", "value": nest(MAX_JSON_DEPTH - 1)}], True),
        ([{"type": "set", "path": "a", "value": nest(MAX_JSON_DEPTH)}], False),
        ([{"type": "append", "path": ["p"] * 30, "value": nest(MAX_JSON_DEPTH - 32)}], True),
        ([{"type": "append", "path": ["p"] * 30, "value": nest(100)}], False),
        ([{"type": "merge", "path": ["p"] * 32, "value": {"a": nest(15)}}] * 1, True),
        ([{"type": "set", "path": "a", "value": nest(100)}, {"type": "merge", "path": ["b"] * 32, "value": {}}], True),
    ],
)
def test_the_updated_item_nests_at_most_128_levels(update_ops: list[dict[str, Any]], fits: bool) -> None:
    service, store = _service()
    _call(service, "stream::set", **KEY, data={"keep": 1})
    before = _snapshot(store)
    response = _call(service, "stream::update", **KEY, ops=update_ops)
    if fits:
        assert json_problem(response["result"]["new_value"]) is None
        assert _call(service, "stream::get", **KEY)["result"] == response["result"]["new_value"]
    else:
        assert response["error"] == {
            "code": "deserialization_error",
            "message": "Failed to deserialize input for stream::update: the ops would nest the item deeper than "
            "128 levels",
        }
        assert _snapshot(store) == before


def test_an_item_stored_deeper_than_the_limit_before_it_existed_is_refused_by_update_not_crashed() -> None:
    service, store = _service()
    _call(service, "stream::set", **KEY, data=1)
    address = next(iter(store.items))
    store.items[address] = replace(store.items[address], data="[" * 900 + "]" * 900)
    before = _snapshot(store)
    error = _call(service, "stream::update", **KEY, ops=[])["error"]
    assert error["code"] == "STREAM_UPDATE_ERROR"
    assert "deeper than 128 levels" in error["message"]
    assert _snapshot(store) == before


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (float("nan"), "invalid number: nan is not JSON at `data`"),  # was: STREAM_SET_ERROR, as if DynamoDB failed
        ({"x": [float("-inf")]}, "invalid number: -inf is not JSON at `data.x[0]`"),
        (2**1024, "invalid number: out of range at `data`"),
        ([10**4_400], "invalid number: out of range at `data[0]`"),  # was: ValueError past 4,300 digits
        ({1: "a"}, "invalid type: int key, expected a string at `data`"),
        ((1, 2), "invalid type: tuple, expected a JSON value at `data`"),
    ],
)
def test_data_that_is_not_json_is_a_deserialization_error(data: Any, reason: str) -> None:
    service, store = _service()
    error = _call(service, "stream::set", **KEY, data=data)["error"]
    assert error == {
        "code": "deserialization_error",
        "message": f"Failed to deserialize input for stream::set: {reason}",
    }
    assert _snapshot(store) == ({}, [])


def test_integers_past_64_bits_round_trip_exactly() -> None:
    service, _ = _service()
    for value in (2**63, -(2**63) - 1, 2**64 + 1, 2**200, int(1.7976931348623157e308)):
        _call(service, "stream::set", **KEY, data=value)
        assert _call(service, "stream::get", **KEY)["result"] == value


def test_ttl_of_a_thousand_digits_is_a_deserialization_error() -> None:
    service, _ = _service()
    error = _call(service, "stream::set", **KEY, data=1, ttl=int("9" * 1_000))["error"]
    assert error["code"] == "deserialization_error"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"function_id": "stream::\ud800", "payload": {}}, "invalid Unicode (a lone surrogate) at `function_id`"),
        ({"function_id": "stream::get", "payload": {}, "x": nest(129)}, "nesting deeper than 128 levels at `x`"),
        (
            {"function_id": "stream::get", "payload": {}, "x": {"\udfff": 1}},
            "invalid Unicode (a lone surrogate) in a key at `x`",
        ),
    ],
)
def test_the_rest_of_the_event_is_checked_too(event: dict[str, Any], reason: str) -> None:
    service, _ = _service()
    assert _invoke(service, event) == {
        "error": {"code": "deserialization_error", "message": f"Failed to deserialize the invocation: {reason}"}
    }


def test_a_long_or_odd_key_in_a_message_is_shortened_and_escaped() -> None:
    service, _ = _service()
    message = _call(service, "stream::set", **KEY, data={"k" * 500: {"\ud800" * 3: 1}})["error"]["message"]
    message.encode("utf-8")
    assert "k" * 61 + "..." in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "stream", "function_id": "f", "config": nest(MAX_JSON_DEPTH + 1)}, "nesting deeper than 128 levels"),
        ({"type": "stream", "function_id": "f\ud800", "config": {}}, "invalid Unicode (a lone surrogate)"),
        ({"type": "stream", "function_id": "f", "config": {"stream_name": "s", "\udfff": 1}}, "invalid Unicode"),
    ],
)
def test_the_registry_function_refuses_what_is_not_json_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, payload: dict[str, Any], reason: str
) -> None:
    import registry_functions
    from iii_stream import wiring
    from iii_stream.core.registry import RegistryService

    from tests.fakes import MemoryRegistryStore

    store = MemoryRegistryStore()
    monkeypatch.setattr(wiring, "registry_service", lambda: RegistryService(store, FixedClock()))
    event = {"function_id": "registry::register_trigger", "payload": payload}
    error = registry_functions.handler(event, FakeLambdaContext())["error"]
    assert error["code"] == "deserialization_error"
    assert error["message"].startswith("Failed to deserialize input for registry::register_trigger: " + reason)
    assert store.triggers() == []
