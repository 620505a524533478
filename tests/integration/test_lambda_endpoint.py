"""The local Lambda Invoke endpoint, called by a real boto3 ``lambda`` client over loopback (aws-wire-shapes.md 4)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

ARN_PREFIX = "arn:aws:lambda:us-east-1:123456789012:function:"


class Recorder:
    """The handlers under test; remembers the events and contexts they were given (cleared per test)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.events: list[Any] = []
        self.contexts: list[Any] = []
        self.boom_contexts: list[Any] = []
        self.ran = threading.Event()
        self.boomed = threading.Event()

    def echo(self, event: Any, context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        self.ran.set()
        return {"echo": event}

    def boom(self, event: Any, context: Any) -> Any:
        self.boom_contexts.append(context)
        self.boomed.set()
        raise ValueError("boom")

    def nothing(self, event: Any, context: Any) -> None:
        self.events.append(event)
        return None


def _lambda_client(endpoint_url: str) -> Any:
    config = Config(signature_version=UNSIGNED, region_name="us-east-1", retries={"mode": "standard"})
    return boto3.client("lambda", endpoint_url=endpoint_url, config=config)


# One endpoint per module: stopping one waits for serve_forever's 0.5 s poll.
@pytest.fixture(scope="module")
def _recorder() -> Recorder:
    return Recorder()


class Queueable:
    """A handler with a ``queued(event)`` door, as the local runtime's have: Event invocations must take it."""

    def __init__(self) -> None:
        self.doors: list[str] = []
        self.used = threading.Event()

    def __call__(self, event: Any, context: Any) -> Any:
        self.doors.append("call")
        self.used.set()
        return "called"

    def queued(self, event: Any) -> Any:
        self.doors.append("queued")
        self.used.set()
        return "queued"


QUEUEABLE = Queueable()


@pytest.fixture(scope="module")
def endpoint(_recorder: Recorder) -> Iterator[LambdaEndpoint]:
    functions = {"Echo": _recorder.echo, "Boom": _recorder.boom, "Nothing": _recorder.nothing, "Queueable": QUEUEABLE}
    server = LambdaEndpoint(functions, port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def recorder(_recorder: Recorder) -> Recorder:
    _recorder.reset()
    return _recorder


@pytest.fixture
def client(endpoint: LambdaEndpoint, recorder: Recorder) -> Any:
    return _lambda_client(endpoint.endpoint_url)


def _payload(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def test_endpoint_url_is_loopback_with_the_ephemeral_port(endpoint: LambdaEndpoint) -> None:
    host, _, port = endpoint.endpoint_url.removeprefix("http://").partition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0


def test_request_response_returns_the_json_result_and_executed_version(client: Any, recorder: Recorder) -> None:
    event = {"a": [1, 2, {"b": None}], "text": "héllo ✓"}
    response = client.invoke(FunctionName="Echo", Payload=json.dumps(event).encode())
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert _payload(response) == {"echo": event}
    assert recorder.events == [event]


def test_handler_gets_a_lambda_context(client: Any, recorder: Recorder) -> None:
    client.invoke(FunctionName="Echo", Payload=b"{}")
    (context,) = recorder.contexts
    assert context.function_name == "Echo"
    assert context.invoked_function_arn == ARN_PREFIX + "Echo"
    assert isinstance(context.memory_limit_in_mb, str)
    assert 0 < context.get_remaining_time_in_millis() <= context.timeout_ms


def test_no_payload_reaches_the_handler_as_an_empty_object(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Echo")
    assert response["StatusCode"] == 200
    assert _payload(response) == {"echo": {}}


def test_handler_returning_none_gives_null(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Nothing", Payload=b"[1]")
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert response["Payload"].read() == b"null"
    assert recorder.events == [[1]]


def test_raising_handler_is_an_unhandled_function_error_with_status_200(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Boom", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["ExecutedVersion"] == "$LATEST"
    body = _payload(response)
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorMessage"] == "boom"
    assert body["errorType"] == "ValueError"
    assert body["requestId"] == recorder.boom_contexts[0].aws_request_id
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert all(isinstance(line, str) for line in body["stackTrace"])
    assert 'raise ValueError("boom")' in body["stackTrace"][-1]


def test_unknown_function_is_resource_not_found(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.invoke(FunctionName="nope", Payload=b"{}")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert response["Type"] == "User"
    assert response["Error"]["Message"] == f"Function not found: {ARN_PREFIX}nope"


@pytest.mark.parametrize("function_name", [ARN_PREFIX + "Echo", ARN_PREFIX + "Echo:live", "Echo:live", "Echo:7"])
def test_arn_and_qualified_names_reach_the_handler(client: Any, recorder: Recorder, function_name: str) -> None:
    response = client.invoke(FunctionName=function_name, Payload=b'{"n": 1}')
    assert response["StatusCode"] == 200
    assert _payload(response) == {"echo": {"n": 1}}
    assert recorder.events == [{"n": 1}]


def test_qualifier_parameter_reaches_the_handler(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Echo", Qualifier="live", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert _payload(response) == {"echo": {}}


def test_event_invocation_is_accepted_with_202_and_runs_the_handler(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Echo", InvocationType="Event", Payload=b'{"async": true}')
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    assert recorder.ran.wait(timeout=5), "the Event invocation never ran the handler"
    assert recorder.events == [{"async": True}]


def test_event_invocation_of_a_raising_handler_is_still_202(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Boom", InvocationType="Event", Payload=b"{}")
    assert response["StatusCode"] == 202
    assert "FunctionError" not in response
    assert recorder.boomed.wait(timeout=5), "the Event invocation never ran the handler"


def test_dry_run_is_204_and_does_not_run_the_handler(client: Any, recorder: Recorder) -> None:
    response = client.invoke(FunctionName="Echo", InvocationType="DryRun", Payload=b"{}")
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    assert recorder.events == []


def test_non_json_payload_is_invalid_request_content(client: Any, recorder: Recorder) -> None:
    with pytest.raises(client.exceptions.InvalidRequestContentException) as caught:
        client.invoke(FunctionName="Echo", Payload=b"not json{")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidRequestContentException"
    assert response["Error"]["Message"] == "Could not parse request body into json"
    assert response["Type"] == "User"
    assert recorder.events == []


def test_the_connection_is_reused_across_calls(client: Any) -> None:
    # HTTP/1.1 keep-alive: several calls on one pooled connection must each get their own answer.
    results = [_payload(client.invoke(FunctionName="Echo", Payload=json.dumps(i).encode())) for i in range(5)]
    assert results == [{"echo": i} for i in range(5)]


def test_concurrent_invocations_are_answered_independently(client: Any) -> None:
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        results[i] = _payload(client.invoke(FunctionName="Echo", Payload=json.dumps({"i": i}).encode()))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == {i: {"echo": {"i": i}} for i in range(8)}


def test_stop_returns_promptly_with_a_keep_alive_connection_open_and_frees_the_port() -> None:
    server = LambdaEndpoint({"Nothing": lambda event, context: None}, port=0)
    url = server.start()
    try:
        client = _lambda_client(url)
        assert client.invoke(FunctionName="Nothing")["StatusCode"] == 200
    finally:
        started = time.monotonic()
        server.stop()
    # The client still holds its pooled connection; stop must not wait for it.
    assert time.monotonic() - started < 3
    host, port = url.removeprefix("http://").split(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_an_event_invocation_goes_through_the_handlers_queue_and_a_request_response_does_not(client: Any) -> None:
    QUEUEABLE.doors.clear()
    assert _payload(client.invoke(FunctionName="Queueable", Payload=b"{}")) == "called"
    QUEUEABLE.used.clear()
    assert client.invoke(FunctionName="Queueable", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    assert QUEUEABLE.used.wait(timeout=5)
    assert QUEUEABLE.doors == ["call", "queued"]
