"""Property: no client frame breaks route selection, frame parsing or the join/leave service.

Whatever a client sends (not JSON, 100,000-deep arrays, 128 KB of ``[``, integers over Python's 4,300
digits, lone surrogates, NUL, unknown types, mistyped fields, names over 512 bytes), route selection
answers ``join``, ``leave`` or ``$default`` as API Gateway does, parsing answers a frame or BadFrameError,
and the service either carries out a valid join/leave or logs the frame and changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import BadFrameError, NameTooLongError
from iii_stream.core.limits import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, MAX_NAME_BYTES
from iii_stream.core.ports import Connection, ItemAddress, Subscription
from iii_stream.core.subscriptions import SubscriptionService
from iii_stream.core.ws_frames import ClientFrame, parse_client_frame
from iii_stream.infra.local.apigw_events import select_route

from tests.fakes import FixedClock, MemoryConnectionStore, MemoryItemStore, RecordingLeaveHook, RecordingPoster

BUDGET = settings(max_examples=400, deadline=None, derandomize=True)
SERVICE_BUDGET = settings(max_examples=300, deadline=None, derandomize=True)
ROUTES = {"join", "leave", "$default"}
CONN = "conn-1"
KEPT = {"type": "join", "data": {"streamName": "s", "groupId": "g", "subscriptionId": "keep"}}

# --- strategies -------------------------------------------------------------------------------------------------

# Every code point, lone surrogates, NUL and other controls included.
any_char = st.characters(exclude_categories=())
odd_text = st.text(any_char, max_size=24)


def _sized(unit: str, size: int) -> str:
    return unit * (size // len(unit.encode("utf-8")))


# Names at and around the 512-byte limit, in one-, two-, three- and four-byte characters.
edge_names = st.builds(
    lambda unit, delta: _sized(unit, MAX_NAME_BYTES) + "x" * delta,
    st.sampled_from(["a", "é", "€", "😀"]),
    st.sampled_from([0, 0, 1, 88]),
)
good_names = st.one_of(
    st.sampled_from(["s", "g", "i", "sub-1", "keep", " ", "\x00", "a:b#c", "😀", "null"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    odd_text,
    st.integers(min_value=1, max_value=4_300).map(lambda digits: int("9" * digits)),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3), max_leaves=8
)
field_values = st.one_of(good_names, edge_names, st.sampled_from(["", "\ud800", "a\udfff"]), odd_text, json_values)
FIELDS = ("subscriptionId", "streamName", "groupId", "id")


@st.composite
def frame_objects(draw: st.DrawFn) -> Any:
    """A frame as a client would build it: valid, wrong in one field, wrong anywhere, or not an object at all."""
    data: dict[str, Any] = {key: draw(good_names) for key in FIELDS[:3]}
    if draw(st.booleans()):
        data["id"] = draw(st.one_of(good_names, st.none()))
    frame: dict[str, Any] = {"type": draw(st.sampled_from(["join", "leave"])), "data": data}
    wrong = draw(st.sampled_from(["none", "none", "field", "field", "missing", "type", "data", "extra", "all"]))
    if wrong == "field":
        data[draw(st.sampled_from(FIELDS))] = draw(field_values)
    elif wrong == "missing":
        data.pop(draw(st.sampled_from(FIELDS)), None)
    elif wrong == "type":
        frame["type"] = draw(st.one_of(st.sampled_from(["JOIN", "subscribe", "", "$default", " join"]), json_values))
    elif wrong == "data":
        frame["data"] = draw(json_values)
    elif wrong == "extra":
        data[draw(odd_text)] = draw(json_values)
        frame[draw(odd_text)] = draw(json_values)
    elif wrong == "all":
        return draw(st.one_of(json_values, st.dictionaries(odd_text, json_values, max_size=4)))
    return frame


def _deep(open_: str, close: str, depth: int) -> str:
    return open_ * depth + close * depth


def _deep_join(depth: int) -> str:
    """A valid join with an extra field nested so that the whole frame is ``depth`` deep."""
    head = json.dumps({"type": "join", "data": {"streamName": "s", "groupId": "g", "subscriptionId": "deep"}})
    return head[:-1] + ', "x": ' + _deep("[", "]", depth - 1) + "}"


deep_texts = st.one_of(
    st.integers(1, MAX_MESSAGE_BYTES).map(lambda n: "[" * n),
    st.integers(1, MAX_MESSAGE_BYTES // 5).map(lambda n: '{"a":' * n),
    st.integers(1, 3_000).map(lambda n: _deep("[", "]", n)),
    st.integers(1, 2_000).map(lambda n: _deep('{"type":', "}", n).replace('":}', '":1}')),
    st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2).map(_deep_join),
    st.integers(2, 20_000).map(_deep_join),
)
huge_texts = st.one_of(
    st.integers(4_000, 5_000).map(lambda n: "9" * n),
    st.integers(4_000, 5_000).map(lambda n: '{"type":"join","data":{"subscriptionId":' + "1" * n + "}}"),
    st.sampled_from(["1e999999", "-1e-999999", "NaN", "Infinity", '{"type":"join","x":-Infinity}']),
    st.integers(1, MAX_MESSAGE_BYTES).map(lambda n: '"' + "a" * (n - 2) + '"'),
    st.integers(1, MAX_MESSAGE_BYTES // 2).map(lambda n: '"' + "\\" * n),
)
odd_texts = st.one_of(
    st.text(any_char, max_size=200),
    st.sampled_from(["", " ", "\x00", '{"type":"join"\x00}', '"\\ud800"', '{"type":"\\ud800"}', "\ufeff{}", "\ud800"]),
)


def _encode(frame: Any, ascii_only: bool) -> str:
    return json.dumps(frame, ensure_ascii=ascii_only)


frame_texts = st.builds(_encode, frame_objects(), st.booleans())
any_texts = st.one_of(frame_texts, frame_texts, deep_texts, huge_texts, odd_texts)

# --- what a frame should come to -----------------------------------------------------------------------------


def _is_name(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(value.encode("utf-8")) <= MAX_NAME_BYTES
    except UnicodeEncodeError:  # a lone surrogate: not text DynamoDB (or any client) could hold
        return False


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _plain_json(value: Any) -> bool:
    """Text without lone surrogates, finite numbers within a double's range, in keys and values alike."""
    if isinstance(value, dict):
        return all(_plain_json(key) and _plain_json(child) for key, child in value.items())
    if isinstance(value, list):
        return all(map(_plain_json, value))
    if isinstance(value, str):
        return not any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= sys.float_info.max
    return True


