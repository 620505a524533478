"""The ``registry::*`` functions over the wire: results, refusals with their codes, and what a trigger becomes."""

from __future__ import annotations

from typing import Any

import pytest
from iii_stream.core.changes import Change
from iii_stream.core.registry import REGISTRY_FUNCTIONS, RegistryService
from iii_stream.core.triggers import StreamTriggers, TriggerCache

from tests.fakes import FakeInvoker, FixedClock, MemoryRegistryStore, MemoryTriggerLedger


@pytest.fixture
def store() -> MemoryRegistryStore:
    return MemoryRegistryStore()


@pytest.fixture
def service(store: MemoryRegistryStore) -> RegistryService:
    return RegistryService(store, FixedClock())


def call(service: RegistryService, name: str, payload: Any = None) -> dict[str, Any]:
    event: dict[str, Any] = {"function_id": f"registry::{name}"}
    if payload is not None:
        event["payload"] = payload
    return REGISTRY_FUNCTIONS.invoke(service, event)


def result(response: dict[str, Any]) -> Any:
    assert "error" not in response, response
    return response["result"]


def error(response: dict[str, Any], code: str) -> str:
    assert "result" not in response, response
    assert response["error"]["code"] == code, response
    message: str = response["error"]["message"]
    return message


def register(service: RegistryService, *function_ids: str) -> None:
    for function_id in function_ids:
        result(call(service, "register_function", {"function_id": function_id, "target": f"lambda-{function_id}"}))


def trigger(
    service: RegistryService, type_: str, function_id: str, config: Any, trigger_id: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": type_, "function_id": function_id, "config": config}
    if trigger_id is not None:
        payload["id"] = trigger_id
    return call(service, "register_trigger", payload)


# --- functions -------------------------------------------------------------------------------------------


def test_register_list_and_unregister_a_function(service: RegistryService) -> None:
    registered = call(
        service, "register_function", {"function_id": "presence::on-change", "target": "arn:fn", "description": "d"}
    )
    assert registered == {"result": {"function_id": "presence::on-change", "target": "arn:fn", "description": "d"}}
    register(service, "a::first")
    assert result(call(service, "list_functions", {})) == [
        {"function_id": "a::first", "target": "lambda-a::first", "description": ""},
        {"function_id": "presence::on-change", "target": "arn:fn", "description": "d"},
    ]
    assert call(service, "unregister_function", {"function_id": "presence::on-change"}) == {
        "result": {"function_id": "presence::on-change"}
    }
    assert [f["function_id"] for f in result(call(service, "list_functions", {}))] == ["a::first"]


def test_registering_a_function_again_replaces_its_target(service: RegistryService) -> None:
    register(service, "f")
    result(call(service, "register_function", {"function_id": "f", "target": "other"}))
    assert result(call(service, "list_functions", {})) == [{"function_id": "f", "target": "other", "description": ""}]


def test_unregistering_an_unknown_function_is_function_not_found(service: RegistryService) -> None:
    message = error(call(service, "unregister_function", {"function_id": "nope"}), "function_not_found")
    assert "nope" in message


@pytest.mark.parametrize("role", ["handler", "condition"])
def test_a_function_used_by_a_trigger_cannot_be_removed(service: RegistryService, role: str) -> None:
    register(service, "handler", "cond")
    result(trigger(service, "stream", "handler", {"stream_name": "s", "condition_function_id": "cond"}, "t-1"))
    used = "handler" if role == "handler" else "cond"
    message = error(call(service, "unregister_function", {"function_id": used}), "REGISTRY_ERROR")
    assert used in message and "t-1" in message
    assert {f["function_id"] for f in result(call(service, "list_functions", {}))} == {"handler", "cond"}
    # Once the trigger is gone, the function can go.
    result(call(service, "unregister_trigger", {"id": "t-1"}))
    assert call(service, "unregister_function", {"function_id": used}) == {"result": {"function_id": used}}


# --- triggers --------------------------------------------------------------------------------------------


def test_a_trigger_for_an_unregistered_function_is_function_not_found(service: RegistryService) -> None:
    message = error(trigger(service, "stream", "ghost", {"stream_name": "s"}), "function_not_found")
    assert "ghost" in message
    assert result(call(service, "list_triggers", {})) == []


def test_an_unknown_trigger_type_names_the_valid_types(service: RegistryService) -> None:
    register(service, "f")
    message = error(trigger(service, "stream:update", "f", {"stream_name": "s"}), "REGISTRY_ERROR")
    assert "stream:update" in message
    for valid in ("stream", "stream:join", "stream:leave"):
        assert valid in message
    assert result(call(service, "list_triggers", {})) == []


@pytest.mark.parametrize(
    ("config", "code", "mentions"),
    [
        pytest.param({}, "REGISTRY_ERROR", "stream_name", id="missing"),
        pytest.param(None, "REGISTRY_ERROR", "stream_name", id="config-omitted"),
        pytest.param({"stream_name": ""}, "REGISTRY_ERROR", "stream_name", id="empty"),
        pytest.param({"stream_name": 5}, "deserialization_error", "stream_name", id="integer"),
        pytest.param({"stream_name": ["s"]}, "deserialization_error", "stream_name", id="list"),
        pytest.param({"stream_name": True}, "deserialization_error", "stream_name", id="boolean"),
        pytest.param({"stream_name": "s", "group_id": 3}, "deserialization_error", "group_id", id="group-integer"),
        pytest.param({"stream_name": "s", "item_id": {}}, "deserialization_error", "item_id", id="item-object"),
        pytest.param({"stream_name": "s", "bogus": "x"}, "deserialization_error", "bogus", id="unknown-key"),
        pytest.param({"stream_name": "s", "streamName": "s"}, "deserialization_error", "streamName", id="camel"),
        pytest.param(["s"], "REGISTRY_ERROR", "object", id="list-config"),
        pytest.param("s", "REGISTRY_ERROR", "object", id="string-config"),
        pytest.param(7, "REGISTRY_ERROR", "object", id="number-config"),
    ],
)
def test_a_bad_stream_trigger_config_is_refused_with_a_clear_message(
    service: RegistryService, config: Any, code: str, mentions: str
) -> None:
    register(service, "f")
    message = error(trigger(service, "stream", "f", config), code)
    assert mentions in message
    assert result(call(service, "list_triggers", {})) == []


def test_an_unknown_config_key_is_reported_as_an_unknown_field(service: RegistryService) -> None:
    register(service, "f")
    message = error(trigger(service, "stream", "f", {"stream_name": "s", "bogus": "x"}), "deserialization_error")
    assert "invalid type" not in message
    assert "unknown field `bogus`" in message


@pytest.mark.parametrize("type_", ["stream:join", "stream:leave"])
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="empty"),
        pytest.param(None, id="omitted"),
        pytest.param({"stream_name": "chat"}, id="stream_name"),
        pytest.param({"group_id": "room-1"}, id="group_id"),
        pytest.param({"condition_function_id": "cond"}, id="condition"),
        pytest.param({"stream_name": "chat", "group_id": "room-1", "condition_function_id": "cond"}, id="all"),
    ],
)
def test_join_and_leave_accept_an_empty_config_and_each_filter(
    service: RegistryService, type_: str, config: dict[str, Any] | None
) -> None:
    register(service, "f", "cond")
    view = result(trigger(service, type_, "f", config, "t-1"))
    assert view == {"id": "t-1", "type": type_, "function_id": "f", "config": config or {}}
    assert result(call(service, "list_triggers", {})) == [view]


