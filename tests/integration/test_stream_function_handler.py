"""The real Lambda entry point, wired from the environment, against moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from iii_stream import wiring
from iii_stream.core.errors import SettingsError
from iii_stream.infra.handlers import load_handler

from tests.integration.conftest import ITEMS_TABLE

pytestmark = pytest.mark.integration


@pytest.fixture
def handler(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ITEMS_TABLE", ITEMS_TABLE)
    wiring.reset()
    yield load_handler("stream_functions.handler")
    wiring.reset()


def test_handler_runs_every_function_end_to_end(handler: Any, lambda_context: Any) -> None:
    key = {"stream_name": "chat", "group_id": "room", "item_id": "m1"}
    assert handler({"function_id": "stream::set", "payload": {**key, "data": {"t": "hi"}}}, lambda_context) == {
        "result": {"old_value": None, "new_value": {"t": "hi"}}
    }
    assert handler({"function_id": "stream::get", "payload": key}, lambda_context) == {"result": {"t": "hi"}}
    assert handler({"function_id": "stream::list_all", "payload": {}}, lambda_context) == {
        "result": {"stream": [{"id": "chat", "groups": ["room"]}], "count": 1}
    }


def test_handler_answers_errors_as_error_bodies_not_exceptions(handler: Any, lambda_context: Any) -> None:
    response = handler({"function_id": "stream::get", "payload": {"stream_name": "s"}}, lambda_context)
    assert response["error"]["code"] == "deserialization_error"
    assert handler("garbage", lambda_context)["error"]["code"] == "invalid_invocation"


def test_missing_table_setting_fails_loudly_at_cold_start(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    monkeypatch.delenv("ITEMS_TABLE", raising=False)
    wiring.reset()
    handler = load_handler("stream_functions.handler")
    with pytest.raises(SettingsError, match="ITEMS_TABLE"):
        handler({"function_id": "stream::list_all", "payload": {}}, lambda_context)
    wiring.reset()