def _expected(frame: Any) -> tuple[str, str, str, str, str | None] | None:
    """What a parsed frame object should mean: (type, subscription, stream, group, item), or None (ignored)."""
    if not isinstance(frame, dict) or frame.get("type") not in ("join", "leave"):
        return None
    if _depth(frame) > MAX_JSON_DEPTH or not _plain_json(frame):
        return None
    data = frame.get("data")
    if not isinstance(data, dict):
        return None
    sub, stream, group, item = (data.get(key) for key in ("subscriptionId", "streamName", "groupId", "id"))
    if not all(_is_name(name) for name in (sub, stream, group)) or sub == "":
        return None
    if item is not None and not _is_name(item):
        return None
    return frame["type"], sub, stream, group, item


def _meaning(frame: ClientFrame) -> tuple[str, str, str, str, str | None]:
    data = frame.data
    return frame.type, data.subscription_id, data.stream_name, data.group_id, data.id


def _parse(body: Any) -> ClientFrame | None:
    try:
        return parse_client_frame(body)
    except BadFrameError:
        return None


# --- route selection ------------------------------------------------------------------------------------------


@BUDGET
@given(body=any_texts)
def test_route_selection_never_fails(body: str) -> None:
    assert select_route(body) in ROUTES


@BUDGET
@given(frame=frame_objects(), ascii_only=st.booleans())
def test_route_selection_follows_the_type_of_a_json_object(frame: Any, ascii_only: bool) -> None:
    route = frame.get("type") if isinstance(frame, dict) else None
    expected = route if isinstance(route, str) and route in ("join", "leave") else "$default"

    assert select_route(_encode(frame, ascii_only)) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 100_000, id="100000-deep-array"),
        pytest.param("[" * MAX_MESSAGE_BYTES, id="128KB-of-["),
        pytest.param('{"type":"join","x":' + "[" * 5_000 + "]" * 5_000 + "}", id="deep-but-valid-json"),
        pytest.param('{"type":' * 20_000 + "1" + "}" * 20_000, id="deep-objects"),
        pytest.param('{"type":"join","n":' + "9" * 5_000 + "}", id="5000-digit-integer"),
        pytest.param('{"type":"\\ud800"}', id="lone-surrogate-type"),
        pytest.param('{"type":"join\\u0000"}', id="nul-in-type"),
        pytest.param("\x00", id="nul"),
    ],
)
def test_route_selection_of_odd_frames_is_default(body: str) -> None:
    # Regression: nesting deeper than Python's recursion limit raised RecursionError (the socket closed with 1011).
    assert select_route(body) == "$default"


