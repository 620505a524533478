"""The stream functions' contract, run against the in-memory store AND the DynamoDB adapter on moto.

Both bindings must pass the same tests, so the fake used by unit tests cannot drift from DynamoDB.
"""

from __future__ import annotations

from typing import Any

import pytest
from iii_stream.adapters.dynamodb_items import DynamoItemStore
from iii_stream.core.errors import StreamError
from iii_stream.core.service import STREAM_FUNCTIONS, StreamService

from tests.fakes import FixedClock, MemoryItemStore
from tests.integration.conftest import ITEMS_TABLE


class Harness:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.clock = FixedClock()
        self.service = StreamService(store, self.clock)

    def __call__(self, function_id: str, **payload: Any) -> Any:
        return STREAM_FUNCTIONS.call(self.service, function_id, payload)

    def error(self, function_id: str, **payload: Any) -> StreamError:
        with pytest.raises(StreamError) as caught:
            STREAM_FUNCTIONS.call(self.service, function_id, payload)
        return caught.value


@pytest.fixture(params=["memory", "dynamodb"])
def fx(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return Harness(MemoryItemStore())
    client = request.getfixturevalue("dynamodb")
    return Harness(DynamoItemStore(client, ITEMS_TABLE))


KEY = {"stream_name": "chat", "group_id": "room-1", "item_id": "msg-1"}


def test_set_creates_then_updates_and_returns_old_and_new(fx: Harness) -> None:
    # GIVEN an empty group / WHEN an item is set twice
    first = fx("stream::set", **KEY, data={"text": "hi"})
    second = fx("stream::set", **KEY, data={"text": "bye"})
    # THEN the first has no old value and the second returns the first's data
    assert first == {"old_value": None, "new_value": {"text": "hi"}}
    assert second == {"old_value": {"text": "hi"}, "new_value": {"text": "bye"}}
    assert fx("stream::get", **KEY) == {"text": "bye"}


@pytest.mark.parametrize("value", [None, 0, -1.5, "", "text", [], [1, [2]], {}, {"a": {"b": None}}, True, 2**63])
def test_any_json_value_round_trips_bare(fx: Harness, value: Any) -> None:
    fx("stream::set", **KEY, data=value)
    assert fx("stream::get", **KEY) == value
    assert fx("stream::list", stream_name="chat", group_id="room-1") == [value]


def test_get_missing_is_null_not_an_error(fx: Harness) -> None:
    assert fx("stream::get", **KEY) is None


def test_delete_returns_removed_value_and_missing_gives_null(fx: Harness) -> None:
    fx("stream::set", **KEY, data=[1, 2])
    assert fx("stream::delete", **KEY) == {"old_value": [1, 2]}
    assert fx("stream::get", **KEY) is None
    assert fx("stream::delete", **KEY) == {"old_value": None}


def test_update_on_missing_item_starts_from_empty_object_and_omits_empty_errors(fx: Harness) -> None:
    result = fx("stream::update", **KEY, ops=[{"type": "increment", "path": "n", "by": 2}])
    assert result == {"old_value": None, "new_value": {"n": 2}}
    assert "errors" not in result
    assert fx("stream::update", **KEY, ops=[]) == {"old_value": {"n": 2}, "new_value": {"n": 2}}


def test_update_with_empty_ops_creates_empty_object(fx: Harness) -> None:
    assert fx("stream::update", **KEY, ops=[]) == {"old_value": None, "new_value": {}}
    assert fx("stream::get", **KEY) == {}


def test_update_reports_failed_ops_and_applies_the_rest(fx: Harness) -> None:
    fx("stream::set", **KEY, data={"name": "x", "n": 1})
    result = fx(
        "stream::update",
        **KEY,
        ops=[
            {"type": "increment", "path": "name", "by": 1},
            {"type": "increment", "path": "n", "by": 5},
        ],
    )
    assert result["new_value"] == {"name": "x", "n": 6}
    assert [(e["op_index"], e["code"]) for e in result["errors"]] == [(0, "increment.not_number")]
    assert result["errors"][0]["doc_url"] == "https://iii.dev/docs/workers/iii-state#error-codes"
    assert fx("stream::get", **KEY) == {"name": "x", "n": 6}


def test_list_returns_bare_values_ordered_by_item_id(fx: Harness) -> None:
    for item_id in ["b", "a", "c", "A"]:
        fx("stream::set", stream_name="s", group_id="g", item_id=item_id, data={"id": item_id})
    fx("stream::set", stream_name="s", group_id="other", item_id="z", data={"id": "z"})
    assert fx("stream::list", stream_name="s", group_id="g") == [{"id": i} for i in ["A", "a", "b", "c"]]
    assert fx("stream::list", stream_name="s", group_id="none") == []


def test_list_groups_never_lists_a_group_whose_items_are_gone(fx: Harness) -> None:
    for group in ["g1", "g2", "g3"]:
        for item in ["x", "y"]:
            fx("stream::set", stream_name="s", group_id=group, item_id=item, data=1)
    fx("stream::delete", stream_name="s", group_id="g2", item_id="x")
    fx("stream::delete", stream_name="s", group_id="g2", item_id="y")
    assert fx("stream::list_groups", stream_name="s") == ["g1", "g3"]
    assert fx("stream::list_groups", stream_name="nothing") == []


def test_list_all_sorts_streams_and_groups_with_a_count(fx: Harness) -> None:
    fx("stream::set", stream_name="b", group_id="g2", item_id="i", data=1)
    fx("stream::set", stream_name="b", group_id="g1", item_id="i", data=1)
    fx("stream::set", stream_name="a", group_id="g", item_id="i", data=1)
    assert fx("stream::list_all") == {
        "stream": [{"id": "a", "groups": ["g"]}, {"id": "b", "groups": ["g1", "g2"]}],
        "count": 2,
    }


ODD_NAMES = ["a:b", "a#b", "", "#", ":", '["x","y"]', 'x","y', "émoji 🚀", "a/b\\c", " spaced ", "\u0000nul"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_any_name_works_everywhere(fx: Harness, name: str) -> None:
    # GIVEN names with separators, quotes, emptiness and unicode in every position
    key = {"stream_name": name, "group_id": name, "item_id": name}
    fx("stream::set", **key, data={"v": name})
    fx("stream::set", stream_name=name, group_id=name + ":2", item_id="other", data=2)
    # THEN every function sees exactly those names, with no prefix confusion
    assert fx("stream::get", **key) == {"v": name}
    assert fx("stream::list", stream_name=name, group_id=name) == [{"v": name}]
    assert fx("stream::list_groups", stream_name=name) == sorted([name, name + ":2"], key=str.encode)
    assert fx("stream::list_all")["stream"] == [{"id": name, "groups": sorted([name, name + ":2"])}]
    assert fx("stream::update", **key, ops=[{"type": "set", "path": "w", "value": 1}])["new_value"] == {
        "v": name,
        "w": 1,
    }
    assert fx("stream::delete", **key) == {"old_value": {"v": name, "w": 1}}


def test_names_that_share_a_prefix_do_not_leak_into_each_other(fx: Harness) -> None:
    fx("stream::set", stream_name="a", group_id="b:c", item_id="1", data="first")
    fx("stream::set", stream_name="a:b", group_id="c", item_id="1", data="second")
    assert fx("stream::list", stream_name="a", group_id="b:c") == ["first"]
    assert fx("stream::list_groups", stream_name="a") == ["b:c"]
    assert fx("stream::list_all")["count"] == 2


def test_send_returns_null_and_is_never_visible_to_reads(fx: Harness) -> None:
    assert fx("stream::send", stream_name="chat", group_id="room-1", type="typing", data={"who": "ana"}) is None
    assert fx("stream::send", stream_name="chat", group_id="room-1", type="typing", data=None, id="msg-1") is None
    assert fx("stream::list", stream_name="chat", group_id="room-1") == []
    assert fx("stream::list_groups", stream_name="chat") == []
    assert fx("stream::list_all") == {"stream": [], "count": 0}


class TestExpiry:
    def test_expired_item_is_invisible_to_every_read_at_once(self, fx: Harness) -> None:
        fx("stream::set", **KEY, data="short", ttl=5)
        fx("stream::set", stream_name="chat", group_id="room-1", item_id="keep", data="long")
        fx.clock.advance(4_000)
        assert fx("stream::get", **KEY) == "short"
        fx.clock.advance(1_001)
        assert fx("stream::get", **KEY) is None
        assert fx("stream::list", stream_name="chat", group_id="room-1") == ["long"]

    def test_expired_group_leaves_list_groups_and_list_all(self, fx: Harness) -> None:
        fx("stream::set", stream_name="s", group_id="brief", item_id="i", data=1, ttl=1)
        fx("stream::set", stream_name="s", group_id="stays", item_id="i", data=1)
        fx.clock.advance(2_000)
        assert fx("stream::list_groups", stream_name="s") == ["stays"]
        assert fx("stream::list_all")["stream"] == [{"id": "s", "groups": ["stays"]}]

    def test_writes_over_an_expired_item_see_no_old_value(self, fx: Harness) -> None:
        fx("stream::set", **KEY, data={"n": 1}, ttl=1)
        fx.clock.advance(1_500)
        assert fx("stream::update", **KEY, ops=[{"type": "increment", "path": "n", "by": 1}]) == {
            "old_value": None,
            "new_value": {"n": 1},
        }
        assert fx("stream::delete", **KEY) == {"old_value": {"n": 1}}
        fx("stream::set", **KEY, data="x", ttl=1)
        fx.clock.advance(1_500)
        assert fx("stream::set", **KEY, data="y") == {"old_value": None, "new_value": "y"}
        fx.clock.advance(10_000)
        assert fx("stream::get", **KEY) == "y"

    def test_update_keeps_the_expiry_unless_given_a_new_one(self, fx: Harness) -> None:
        fx("stream::set", **KEY, data={}, ttl=10)
        fx("stream::update", **KEY, ops=[{"type": "set", "path": "a", "value": 1}])
        fx.clock.advance(11_000)
        assert fx("stream::get", **KEY) is None
        fx("stream::update", **KEY, ops=[], ttl=100)
        fx("stream::update", **KEY, ops=[{"type": "set", "path": "b", "value": 2}])
        fx.clock.advance(99_000)
        assert fx("stream::get", **KEY) == {"b": 2}

    @pytest.mark.parametrize("ttl", [0, -1, 1.5, "10", True])
    def test_a_bad_ttl_is_refused_and_nothing_is_written(self, fx: Harness, ttl: Any) -> None:
        error = fx.error("stream::set", **KEY, data=1, ttl=ttl)
        assert error.code == "deserialization_error"
        assert "ttl" in error.message
        assert fx("stream::get", **KEY) is None


class TestSizeLimits:
    def test_item_over_one_message_is_refused_and_nothing_is_written(self, fx: Harness) -> None:
        error = fx.error("stream::set", **KEY, data="x" * 131_072)
        assert error.code == "STREAM_PAYLOAD_TOO_LARGE"
        assert "131072" in error.message
        assert fx("stream::get", **KEY) is None

    def test_item_that_just_fits_is_stored(self, fx: Harness) -> None:
        # The frame around the data: {"type":"stream","timestamp":<13>,"streamName":"chat",...,"event":{...}}
        frame_overhead = len(
            '{"type":"stream","timestamp":1800000000000,"streamName":"chat","groupId":"room-1",'
            '"id":"msg-1","event":{"type":"update","data":""}}'
        )
        fits = "x" * (131_072 - frame_overhead)
        assert fx("stream::set", **KEY, data=fits)["new_value"] == fits
        assert fx.error("stream::set", **KEY, data=fits + "x").code == "STREAM_PAYLOAD_TOO_LARGE"
        assert fx("stream::get", **KEY) == fits

    def test_multibyte_characters_count_in_bytes(self, fx: Harness) -> None:
        assert fx.error("stream::set", **KEY, data="é" * 70_000).code == "STREAM_PAYLOAD_TOO_LARGE"

    def test_update_that_would_grow_past_the_limit_is_refused(self, fx: Harness) -> None:
        fx("stream::set", **KEY, data={"log": "x" * 100_000})
        error = fx.error("stream::update", **KEY, ops=[{"type": "append", "path": "log", "value": "y" * 40_000}])
        assert error.code == "STREAM_PAYLOAD_TOO_LARGE"
        assert fx("stream::get", **KEY) == {"log": "x" * 100_000}

    def test_send_over_one_message_is_refused(self, fx: Harness) -> None:
        error = fx.error("stream::send", stream_name="s", group_id="g", type="big", data="x" * 140_000)
        assert error.code == "STREAM_PAYLOAD_TOO_LARGE"

    def test_overlong_names_get_a_clear_error_and_write_nothing(self, fx: Harness) -> None:
        error = fx.error("stream::set", stream_name="s", group_id="g", item_id="i" * 1100, data=1)
        assert error.code == "STREAM_NAME_TOO_LONG"
        assert "item id" in error.message
        assert fx.error("stream::get", stream_name="s" * 513, group_id="g", item_id="i").code == "STREAM_NAME_TOO_LONG"
        assert fx.error("stream::list", stream_name="s", group_id="é" * 257).code == "STREAM_NAME_TOO_LONG"
        fx("stream::set", stream_name="s" * 512, group_id="g" * 512, item_id="i" * 512, data=1)
        assert fx("stream::list_groups", stream_name="s" * 512) == ["g" * 512]


class TestVersions:
    def test_version_and_timestamp_strictly_increase_even_within_one_millisecond(self, fx: Harness) -> None:
        stamps = []
        for n in range(5):
            fx("stream::set", **KEY, data=n)
            fx("stream::update", **KEY, ops=[{"type": "increment", "path": "", "by": 1}])
            stored = fx.store.get(_address())
            stamps.append((stored.version, stored.ts))
        versions = [v for v, _ in stamps]
        timestamps = [t for _, t in stamps]
        assert versions == sorted(set(versions)) and versions[0] == 2
        assert timestamps == sorted(set(timestamps))
        assert timestamps[0] >= fx.clock.now_ms()

    def test_timestamp_never_goes_back_when_the_clock_does(self, fx: Harness) -> None:
        fx("stream::set", **KEY, data=1)
        first = fx.store.get(_address()).ts
        fx.clock.advance(-60_000)
        fx("stream::set", **KEY, data=2)
        assert fx.store.get(_address()).ts == first + 1


def _address() -> Any:
    from iii_stream.core.ports import ItemAddress

    return ItemAddress(**KEY)
