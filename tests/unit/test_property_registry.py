"""Property: any call of a ``registry::*`` function ends in a result or a documented error, never half done.

Through ``REGISTRY_FUNCTIONS.invoke`` as the RegistryFunction Lambda calls it, over the in-memory store: odd
events, odd payloads (missing fields, wrong types, huge strings, lone surrogates, unknown trigger types,
configs that are lists or strings) answer ``{"result"}`` or ``{"error": {code, message}}`` with a
documented code; a refused call changes nothing; an accepted one changes exactly its record, and
every record kept fits its DynamoDB item. Every answer can be marshalled by the Python 3.12 Lambda
runtime (JSON with ``ensure_ascii=False``, in UTF-8).
"""

from __future__ import annotations

import json
from copy import deepcopy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.core.limits import MAX_NAME_BYTES
from iii_stream.core.models import invocation_error
from iii_stream.core.registry import (
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    REGISTRY_FUNCTIONS,
    FunctionRecord,
    LifecycleTriggerConfig,
    RegistryService,
    TriggerRecord,
)

from tests.fakes import FixedClock, MemoryRegistryStore

BUDGET = settings(max_examples=1200, deadline=None, derandomize=True)
DOCUMENTED = {
    "REGISTRY_ERROR",
    "function_not_found",
    "trigger_not_found",
    "deserialization_error",
    "invalid_invocation",
}
ITEM_BYTES = 400 * 1024  # DynamoDB's item limit
SORT_KEY_BYTES = 1024

any_text = st.text(st.characters(exclude_categories=()), max_size=16)
huge_text = st.builds(
    lambda unit, n: unit * n, st.sampled_from(["x", "é", "😀", "\x00", "\ud800"]), st.integers(1, 300_000)
)
odd_strings = st.one_of(
    st.sampled_from(["f", "g", "t-1", "", " ", "stream", "stream:join", "stream:leave", "presence::on-change"]),
    st.sampled_from(["\ud800", "a\udcff", "\x00", "😀" * MAX_ID_CHARS, "é" * (MAX_ID_CHARS + 1), "x" * MAX_NAME_BYTES]),
    any_text,
    huge_text,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), odd_strings),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