@BUDGET
@given(body=st.one_of(st.binary(max_size=200), any_texts.map(lambda text: text.encode("utf-8", "surrogatepass"))))
def test_route_selection_of_bytes_never_fails(body: bytes) -> None:
    assert select_route(body) in ROUTES  # type: ignore[arg-type]  # json.loads takes bytes too


# --- parsing ----------------------------------------------------------------------------------------------------


@BUDGET
@given(body=any_texts)
def test_parsing_answers_a_frame_or_bad_frame_error(body: str) -> None:
    try:
        frame = parse_client_frame(body)
    except BadFrameError as exc:
        assert str(exc)
        return
    assert frame.type in ("join", "leave")
    assert select_route(body) == frame.type


@BUDGET
@given(frame=frame_objects(), ascii_only=st.booleans())
def test_a_frame_is_accepted_exactly_when_every_field_is_valid(frame: Any, ascii_only: bool) -> None:
    parsed = _parse(_encode(frame, ascii_only))

    assert (_meaning(parsed) if parsed else None) == _expected(frame)


@BUDGET
@given(body=st.one_of(st.binary(max_size=200), st.none(), st.integers(), st.lists(st.integers(), max_size=3)))
def test_anything_but_text_is_a_bad_frame(body: Any) -> None:
    with pytest.raises(BadFrameError):
        parse_client_frame(body)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_a_frame_up_to_the_depth_limit_is_parsed(depth: int) -> None:
    assert parse_client_frame(_deep_join(depth)).data.subscription_id == "deep"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 1_000, 5_000, 100_000])
def test_a_frame_nested_deeper_than_the_limit_is_a_bad_frame(depth: int) -> None:
    # Regression: from about 1,000 levels json.loads raised RecursionError, which no caller expected.
    with pytest.raises(BadFrameError, match="nesting deeper|not JSON"):
        parse_client_frame(_deep_join(depth))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 100_000, id="100000-deep-array"),
        pytest.param("[" * MAX_MESSAGE_BYTES, id="128KB-of-["),
        pytest.param('{"type":"join","data":{"subscriptionId":' + "1" * 5_000 + "}}", id="5000-digit-integer"),
        pytest.param('{"type":"join","data":{"subscriptionId":"\\ud800","streamName":"s","groupId":"g"}}', id="ud800"),
    ],
)
def test_fixed_worst_cases_are_bad_frames(body: str) -> None:
    with pytest.raises(BadFrameError):
        parse_client_frame(body)


# --- the service over the in-memory fakes ------------------------------------------------------------------------


@dataclass
class World:
    items: MemoryItemStore
    connections: MemoryConnectionStore
    poster: RecordingPoster
    leaves: RecordingLeaveHook
    service: SubscriptionService

    def state(self) -> Any:
        return deepcopy(
            (
                self.items.items,
                self.items.events,
                self.connections.connections,
                self.connections.subscriptions,
                self.poster.attempts,
                self.leaves.left_subscriptions,
            )
        )


