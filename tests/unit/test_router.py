"""Function routing and input validation: upstream's codes, a message naming the field, nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from iii_stream.core.service import STREAM_FUNCTIONS, StreamService

from tests.fakes import FixedClock, MemoryItemStore

invoke = STREAM_FUNCTIONS.invoke

KEY = {"stream_name": "s", "group_id": "g", "item_id": "i"}
VALID: dict[str, dict[str, Any]] = {
    "stream::set": {**KEY, "data": None},
    "stream::get": KEY,
    "stream::delete": KEY,
    "stream::update": {**KEY, "ops": []},
    "stream::list": {"stream_name": "s", "group_id": "g"},
    "stream::list_groups": {"stream_name": "s"},
    "stream::list_all": {},
    "stream::send": {"stream_name": "s", "group_id": "g", "type": "t", "data": None},
}


@pytest.fixture
def store() -> MemoryItemStore:
    return MemoryItemStore()


@pytest.fixture
def service(store: MemoryItemStore) -> StreamService:
    return StreamService(store, FixedClock())


def _missing_field_cases() -> list[Any]:
    cases = []
    for function_id, payload in VALID.items():
        for field in payload:
            if field == "id":
                continue
            reduced = {k: v for k, v in payload.items() if k != field}
            cases.append(pytest.param(function_id, reduced, field, id=f"{function_id}-without-{field}"))
    return cases


@pytest.mark.parametrize(("function_id", "payload", "field"), _missing_field_cases())
def test_every_required_field_is_required(
    service: StreamService, store: MemoryItemStore, function_id: str, payload: dict[str, Any], field: str
) -> None:
    response = invoke(service, {"function_id": function_id, "payload": payload})
    assert response == {
        "error": {
            "code": "deserialization_error",
            "message": f"Failed to deserialize input for {function_id}: missing field `{field}`",
        }
    }
    assert store.items == {} and store.events == []


@pytest.mark.parametrize("function_id", sorted(f for f in VALID if "stream_name" in VALID[f]))
@pytest.mark.parametrize("bad", [None, 1, True, [], {}])
def test_names_must_be_strings(service: StreamService, store: MemoryItemStore, function_id: str, bad: Any) -> None:
    payload = VALID[function_id]
    response = invoke(service, {"function_id": function_id, "payload": {**payload, "stream_name": bad}})
    message = response["error"]["message"]
    assert response["error"]["code"] == "deserialization_error"
    assert message.startswith(f"Failed to deserialize input for {function_id}: invalid type: ")
    assert message.endswith("expected a string at `stream_name`")
    assert store.items == {}


@pytest.mark.parametrize("function_id", sorted(VALID))
def test_valid_inputs_succeed_and_extra_fields_are_ignored(service: StreamService, function_id: str) -> None:
    response = invoke(service, {"function_id": function_id, "payload": {**VALID[function_id], "x": 1}})
    assert "result" in response


@pytest.mark.parametrize("payload", [None, [], "text", 3])
def test_a_payload_that_is_not_an_object_is_a_deserialization_error(service: StreamService, payload: Any) -> None:
    response = invoke(service, {"function_id": "stream::get", "payload": payload})
    assert response["error"]["code"] == "deserialization_error"
    assert "expected an object" in response["error"]["message"]


def test_send_id_is_optional_and_must_be_a_string(service: StreamService, store: MemoryItemStore) -> None:
    assert invoke(service, {"function_id": "stream::send", "payload": {**VALID["stream::send"], "id": None}})
    bad = invoke(service, {"function_id": "stream::send", "payload": {**VALID["stream::send"], "id": 5}})
    assert bad["error"]["message"].endswith("invalid type: integer `5`, expected a string at `id`")
    assert len(store.events) == 1


def test_null_data_is_present_data(service: StreamService) -> None:
    assert invoke(service, {"function_id": "stream::set", "payload": VALID["stream::set"]}) == {
        "result": {"old_value": None, "new_value": None}
    }


def test_unknown_function(service: StreamService) -> None:
    assert invoke(service, {"function_id": "stream::nope", "payload": {}}) == {
        "error": {"code": "function_not_found", "message": "Function stream::nope not found."}
    }


@pytest.mark.parametrize("event", [None, [], "stream::get", {"payload": {}}, {"function_id": 3}])
def test_an_invocation_without_a_function_id_is_refused(service: StreamService, event: Any) -> None:
    assert invoke(service, event)["error"]["code"] == "invalid_invocation"


def test_update_op_errors_name_the_op_and_field(service: StreamService) -> None:
    payload = {**KEY, "ops": [{"type": "set", "path": "a"}, {"type": "increment", "path": "n", "by": "1"}]}
    response = invoke(service, {"function_id": "stream::update", "payload": payload})
    assert response["error"] == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for stream::update: invalid type: string '1', expected i64 at "
        "`ops[1].by`",
    }


def test_non_json_values_never_reach_the_store(service: StreamService, store: MemoryItemStore) -> None:
    response = invoke(service, {"function_id": "stream::set", "payload": {**KEY, "data": float("nan")}})
    assert response["error"]["code"] == "deserialization_error"  # NaN is not JSON: refused at input
    assert store.items == {}