field_values = st.one_of(odd_strings, odd_strings, json_values)
CONFIG_KEYS = ["stream_name", "group_id", "item_id", "condition_function_id"]
plausible_configs = st.fixed_dictionaries(
    {"stream_name": st.sampled_from(["s", "s", "presence", "😀" * 128, "x" * (MAX_NAME_BYTES + 1)])},
    optional={
        "group_id": st.sampled_from(["", "room-1", "é" * 256, "é" * 257]),
        "item_id": st.sampled_from(["", "i", "x" * MAX_NAME_BYTES]),
        "condition_function_id": st.sampled_from(["f", "g", "", "nope"]),
    },
)
configs = st.one_of(
    plausible_configs,
    st.dictionaries(st.one_of(st.sampled_from(CONFIG_KEYS), any_text), field_values, max_size=4),
    json_values,
)
PLAUSIBLE = {
    "function_id": st.sampled_from(["f", "f", "g", "g", "h", "p::on-change", "x" * MAX_ID_CHARS, "😀" * MAX_ID_CHARS]),
    "target": st.sampled_from(["lambda-h", "arn:aws:lambda:us-east-1:123456789012:function:h", "t" * MAX_ID_CHARS]),
    "description": st.sampled_from(["", "d", "é" * MAX_DESCRIPTION_CHARS, "x" * (MAX_DESCRIPTION_CHARS + 1)]),
    "type": st.sampled_from(["stream", "stream", "stream:join", "stream:leave", "stream:everything", "STREAM"]),
    "config": plausible_configs,
    "id": st.sampled_from(["t-1", "t-2", "t-3", "😀" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1)]),
}
PAYLOAD_KEYS = {
    "registry::register_function": ["function_id", "target", "description"],
    "registry::unregister_function": ["function_id"],
    "registry::list_functions": [],
    "registry::register_trigger": ["type", "function_id", "config", "id"],
    "registry::unregister_trigger": ["id"],
    "registry::list_triggers": [],
}
function_ids = st.sampled_from(list(PAYLOAD_KEYS))


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Mostly a registry call with plausible fields, one of them odd; sometimes anything at all."""
    roll = draw(st.integers(0, 19))
    if roll == 0:
        return draw(json_values)
    function_id = draw(st.one_of(odd_strings, json_values) if roll == 1 else function_ids)
    payload: dict[str, Any] = {}
    for key in PAYLOAD_KEYS.get(function_id, []) if isinstance(function_id, str) else []:
        pick = draw(st.sampled_from(["plausible", "plausible", "plausible", "plausible", "odd", "missing"]))
        if pick != "missing":
            payload[key] = draw(PLAUSIBLE[key] if pick == "plausible" else configs if key == "config" else field_values)
    if draw(st.integers(0, 4)) == 0:
        payload[draw(any_text)] = draw(json_values)
    return {"function_id": function_id, "payload": draw(json_values) if roll == 2 else payload}


def _service() -> tuple[RegistryService, MemoryRegistryStore]:
    store = MemoryRegistryStore()
    store.put_function(FunctionRecord(function_id="f", target="lambda-f"))
    store.put_function(FunctionRecord(function_id="g", target="lambda-g", description="condition"))
    config = LifecycleTriggerConfig(stream_name="s", condition_function_id="g")
    store.put_trigger(TriggerRecord("t-1", "stream:join", "f", config, 1))
    return RegistryService(store, FixedClock()), store


def _state(store: MemoryRegistryStore) -> Any:
    return deepcopy((store.function_records, [t.to_json() for t in store.trigger_records.values()]))


def _storable(store: MemoryRegistryStore) -> None:
    """Every record fits its DynamoDB item: valid UTF-8 everywhere, ids within a sort key, names within 512 bytes."""
    for record in store.function_records.values():
        encoded = [value.encode("utf-8") for value in (record.function_id, record.target, record.description)]
        assert len(encoded[0]) <= SORT_KEY_BYTES
        assert sum(map(len, encoded)) < ITEM_BYTES
    for trigger in store.trigger_records.values():
        assert len(trigger.trigger_id.encode("utf-8")) <= SORT_KEY_BYTES
        assert len(trigger.to_json().encode("utf-8")) < ITEM_BYTES
        for name in ("stream_name", "group_id", "item_id", "condition_function_id"):
            value = getattr(trigger.config, name, None) or ""
            assert len(value.encode("utf-8")) <= MAX_NAME_BYTES


def _check_change(event: dict[str, Any], result: Any, before: Any, store: MemoryRegistryStore) -> None:
    """An accepted call changed exactly its own record."""
    functions, triggers = before
    payload = event["payload"]
    name = event["function_id"]
    if name == "registry::register_function":
        assert store.function_records == {**functions, payload["function_id"]: FunctionRecord(**result)}
    elif name == "registry::unregister_function":
        assert store.function_records == {k: v for k, v in functions.items() if k != payload["function_id"]}
    elif name == "registry::register_trigger":
        kept = [json.loads(t) for t in triggers if json.loads(t)["trigger_id"] != result["id"]]
        now = [json.loads(t.to_json()) for t in store.trigger_records.values()]
        assert now[:-1] == kept and now[-1]["trigger_id"] == result["id"]
        assert store.function_records == functions
    elif name == "registry::unregister_trigger":
        assert [json.loads(t.to_json())["trigger_id"] for t in store.trigger_records.values()] == [
            json.loads(t)["trigger_id"] for t in triggers if json.loads(t)["trigger_id"] != payload["id"]
        ]
    else:
        assert _state(store) == before


def _run(event: Any) -> dict[str, Any]:
    service, store = _service()
    before = _state(store)

    response = invocation_error(event) or REGISTRY_FUNCTIONS.invoke(service, event)  # as registry_functions.handler

    json.dumps(response, ensure_ascii=False, allow_nan=False).encode("utf-8")  # the 3.12 runtime's marshalling
    if "error" in response:
        assert set(response) == {"error"} and set(response["error"]) == {"code", "message"}
        assert response["error"]["code"] in DOCUMENTED, response
        assert isinstance(response["error"]["message"], str) and response["error"]["message"]
        assert _state(store) == before, "a refused call changed the registry"
    else:
        assert set(response) == {"result"}
        _check_change(event, response["result"], before, store)
    _storable(store)
    return response


@BUDGET
@given(event=events())
def test_every_registry_call_ends_in_a_result_or_a_documented_error(event: Any) -> None:
    _run(event)


@pytest.mark.parametrize(
    ("payload", "code", "text"),
    [
        # Regressions: each was accepted, then could not be stored (DynamoDB: UnicodeEncodeError or an item over
        # 400 KB, neither a registry error), or named a trigger no stream, group or item could ever match.
        ({"function_id": "h", "target": "t", "description": "\ud800"}, "deserialization_error", "`description`"),
        ({"function_id": "h", "target": "t", "description": "x" * 500_000}, "deserialization_error", "description"),
        (
            {"function_id": "h", "target": "t", "description": "x" * (MAX_DESCRIPTION_CHARS + 1)},
            "deserialization_error",
            "description",
        ),
    ],
)
def test_function_registrations_that_could_not_be_stored_are_refused(payload: Any, code: str, text: str) -> None:
    response = _run({"function_id": "registry::register_function", "payload": payload})
    assert response["error"]["code"] == code and text in response["error"]["message"]


@pytest.mark.parametrize(
    ("config", "text"),
    [
        ({"stream_name": "s", "group_id": "\ud800"}, "invalid Unicode (a lone surrogate) at `config.group_id`"),
        ({"stream_name": "s", "item_id": "a\udcff"}, "invalid Unicode (a lone surrogate) at `config.item_id`"),
        ({"stream_name": "\ud800"}, "invalid Unicode (a lone surrogate) at `config.stream_name`"),
        ({"stream_name": "s", "condition_function_id": "\ud800"}, "at `config.condition_function_id`"),
        ({"stream_name": "x" * 500_000}, "config.stream_name is 500000 bytes long; at most 512 bytes are allowed."),
        ({"stream_name": "s", "group_id": "é" * 257}, "config.group_id is 514 bytes long"),
        ({"stream_name": "s", "item_id": "😀" * 129}, "config.item_id is 516 bytes long"),
    ],
)
def test_stream_trigger_configs_that_could_not_be_stored_or_ever_match_are_refused(
    config: dict[str, Any], text: str
) -> None:
    payload = {"type": "stream", "function_id": "f", "config": config}
    response = _run({"function_id": "registry::register_trigger", "payload": payload})
    assert text in response["error"]["message"]


def test_names_of_exactly_512_bytes_are_accepted() -> None:
    config = {"stream_name": "😀" * 128, "group_id": "é" * 256, "item_id": "x" * MAX_NAME_BYTES}
    payload = {"type": "stream", "function_id": "f", "config": config, "id": "t-512"}
    response = _run({"function_id": "registry::register_trigger", "payload": payload})
    assert response["result"]["config"] == config


@pytest.mark.parametrize("name", ["registry::unregister_function", "registry::unregister_trigger"])
@pytest.mark.parametrize(
    ("value", "code"),
    [("\ud800", "deserialization_error"), ("x" * (MAX_ID_CHARS + 1), "not_found")],
    ids=["lone-surrogate", "257-characters"],
)
def test_removing_an_id_no_registration_could_have_changes_nothing(name: str, value: str, code: str) -> None:
    key = "function_id" if name == "registry::unregister_function" else "id"
    response = _run({"function_id": name, "payload": {key: value}})
    assert response["error"]["code"].endswith(code)


def test_an_unknown_function_id_with_a_lone_surrogate_can_be_answered() -> None:
    # The Python 3.12 runtime writes answers in UTF-8: "Function \ud800 not found." could not be marshalled.
    response = _run({"function_id": "registry::\ud800", "payload": {}})
    assert response["error"]["code"] == "deserialization_error"


@pytest.mark.parametrize(
    "config",
    [[1, 2], "presence", 3, True, [{"stream_name": "s"}]],
    ids=["list", "string", "number", "bool", "list-obj"],
)
def test_a_config_that_is_not_an_object_is_a_registry_error(config: Any) -> None:
    payload = {"type": "stream:join", "function_id": "f", "config": config}
    response = _run({"function_id": "registry::register_trigger", "payload": payload})
    assert response["error"]["code"] == "REGISTRY_ERROR"
    assert "must be an object" in response["error"]["message"]