def _world() -> World:
    clock = FixedClock()
    items, connections = MemoryItemStore(), MemoryConnectionStore()
    items.put(ItemAddress("s", "g", "i"), json.dumps({"id": "i"}), clock.now_ms(), None)
    connections.save_connection(Connection(CONN, clock.now_ms(), {"user": "u1"}))
    poster, leaves = RecordingPoster(), RecordingLeaveHook()
    service = SubscriptionService(connections, items, poster, clock, disconnector=Disconnector(connections, leaves))
    service.message(CONN, json.dumps(KEPT))
    return World(items, connections, poster, leaves, service)


@contextmanager
def _logged(name: str) -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _check_message(body: Any) -> None:
    world = _world()
    before = world.state()
    expected = _parse(body)

    with _logged("iii_stream.core.subscriptions") as records:
        world.service.message(CONN, body)

    if expected is None:
        assert world.state() == before, "an ignored frame changed something"
        assert any(record.getMessage().startswith("ignored a frame from conn-1") for record in records)
        return
    kind, sub, stream, group, item = _meaning(expected)
    held = {(s.subscription_id, s.stream_name, s.group_id, s.item_id) for s in world.connections.of(CONN)}
    if kind == "join":
        assert (sub, stream, group, item) in held
        assert [frame["event"]["type"] for frame in world.poster.frames[CONN]][-1] == "sync"
    elif sub == "keep":
        assert "keep" not in {held_sub for held_sub, *_ in held}
        assert [s.subscription_id for s in world.leaves.left_subscriptions] == ["keep"]
    else:
        assert world.state() == before, "a leave of an unknown subscription changed something"


@SERVICE_BUDGET
@given(body=any_texts)
def test_the_service_ignores_what_it_cannot_parse_and_carries_out_the_rest(body: str) -> None:
    _check_message(body)


@SERVICE_BUDGET
@given(frame=frame_objects())
def test_the_service_over_structured_frames(frame: Any) -> None:
    _check_message(json.dumps(frame))


@pytest.mark.parametrize(
    "body",
    [None, b'{"type":"join"}', 42, ["join"], "[" * 100_000, "[" * MAX_MESSAGE_BYTES],
    ids=["none", "bytes", "int", "list", "100000-deep", "128KB-of-["],
)
def test_the_service_ignores_fixed_worst_cases(body: Any) -> None:
    _check_message(body)


def test_a_leave_with_a_mistyped_id_leaves_nothing() -> None:
    world = _world()
    before = world.state()

    world.service.message(CONN, json.dumps({"type": "leave", "data": {**KEPT["data"], "subscriptionId": ["keep"]}}))

    assert world.state() == before


class _KeyLimitedStore(MemoryConnectionStore):
    """As the DynamoDB store: a group whose key would not fit (escaped NULs) raises before anything is written."""

    def add_subscription(self, subscription: Subscription) -> bool:
        if "\x00" in subscription.stream_name:
            raise NameTooLongError("The stream name and group id is too long: its key would be 6152 bytes")
        return super().add_subscription(subscription)


def test_a_join_whose_key_would_not_fit_is_ignored_like_a_malformed_frame() -> None:
    # Regression: NameTooLongError escaped the service (ws_message logged "frame handling failed").
    world = _world()
    connections = _KeyLimitedStore()
    connections.connections = world.connections.connections
    connections.subscriptions = world.connections.subscriptions
    world.connections = connections
    world.service = SubscriptionService(connections, world.items, world.poster, FixedClock())
    before = world.state()
    body = json.dumps({"type": "join", "data": {**KEPT["data"], "subscriptionId": "n", "streamName": "\x00" * 512}})

    with _logged("iii_stream.core.subscriptions") as records:
        world.service.message(CONN, body)

    assert world.state() == before
    assert [record.getMessage() for record in records] == [
        "ignored a frame from conn-1: The stream name and group id is too long: its key would be 6152 bytes"
    ]