@pytest.mark.parametrize(
    ("type_", "config"),
    [
        ("stream:join", {"item_id": "i"}),
        ("stream:leave", {"stream_name": 1}),
        ("stream:join", ["chat"]),
    ],
)
def test_join_and_leave_refuse_unknown_or_mistyped_filters(service: RegistryService, type_: str, config: Any) -> None:
    register(service, "f")
    response = trigger(service, type_, "f", config)
    assert response["error"]["code"] in ("deserialization_error", "REGISTRY_ERROR")
    assert result(call(service, "list_triggers", {})) == []


@pytest.mark.parametrize("type_", ["stream", "stream:join", "stream:leave"])
def test_an_unregistered_condition_function_is_refused(service: RegistryService, type_: str) -> None:
    register(service, "f")
    config = {"stream_name": "s", "condition_function_id": "cond::missing"}
    message = error(trigger(service, type_, "f", config), "function_not_found")
    assert "cond::missing" in message
    assert result(call(service, "list_triggers", {})) == []


def test_list_triggers_view_shape_in_registration_order(store: MemoryRegistryStore) -> None:
    clock = FixedClock()
    service = RegistryService(store, clock)
    register(service, "h", "cond")
    views = []
    for trigger_id, type_, config in [
        ("z", "stream", {"stream_name": "s", "group_id": "g", "item_id": "i", "condition_function_id": "cond"}),
        ("a", "stream:join", {}),
        ("m", "stream:leave", {"group_id": "g"}),
    ]:
        views.append(result(trigger(service, type_, "h", config, trigger_id)))
        clock.advance(1)
    assert views[0] == {
        "id": "z",
        "type": "stream",
        "function_id": "h",
        "config": {"stream_name": "s", "group_id": "g", "item_id": "i", "condition_function_id": "cond"},
    }
    listed = result(call(service, "list_triggers", {}))
    assert listed == views
    assert all(set(view) == {"id", "type", "function_id", "config"} for view in listed)


def test_a_trigger_without_id_gets_a_fresh_one(service: RegistryService) -> None:
    register(service, "f")
    first = result(trigger(service, "stream", "f", {"stream_name": "s"}))
    second = result(trigger(service, "stream", "f", {"stream_name": "s"}))
    assert first["id"] and second["id"] and first["id"] != second["id"]
    assert len(result(call(service, "list_triggers", {}))) == 2


