"""StreamClient over both of its ways in: in-process (``direct``) and the Lambda Invoke API (``via_lambda``).

``direct`` runs over moto in-process; ``via_lambda`` goes through a real LambdaEndpoint on loopback to the real
``stream_functions.handler``, whose DynamoDB is an embedded moto server. Every test runs against both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from iii_stream import wiring
from iii_stream.client import StreamCallError, StreamClient
from iii_stream.config import Settings
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint
from iii_stream.infra.template import create_tables
from iii_stream.wiring import build_stream_service

from tests.integration.conftest import ITEMS_TABLE


@dataclass
class Target:
    client: StreamClient
    dynamodb: Any  # a raw client on the same DynamoDB, to look at what was stored
    table: str


@dataclass
class LambdaStack:
    dynamodb_url: str
    endpoint_url: str


def _broken_handler(event: Any, context: Any) -> Any:
    raise RuntimeError("kaput")


def _odd_handler(event: Any, context: Any) -> Any:
    return {"unexpected": True}


@pytest.fixture(scope="module")
def lambda_stack() -> Iterator[LambdaStack]:
    """One moto server and one Lambda endpoint for the module (each test gets its own table)."""
    dynamodb = EmbeddedDynamoDB()
    dynamodb_url = dynamodb.start()
    functions = {
        "StreamFunction": load_handler("stream_functions.handler"),
        "BrokenFunction": _broken_handler,
        "OddFunction": _odd_handler,
    }
    endpoint = LambdaEndpoint(functions, port=0)
    try:
        yield LambdaStack(dynamodb_url, endpoint.start())
    finally:
        endpoint.stop()
        dynamodb.stop()


@pytest.fixture
def lambda_target(lambda_stack: LambdaStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    table = f"items-{uuid.uuid4().hex[:12]}"
    admin = boto3.client("dynamodb", endpoint_url=lambda_stack.dynamodb_url)
    create_tables(admin, {"ItemsTable": table})
    monkeypatch.setenv("ITEMS_TABLE", table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", lambda_stack.dynamodb_url)
    wiring.reset()
    try:
        yield Target(StreamClient.via_lambda(endpoint_url=lambda_stack.endpoint_url), admin, table)
    finally:
        wiring.reset()


@pytest.fixture
def direct_target(dynamodb: Any) -> Target:
    service = build_stream_service(dynamodb, Settings(items_table=ITEMS_TABLE))
    return Target(StreamClient.direct(service), dynamodb, ITEMS_TABLE)


@pytest.fixture(params=["direct", "via_lambda"])
def target(request: pytest.FixtureRequest) -> Target:
    target: Target = request.getfixturevalue("direct_target" if request.param == "direct" else "lambda_target")
    return target


def test_set_get_and_overwrite(target: Target) -> None:
    client = target.client
    assert client.get("chat", "room-1", "m1") is None
    assert client.set("chat", "room-1", "m1", {"text": "hi"}) == {"old_value": None, "new_value": {"text": "hi"}}
    assert client.set("chat", "room-1", "m1", [1, "two", None]) == {
        "old_value": {"text": "hi"},
        "new_value": [1, "two", None],
    }
    assert client.get("chat", "room-1", "m1") == [1, "two", None]


def test_any_json_value_round_trips(target: Target) -> None:
    values: list[Any] = [None, 0, 2.5, "", "ünïcode ✓", [], {}, {"deep": {"a": [True, False]}}, 2**63, -(2**70)]
    for index, value in enumerate(values):
        assert target.client.set("s", "g", f"i{index:02}", value) == {"old_value": None, "new_value": value}
        assert target.client.get("s", "g", f"i{index:02}") == value
    assert target.client.list("s", "g") == values


def test_set_with_ttl_stores_the_expiry_and_set_without_ttl_clears_it(target: Target) -> None:
    before = int(time.time())
    assert target.client.set("chat", "room-1", "m1", {"n": 1}, ttl=60) == {"old_value": None, "new_value": {"n": 1}}
    after = int(time.time()) + 1
    assert target.client.get("chat", "room-1", "m1") == {"n": 1}
    key = {"pk": {"S": 'I["chat","room-1"]'}, "sk": {"S": "#m1"}}
    stored = target.dynamodb.get_item(TableName=target.table, Key=key)["Item"]
    assert before + 60 <= int(stored["expires_at"]["N"]) <= after + 60
    target.client.set("chat", "room-1", "m1", {"n": 2})
    assert "expires_at" not in target.dynamodb.get_item(TableName=target.table, Key=key)["Item"]


def test_update_applies_ops_and_reports_op_errors_in_the_result(target: Target) -> None:
    client = target.client
    first = client.update("chat", "room-1", "m1", [{"type": "increment", "path": "likes", "by": 2}])
    assert first == {"old_value": None, "new_value": {"likes": 2}}
    second = client.update(
        "chat",
        "room-1",
        "m1",
        [{"type": "set", "path": "seen", "value": True}, {"type": "increment", "path": "seen", "by": 1}],
        ttl=30,
    )
    assert second["old_value"] == {"likes": 2}
    assert second["new_value"] == {"likes": 2, "seen": True}
    (error,) = second["errors"]
    assert set(error) == {"op_index", "code", "message", "doc_url"}
    assert error["op_index"] == 1
    assert error["code"] == "increment.not_number"
    assert client.get("chat", "room-1", "m1") == {"likes": 2, "seen": True}


def test_delete_returns_the_old_value_then_null(target: Target) -> None:
    client = target.client
    client.set("chat", "room-1", "m1", "bye")
    assert client.delete("chat", "room-1", "m1") == {"old_value": "bye"}
    assert client.get("chat", "room-1", "m1") is None
    assert client.delete("chat", "room-1", "m1") == {"old_value": None}


def test_list_returns_the_bare_values_ordered_by_item_id(target: Target) -> None:
    client = target.client
    for item_id in ("c", "a", "b"):
        client.set("chat", "room-1", item_id, {"id": item_id})
    client.set("chat", "room-2", "z", "elsewhere")
    assert client.list("chat", "room-1") == [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert client.list("chat", "empty") == []


def test_list_groups_and_list_all(target: Target) -> None:
    client = target.client
    assert client.list_all() == {"stream": [], "count": 0}
    client.set("chat", "room-2", "m", 1)
    client.set("chat", "room-1", "m", 1)
    client.set("chat", "room-1", "n", 1)
    client.set("odd:name", "g:1", "i", 1)
    assert sorted(client.list_groups("chat")) == ["room-1", "room-2"]
    assert client.list_groups("odd:name") == ["g:1"]
    assert client.list_groups("nothing") == []
    assert client.list_all() == {
        "stream": [{"id": "chat", "groups": ["room-1", "room-2"]}, {"id": "odd:name", "groups": ["g:1"]}],
        "count": 2,
    }
    client.delete("chat", "room-2", "m")
    assert client.list_groups("chat") == ["room-1"]


def test_send_returns_null_and_is_not_an_item(target: Target) -> None:
    client = target.client
    assert client.send("chat", "room-9", "typing", {"user": "ann"}) is None
    assert client.send("chat", "room-9", "typing", {"user": "bob"}, id="m1") is None
    assert client.list("chat", "room-9") == []
    assert client.list_groups("chat") == []
    assert client.list_all() == {"stream": [], "count": 0}


def test_call_with_a_missing_field_raises_deserialization_error_and_writes_nothing(target: Target) -> None:
    with pytest.raises(StreamCallError) as caught:
        target.client.call("stream::set", {"stream_name": "chat", "group_id": "room-1", "item_id": "m1"})
    assert caught.value.code == "deserialization_error"
    assert caught.value.message == "Failed to deserialize input for stream::set: missing field `data`"
    assert caught.value.to_body() == {"code": caught.value.code, "message": caught.value.message}
    assert target.client.list_all() == {"stream": [], "count": 0}


def test_call_with_a_wrong_type_raises_deserialization_error(target: Target) -> None:
    with pytest.raises(StreamCallError) as caught:
        target.client.get("chat", "room-1", 7)  # type: ignore[arg-type]
    assert caught.value.code == "deserialization_error"
    assert "stream::get" in caught.value.message


def test_unknown_function_id_raises_function_not_found(target: Target) -> None:
    with pytest.raises(StreamCallError) as caught:
        target.client.call("stream::nope", {})
    assert caught.value.code == "function_not_found"
    assert caught.value.message == "Function stream::nope not found."


def test_call_without_payload_sends_an_empty_object(target: Target) -> None:
    assert target.client.call("stream::list_all") == {"stream": [], "count": 0}


def test_oversized_item_raises_payload_too_large(target: Target) -> None:
    with pytest.raises(StreamCallError) as caught:
        target.client.set("chat", "room-1", "big", "x" * 200_000)
    assert caught.value.code == "STREAM_PAYLOAD_TOO_LARGE"
    assert target.client.get("chat", "room-1", "big") is None


def test_lambda_function_error_raises_function_error(lambda_stack: LambdaStack) -> None:
    client = StreamClient.via_lambda("BrokenFunction", endpoint_url=lambda_stack.endpoint_url)
    with pytest.raises(StreamCallError) as caught:
        client.list_all()
    assert caught.value.code == "function_error"
    assert caught.value.message == "BrokenFunction failed: kaput"


def test_lambda_answer_without_result_raises_invalid_response(lambda_stack: LambdaStack) -> None:
    client = StreamClient.via_lambda("OddFunction", endpoint_url=lambda_stack.endpoint_url)
    with pytest.raises(StreamCallError) as caught:
        client.list_all()
    assert caught.value.code == "invalid_response"


def test_unknown_lambda_function_is_a_client_error_not_a_stream_error(lambda_stack: LambdaStack) -> None:
    client = StreamClient.via_lambda("NoSuchFunction", endpoint_url=lambda_stack.endpoint_url)
    with pytest.raises(ClientError) as caught:
        client.list_all()
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
