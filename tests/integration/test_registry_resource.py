"""Custom::IiiStreamRegistration on moto: CloudFormation's Create/Update/Delete events, answered by a PUT.

The presigned ResponseURL is a small HTTP server on loopback that records every PUT, as S3 would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest
from iii_stream import wiring
from iii_stream.client import RegistryClient
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.template import create_tables

from tests.conftest import FakeLambdaContext

pytestmark = pytest.mark.integration

TRIGGERS = "iii-stream-triggers-registration"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/app/00000000-0000-0000-0000-000000000001"


class ResponseBucket:
    """Answers PUTs like a presigned S3 URL and keeps each body and its headers."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        bucket = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - the http.server hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                bucket.puts.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    def url(self, request_id: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/cfn-response/{request_id}?X-Amz-Signature=abc"

    def __enter__(self) -> ResponseBucket:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Stack:
    """Sends CloudFormation custom-resource events to the handler, as the service would."""

    def __init__(self, bucket: ResponseBucket) -> None:
        self._bucket = bucket
        self._handler = load_handler("registry_resource.handler")
        self._requests = 0

    def send(self, request: str, logical_id: str, props: dict[str, Any], **extra: Any) -> dict[str, Any]:
        self._requests += 1
        request_id = f"req-{self._requests}"
        event = {
            "RequestType": request,
            "ResponseURL": self._bucket.url(request_id),
            "StackId": STACK_ID,
            "RequestId": request_id,
            "ResourceType": "Custom::IiiStreamRegistration",
            "LogicalResourceId": logical_id,
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:reg", **props},
            **extra,
        }
        returned = self._handler(event, FakeLambdaContext())
        path, headers, body = self._bucket.puts[-1]
        assert path.startswith(f"/cfn-response/{request_id}?")
        assert headers.get("Content-Type", "") == ""
        assert body == returned
        return body


FUNCTION = {"Kind": "function", "FunctionId": "presence::on-change", "Target": "app-presence"}
TRIGGER = {
    "Kind": "trigger",
    "TriggerId": "presence-changes",
    "Type": "stream",
    "FunctionId": "presence::on-change",
    "Config": {"stream_name": "presence"},
}


@pytest.fixture
def stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("ITEMS_TABLE", "iii-stream-items-registration")
    monkeypatch.setenv("TRIGGERS_TABLE", TRIGGERS)
    create_tables(boto3.client("dynamodb"), {"TriggersTable": TRIGGERS})
    wiring.reset()
    with ResponseBucket() as bucket:
        yield Stack(bucket)
    wiring.reset()


def registry() -> RegistryClient:
    return RegistryClient.direct(wiring.registry_service())


def test_create_registers_a_function_and_a_trigger(stack: Stack) -> None:
    # GIVEN a function and a trigger declared in a stack
    # WHEN CloudFormation creates them
    function = stack.send("Create", "PresenceFunction", FUNCTION)
    trigger = stack.send("Create", "PresenceTrigger", TRIGGER)
    # THEN both answer SUCCESS with the ids as physical ids, and the registry holds them
    assert function["Status"] == "SUCCESS"
    assert function["PhysicalResourceId"] == "presence::on-change"
    assert function["Data"] == {"FunctionId": "presence::on-change"}
    assert (function["StackId"], function["LogicalResourceId"], function["RequestId"]) == (
        STACK_ID,
        "PresenceFunction",
        "req-1",
    )
    assert trigger["Status"] == "SUCCESS"
    assert trigger["PhysicalResourceId"] == "presence-changes"
    assert registry().list_functions() == [
        {"function_id": "presence::on-change", "target": "app-presence", "description": ""}
    ]
    assert registry().list_triggers() == [
        {
            "id": "presence-changes",
            "type": "stream",
            "function_id": "presence::on-change",
            "config": {"stream_name": "presence"},
        }
    ]


def test_a_refused_registration_answers_failed_with_the_registry_message(stack: Stack) -> None:
    # WHEN a trigger names a function nobody registered
    answer = stack.send("Create", "PresenceTrigger", TRIGGER)
    # THEN CloudFormation hears why, and the rollback's Delete of it succeeds without touching anything
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "function_not_found: Function presence::on-change is not registered; register it first."
    assert answer["PhysicalResourceId"].startswith("iii-stream-registration-failed:")
    rollback = stack.send("Delete", "PresenceTrigger", TRIGGER, PhysicalResourceId=answer["PhysicalResourceId"])
    assert rollback["Status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({**TRIGGER, "Type": "stream:everything"}, "Unknown trigger type 'stream:everything'"),
        ({**TRIGGER, "Config": {}}, "A stream trigger needs a non-empty config.stream_name."),
        ({"Kind": "function", "FunctionId": "f"}, "deserialization_error"),
        ({"Kind": "queue"}, "Kind must be 'function' or 'trigger', got 'queue'."),
    ],
)
def test_invalid_properties_answer_failed(stack: Stack, props: dict[str, Any], reason: str) -> None:
    stack.send("Create", "PresenceFunction", FUNCTION)
    answer = stack.send("Create", "Registration", props)
    assert answer["Status"] == "FAILED"
    assert reason in answer["Reason"]