def test_registering_the_same_trigger_id_twice_replaces_it(
    store: MemoryRegistryStore, service: RegistryService
) -> None:
    register(service, "old", "new")
    result(trigger(service, "stream", "old", {"stream_name": "s"}, "t-1"))
    replaced = result(trigger(service, "stream", "new", {"stream_name": "s", "group_id": "g"}, "t-1"))
    assert result(call(service, "list_triggers", {})) == [replaced]
    assert replaced["function_id"] == "new"
    # It fires once per change (upstream would have indexed it twice), and as registered the second time.
    invoker = FakeInvoker({"lambda-old": lambda p: None, "lambda-new": lambda p: None})
    triggers = StreamTriggers(TriggerCache(store), invoker, MemoryTriggerLedger())
    assert triggers.run(Change("s", "g", "i", "create", {}, 1), "change-1") == 1
    assert [ref for ref, _ in invoker.async_calls] == ["lambda-new"]


def test_unregistering_an_unknown_trigger_is_trigger_not_found(service: RegistryService) -> None:
    message = error(call(service, "unregister_trigger", {"id": "nope"}), "trigger_not_found")
    assert "nope" in message


def test_unregistering_a_trigger_removes_it_once(service: RegistryService) -> None:
    register(service, "f")
    result(trigger(service, "stream:join", "f", {}, "t-1"))
    assert call(service, "unregister_trigger", {"id": "t-1"}) == {"result": {"id": "t-1"}}
    assert result(call(service, "list_triggers", {})) == []
    error(call(service, "unregister_trigger", {"id": "t-1"}), "trigger_not_found")


@pytest.mark.parametrize(
    ("name", "payload", "field"),
    [
        ("register_function", {"function_id": "f"}, "target"),
        ("register_function", {"target": "t"}, "function_id"),
        ("register_function", {"function_id": 1, "target": "t"}, "function_id"),
        ("register_function", {"function_id": "f", "target": None}, "target"),
        ("register_function", {"function_id": "", "target": "t"}, "function_id"),
        ("register_function", {"function_id": "f" * 257, "target": "t"}, "function_id"),
        ("register_function", {"function_id": "f", "target": "t", "description": 3}, "description"),
        ("unregister_function", {}, "function_id"),
        ("unregister_function", {"function_id": ["f"]}, "function_id"),
        ("register_trigger", {"function_id": "f", "config": {}}, "type"),
        ("register_trigger", {"type": "stream", "config": {"stream_name": "s"}}, "function_id"),
        ("register_trigger", {"type": 1, "function_id": "f"}, "type"),
        ("register_trigger", {"type": "stream", "function_id": "", "config": {"stream_name": "s"}}, "function_id"),
        ("register_trigger", {"type": "stream", "function_id": "f", "config": {"stream_name": "s"}, "id": ""}, "id"),
        ("register_trigger", {"type": "stream", "function_id": "f", "config": {"stream_name": "s"}, "id": 4}, "id"),
        ("unregister_trigger", {}, "id"),
        ("unregister_trigger", {"id": None}, "id"),
    ],
)
def test_malformed_payloads_are_deserialization_errors(
    service: RegistryService, store: MemoryRegistryStore, name: str, payload: dict[str, Any], field: str
) -> None:
    register(service, "f")
    message = error(call(service, name, payload), "deserialization_error")
    assert message.startswith(f"Failed to deserialize input for registry::{name}: ")
    assert f"`{field}`" in message
    assert list(store.function_records) == ["f"] and store.trigger_records == {}


@pytest.mark.parametrize("name", list(REGISTRY_FUNCTIONS))
@pytest.mark.parametrize("payload", [[], "x", 3, None], ids=["list", "string", "number", "null"])
def test_a_payload_that_is_not_an_object_is_a_deserialization_error(
    service: RegistryService, name: str, payload: Any
) -> None:
    event = {"function_id": name, "payload": payload}
    response = REGISTRY_FUNCTIONS.invoke(service, event)
    message = error(response, "deserialization_error")
    assert message.startswith(f"Failed to deserialize input for {name}: invalid type: ")
    assert message.endswith("expected an object")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("register_function", {"function_id": "", "target": "t"}),
        ("register_trigger", {"type": "stream", "function_id": "f", "config": {"stream_name": "s"}, "id": ""}),
    ],
)
def test_an_empty_id_is_not_reported_as_a_wrong_type(service: RegistryService, name: str, payload: Any) -> None:
    register(service, "f")
    message = error(call(service, name, payload), "deserialization_error")
    assert "invalid type" not in message


def test_list_functions_and_triggers_accept_an_omitted_payload(service: RegistryService) -> None:
    assert call(service, "list_functions") == {"result": []}
    assert call(service, "list_triggers") == {"result": []}


def test_an_unknown_registry_function_is_function_not_found(service: RegistryService) -> None:
    message = error(call(service, "register_everything", {}), "function_not_found")
    assert "registry::register_everything" in message


def test_stream_functions_are_not_in_the_registry_table(service: RegistryService) -> None:
    response = REGISTRY_FUNCTIONS.invoke(service, {"function_id": "stream::get", "payload": {}})
    error(response, "function_not_found")
