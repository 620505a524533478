"""The local Lambda runtime as ``iii-stream local`` uses it: the real command as a subprocess on free ports, with
an app whose functions time out, exit, read their environment and get edited under ``--reload``; invoked with a
plain boto3 Lambda client, watched with a real WebSocket client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from iii_stream.testing import LocalProcess, LocalStack

APP = """
import os
import time

from iii_stream.app import App

app = App()
VERSION = "v1"


@app.function("slow::sleep", timeout=6)
def sleep(event, context):
    time.sleep(event.get("seconds", 0))
    return {"slept": event.get("seconds", 0)}


@app.function("crash::exit")
def crash(event, context):
    if event.get("exit"):
        os._exit(1)
    return {"pid": os.getpid()}


def _seen():
    return {name: os.environ.get(name) for name in ("GREETING", "ONLY_B", "STREAM_FUNCTION_NAME", "ITEMS_TABLE")}


@app.function("env::a", environment={"GREETING": "from a"})
def env_a(event, context):
    return _seen()


@app.function("env::b", environment={"ONLY_B": "b"})
def env_b(event, context):
    return _seen()


@app.function("version::now")
def version(event, context):
    return VERSION
"""


@pytest.fixture
def lambda_client() -> Any:
    config = Config(retries={"max_attempts": 1}, read_timeout=60, connect_timeout=5)
    return lambda url: boto3.client("lambda", endpoint_url=url, region_name="us-east-1", config=config)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[LocalStack, Path]]:
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    with LocalProcess(app, tmp_path, ["--reload"]) as stack:
        yield stack, app


def _invoke(client: Any, name: str, payload: Any) -> tuple[str | None, Any]:
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read() or b"null")


def test_a_function_past_its_timeout_fails_while_the_gateway_keeps_serving(
    service: tuple[LocalStack, Path], lambda_client: Any
) -> None:
    stack, _ = service
    client = lambda_client(stack.lambda_url)
    with stack.subscribe("rooms", "warm-up", timeout=30):  # every worker of the path below started (their init)
        stack.client.set("rooms", "warm-up", "w", {"text": "warm"})
    # GIVEN an invocation that sleeps far past its 6 s Timeout, running
    outcome: list[tuple[str | None, Any]] = []
    started = time.monotonic()
    slow = threading.Thread(target=lambda: outcome.append(_invoke(client, "slow--sleep", {"seconds": 60})))
    slow.start()
    # WHEN a subscriber joins and an item is written meanwhile, THEN the frame arrives while it still runs
    with stack.subscribe("rooms", "lobby", timeout=15) as live:
        stack.client.set("rooms", "lobby", "m1", {"text": "hello"})
        assert live.next(timeout=15)["event"] == {"type": "create", "data": {"text": "hello"}}
        assert slow.is_alive(), "the write and its frame should have happened within the 6 s the function runs"
    slow.join(timeout=30)
    took = time.monotonic() - started
    # AND that one invocation failed as Lambda reports a timeout, after about 6 s, not 60
    error, body = outcome[0]
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout", body
    assert body["errorMessage"].endswith("Task timed out after 6.00 seconds") and took < 30
    # AND the function works again at once, in a fresh worker
    assert _invoke(client, "slow--sleep", {"seconds": 0}) == (None, {"slept": 0})
    assert any("slow--sleep" in line and "Sandbox.Timedout" in line for line in stack.output), stack.output[-20:]


def test_a_function_that_exits_fails_that_invocation_and_the_next_succeeds(
    service: tuple[LocalStack, Path], lambda_client: Any
) -> None:
    stack, _ = service
    client = lambda_client(stack.lambda_url)
    _, first = _invoke(client, "crash--exit", {})
    error, body = _invoke(client, "crash--exit", {"exit": True})
    assert error == "Unhandled" and body["errorType"] == "Runtime.ExitError", body
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 1")
    error, after = _invoke(client, "crash--exit", {})
    assert error is None and after["pid"] != first["pid"]  # a fresh worker
    # AND the rest of the service never noticed
    stack.client.set("s", "g", "i", {"ok": True})
    assert stack.client.get("s", "g", "i") == {"ok": True}


def test_two_functions_see_their_own_environments(service: tuple[LocalStack, Path], lambda_client: Any) -> None:
    stack, _ = service
    client = lambda_client(stack.lambda_url)
    assert _invoke(client, "env--a", {}) == (
        None,
        {"GREETING": "from a", "ONLY_B": None, "STREAM_FUNCTION_NAME": "StreamFunction", "ITEMS_TABLE": None},
    )
    assert _invoke(client, "env--b", {}) == (
        None,
        {"GREETING": None, "ONLY_B": "b", "STREAM_FUNCTION_NAME": "StreamFunction", "ITEMS_TABLE": None},
    )


def test_reload_picks_up_an_edited_handler_keeping_sockets_and_data(
    service: tuple[LocalStack, Path], lambda_client: Any
) -> None:
    stack, app = service
    client = lambda_client(stack.lambda_url)
    assert _invoke(client, "version--now", {}) == (None, "v1")
    with stack.subscribe("rooms", "lobby", timeout=15) as live:
        stack.client.set("rooms", "lobby", "before", {"n": 1})
        assert live.next(timeout=15)["event"]["type"] == "create"
        # WHEN the app file is edited: a new version, a new function and a trigger on it
        edited = APP.replace('VERSION = "v1"', 'VERSION = "v2"') + (
            '\n\n@app.function("added::echo")\ndef echo(event, context):\n    return {"echo": event}\n'
            '\n\napp.trigger("stream", "added::echo", {"stream_name": "rooms"}, id="added-watch")\n'
        )
        app.write_text(edited, encoding="utf-8")
        _wait_for(stack, "reloaded", 30)
        # THEN the edited handler answers, the new function is served and registered with its trigger
        assert _invoke(client, "version--now", {}) == (None, "v2")
        assert _invoke(client, "added--echo", {"x": 1}) == (None, {"echo": {"x": 1}})
        assert "added-watch" in {t["id"] for t in stack.registry.list_triggers()}
        # AND the socket opened before is still served, and the data written before is still there
        stack.client.set("rooms", "lobby", "after", {"n": 2})
        assert live.next(timeout=15)["event"] == {"type": "create", "data": {"n": 2}}
    assert stack.client.get("rooms", "lobby", "before") == {"n": 1}


def test_reload_of_a_broken_app_keeps_the_last_one(service: tuple[LocalStack, Path], lambda_client: Any) -> None:
    stack, app = service
    client = lambda_client(stack.lambda_url)
    assert _invoke(client, "version--now", {}) == (None, "v1")  # a warm worker
    # WHEN the file is saved broken, THEN the log says so and the last app goes on: its warm workers, its functions
    app.write_text(APP + "\nthis is not python\n", encoding="utf-8")
    _wait_for(stack, "could not be loaded, still running the last one", 30)
    assert _invoke(client, "version--now", {}) == (None, "v1")
    assert "slow::sleep" in {f["function_id"] for f in stack.registry.list_functions()}
    # AND once it is fixed, the next save reloads it
    app.write_text(APP.replace('VERSION = "v1"', 'VERSION = "v3"'), encoding="utf-8")
    _wait_for(stack, "reloaded", 30)
    assert _invoke(client, "version--now", {}) == (None, "v3")


def _wait_for(stack: LocalStack, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in stack.output):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the log:\n" + "\n".join(stack.output[-30:]))
        time.sleep(0.05)