def test_update_replaces_in_place_and_a_new_id_is_a_new_resource(stack: Stack) -> None:
    stack.send("Create", "PresenceFunction", FUNCTION)
    stack.send("Create", "PresenceTrigger", TRIGGER)
    # WHEN the trigger's config changes (same id)
    changed = {**TRIGGER, "Config": {"stream_name": "presence", "group_id": "room-1"}}
    answer = stack.send(
        "Update", "PresenceTrigger", changed, PhysicalResourceId="presence-changes", OldResourceProperties=TRIGGER
    )
    # THEN the same trigger now has the new config
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "presence-changes")
    assert [t["config"] for t in registry().list_triggers()] == [{"stream_name": "presence", "group_id": "room-1"}]
    # WHEN the function's target changes, it is re-registered under the same id
    retargeted = {**FUNCTION, "Target": "app-presence-v2"}
    answer = stack.send(
        "Update",
        "PresenceFunction",
        retargeted,
        PhysicalResourceId="presence::on-change",
        OldResourceProperties=FUNCTION,
    )
    assert answer["PhysicalResourceId"] == "presence::on-change"
    assert registry().list_functions()[0]["target"] == "app-presence-v2"
    # WHEN the trigger id changes, the answer carries the new id (CloudFormation then deletes the old one)
    renamed = {**TRIGGER, "TriggerId": "presence-changes-2"}
    answer = stack.send(
        "Update", "PresenceTrigger", renamed, PhysicalResourceId="presence-changes", OldResourceProperties=TRIGGER
    )
    assert answer["PhysicalResourceId"] == "presence-changes-2"
    assert (
        stack.send("Delete", "PresenceTrigger", TRIGGER, PhysicalResourceId="presence-changes")["Status"] == "SUCCESS"
    )
    assert [t["id"] for t in registry().list_triggers()] == ["presence-changes-2"]


def test_a_trigger_without_an_id_keeps_the_registry_id_across_updates(stack: Stack) -> None:
    stack.send("Create", "PresenceFunction", FUNCTION)
    anonymous = {k: v for k, v in TRIGGER.items() if k != "TriggerId"}
    created = stack.send("Create", "PresenceTrigger", anonymous)
    trigger_id = created["PhysicalResourceId"]
    assert created["Data"] == {"TriggerId": trigger_id}
    updated = stack.send(
        "Update",
        "PresenceTrigger",
        {**anonymous, "Config": {"stream_name": "other"}},
        PhysicalResourceId=trigger_id,
        OldResourceProperties=anonymous,
    )
    assert updated["PhysicalResourceId"] == trigger_id
    assert [(t["id"], t["config"]) for t in registry().list_triggers()] == [(trigger_id, {"stream_name": "other"})]


def test_delete_unregisters_and_deleting_what_is_gone_succeeds(stack: Stack) -> None:
    stack.send("Create", "PresenceFunction", FUNCTION)
    stack.send("Create", "PresenceTrigger", TRIGGER)
    # WHEN the function is deleted while a trigger still uses it, the registry refuses
    refused = stack.send("Delete", "PresenceFunction", FUNCTION, PhysicalResourceId="presence::on-change")
    assert refused["Status"] == "FAILED"
    assert "used by trigger(s) presence-changes" in refused["Reason"]
    assert refused["PhysicalResourceId"] == "presence::on-change"
    # WHEN the stack goes (dependents first), both are removed
    for logical_id, props, physical_id in [
        ("PresenceTrigger", TRIGGER, "presence-changes"),
        ("PresenceFunction", FUNCTION, "presence::on-change"),
    ]:
        assert stack.send("Delete", logical_id, props, PhysicalResourceId=physical_id)["Status"] == "SUCCESS"
    assert registry().list_triggers() == []
    assert registry().list_functions() == []
    # AND deleting them again (already gone) still succeeds
    again = stack.send("Delete", "PresenceTrigger", TRIGGER, PhysicalResourceId="presence-changes")
    assert again["Status"] == "SUCCESS"
    assert stack.send("Delete", "PresenceFunction", FUNCTION, PhysicalResourceId="presence::on-change")["Status"] == (
        "SUCCESS"
    )
