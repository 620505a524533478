"""End to end against a deployed stack, on real AWS (opt-in): ``make test-deployed STACK=<stack name>``.

Skipped unless ``IIIS_STACK_NAME`` names a stack deployed from template.yaml. It uses boto3's usual
credentials and region. Run it through ``make test-deployed`` (pytest ``--noconftest``): the shared
tests/conftest.py replaces every AWS credential with a fake so that no other test can reach AWS.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

STACK = os.environ.get("IIIS_STACK_NAME", "")
_FAKED = os.environ.get("AWS_ACCESS_KEY_ID") == "testing"  # tests/conftest.py was loaded

pytestmark = [
    pytest.mark.deployed,
    pytest.mark.skipif(not STACK, reason="deployed-stack tests: set IIIS_STACK_NAME (make test-deployed STACK=...)"),
    pytest.mark.skipif(
        bool(STACK) and _FAKED, reason="AWS credentials are faked by tests/conftest.py: run make test-deployed"
    ),
]

FRAME_TIMEOUT = 30.0  # a write reaches the socket through the DynamoDB stream and the broadcast Lambda


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


@pytest.fixture(scope="module")
def client(outputs: dict[str, str]) -> Any:
    from iii_stream.client import StreamClient

    return StreamClient.via_lambda(outputs["StreamFunctionName"], endpoint_url=None)


@pytest.fixture
def stream_name(client: Any) -> Iterator[str]:
    """A stream of its own per test; its one item is deleted afterwards (a delete of nothing is fine)."""
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    yield name
    client.delete(name, "room-1", "m1")


def test_the_stack_has_its_outputs(outputs: dict[str, str]) -> None:
    assert outputs["WebSocketURL"].startswith("wss://")
    for name in ("StreamFunctionName", "RegistryFunctionName", "ItemsTableName", "RegistrationServiceToken"):
        assert outputs[name]


def test_set_then_get_through_the_stream_function(client: Any, stream_name: str) -> None:
    created = client.set(stream_name, "room-1", "m1", {"id": "m1", "text": "hi"})
    assert created == {"old_value": None, "new_value": {"id": "m1", "text": "hi"}}
    assert client.get(stream_name, "room-1", "m1") == {"id": "m1", "text": "hi"}
    updated = client.update(stream_name, "room-1", "m1", [{"type": "set", "path": "seen", "value": True}])
    assert updated["new_value"] == {"id": "m1", "text": "hi", "seen": True}
    assert client.list_groups(stream_name) == ["room-1"]


def test_a_subscriber_sees_a_create_after_a_set(client: Any, outputs: dict[str, str], stream_name: str) -> None:
    from websockets.sync.client import connect

    subscription = {"subscriptionId": uuid.uuid4().hex, "streamName": stream_name, "groupId": "room-1"}
    with connect(outputs["WebSocketURL"], open_timeout=15) as socket:
        # GIVEN a client that joined a group and got its sync
        socket.send(json.dumps({"type": "join", "data": subscription}))
        sync = _next_frame(socket, lambda frame: frame["event"]["type"] == "sync")
        assert (sync["streamName"], sync["groupId"], sync["id"], sync["event"]["data"]) == (
            stream_name,
            "room-1",
            None,
            [],
        )
        # WHEN an item is set
        client.set(stream_name, "room-1", "m1", {"id": "m1", "text": "hi"})
        # THEN the client receives its create frame
        create = _next_frame(socket, lambda frame: frame["event"]["type"] == "create")
        assert (create["id"], create["event"]["data"]) == ("m1", {"id": "m1", "text": "hi"})
        socket.send(json.dumps({"type": "leave", "data": subscription}))


def _next_frame(socket: Any, wanted: Any) -> dict[str, Any]:
    deadline = time.monotonic() + FRAME_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {FRAME_TIMEOUT} s")
        frame = json.loads(socket.recv(timeout=remaining))
        if frame.get("type") == "stream" and wanted(frame):
            return dict(frame)
