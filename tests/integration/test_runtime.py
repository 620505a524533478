"""The local Lambda runtime on its own: real worker processes running small handler modules written to a temporary
directory (the service's use of it is in test_local_runtime.py)."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from iii_stream.infra.local.functions import LocalSettings, template_specs
from iii_stream.infra.local.runtime import FunctionError, FunctionSpec, LocalRuntime, Throttled

HANDLERS = """
import json
import os
import time

CALLS = []


def echo(event, context):
    CALLS.append(event)
    return {"event": event, "calls": len(CALLS), "pid": os.getpid(), "name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(), "memory": context.memory_limit_in_mb,
            "greeting": os.environ.get("GREETING"), "only_b": os.environ.get("ONLY_B")}


def sleep(event, context):
    if event.get("mark"):
        open(event["mark"], "w").close()  # it started
    time.sleep(event["seconds"])
    return {"slept": event["seconds"], "pid": os.getpid()}


def exit_(event, context):
    if event.get("exit"):
        os._exit(event["exit"])
    return {"alive": True, "pid": os.getpid()}


def fail(event, context):
    raise ValueError("boom " + str(event))


def not_json(event, context):
    return {"a set": {1, 2}}
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    return tmp_path


def _spec(code: Path, name: str, handler: str, **options: object) -> FunctionSpec:
    environment = {key: value for key, value in os.environ.items() if key not in ("GREETING", "ONLY_B")}
    environment.update(options.pop("environment", {}))  # type: ignore[arg-type]
    return FunctionSpec(name=name, environment=environment, handler=handler, code_dir=str(code), **options)  # type: ignore[arg-type]


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    served = LocalRuntime()
    yield served
    served.stop()


def test_a_function_runs_in_a_warm_worker_of_its_own_with_a_lambda_context(code: Path, runtime: LocalRuntime) -> None:
    # GIVEN a function with a 5 s timeout and 1024 MB
    runtime.replace({"Echo": _spec(code, "Echo", "handlers.echo", timeout_seconds=5.0, memory_mb=1024)})
    # WHEN it is invoked twice
    first, second = runtime.invoke("Echo", {"n": 1}), runtime.invoke("Echo", {"n": 2})
    # THEN both ran in the same warm worker (its module state kept), not in this process, with Lambda's context
    assert first["event"] == {"n": 1} and second["calls"] == 2 and first["pid"] == second["pid"] != os.getpid()
    assert first["name"] == "Echo" and first["memory"] == "1024" and 4000 < first["remaining_ms"] <= 5000
    assert runtime.workers_started("Echo") == 1


def test_two_functions_keep_their_own_environment_and_module_state(code: Path, runtime: LocalRuntime) -> None:
    # GIVEN two functions from the same module, each with its own settings
    runtime.replace(
        {
            "A": _spec(code, "A", "handlers.echo", environment={"GREETING": "hello from A"}),
            "B": _spec(code, "B", "handlers.echo", environment={"ONLY_B": "b"}),
        }
    )
    a, b = runtime.invoke("A", {}), runtime.invoke("B", {})
    # THEN each sees its own variables only, and its own module state (a call count of 1 each)
    assert (a["greeting"], a["only_b"], a["calls"]) == ("hello from A", None, 1)
    assert (b["greeting"], b["only_b"], b["calls"]) == (None, "b", 1)
    assert a["pid"] != b["pid"]


def test_past_its_timeout_the_worker_is_killed_and_the_invocation_fails_as_lambda_reports_it(
    code: Path, runtime: LocalRuntime
) -> None:
    runtime.replace({"Sleep": _spec(code, "Sleep", "handlers.sleep", timeout_seconds=1.0)})
    first_pid = runtime.invoke("Sleep", {"seconds": 0})["pid"]
    started = time.monotonic()
    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Sleep", {"seconds": 30})
    took = time.monotonic() - started
    assert failed.value.body["errorType"] == "Sandbox.Timedout"
    assert failed.value.body["errorMessage"].endswith("Error: Task timed out after 1.00 seconds")
    assert failed.value.body["errorMessage"].startswith(f"RequestId: {failed.value.body['requestId']} ")
    assert took < 10, took  # not the 30 s the handler asked for
    # AND the worker is gone; the next invocation gets a fresh one that works
    assert not _alive(first_pid)
    again = runtime.invoke("Sleep", {"seconds": 0})
    assert again["pid"] != first_pid and runtime.workers_started("Sleep") == 2


def test_a_worker_that_exits_fails_that_invocation_only(code: Path, runtime: LocalRuntime) -> None:
    runtime.replace({"Exit": _spec(code, "Exit", "handlers.exit_")})
    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Exit", {"exit": 1})
    assert failed.value.body["errorType"] == "Runtime.ExitError"
    assert failed.value.body["errorMessage"].endswith("Error: Runtime exited with error: exit status 1")
    assert runtime.invoke("Exit", {})["alive"] is True


def test_an_exception_is_an_unhandled_error_with_the_runtime_body(code: Path, runtime: LocalRuntime) -> None:
    runtime.replace(
        {"Fail": _spec(code, "Fail", "handlers.fail"), "NotJson": _spec(code, "NotJson", "handlers.not_json")}
    )
    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Fail", {"x": 1})
    body = failed.value.body
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "boom {'x': 1}")
    assert any("in fail" in line for line in body["stackTrace"]) and "ValueError: boom" in failed.value.details
    with pytest.raises(FunctionError) as marshal:
        runtime.invoke("NotJson", {})
    assert marshal.value.body["errorType"] == "Runtime.MarshalError"


def test_an_init_error_fails_the_invocation_and_the_next_one_tries_again(code: Path, runtime: LocalRuntime) -> None:
    (code / "later.py").write_text("raise RuntimeError('not yet')\n", encoding="utf-8")
    runtime.replace(
        {"Later": _spec(code, "Later", "later.handler"), "Missing": _spec(code, "Missing", "handlers.nope")}
    )
    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Later", {})
    assert failed.value.body["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'later': not yet" in failed.value.body["errorMessage"]
    with pytest.raises(FunctionError) as missing:
        runtime.invoke("Missing", {})
    assert missing.value.body["errorType"] == "Runtime.HandlerNotFound"
    # WHEN the module is fixed, the next invocation inits a fresh worker and succeeds
    (code / "later.py").write_text("def handler(event, context):\n    return 'ready'\n", encoding="utf-8")
    assert runtime.invoke("Later", {}) == "ready"


def test_concurrency_is_bounded_and_a_call_that_waits_past_the_timeout_is_throttled(
    code: Path, runtime: LocalRuntime
) -> None:
    # GIVEN a function with one worker at most and a 4 s timeout
    runtime.replace({"Sleep": _spec(code, "Sleep", "handlers.sleep", timeout_seconds=4.0, concurrency=1)})
    first_pid = runtime.invoke("Sleep", {"seconds": 0})["pid"]  # warm
    # WHEN calls come while the one worker is busy: they wait for it, in turn (never two at once)
    results: list[Any] = []
    mark = code / "started"
    queue = [{"seconds": 1.0, "mark": str(mark)}, {"seconds": 1.0}, {"seconds": 3.5}]
    threads = [threading.Thread(target=lambda e=event: results.append(runtime.invoke("Sleep", e))) for event in queue]
    threads[0].start()
    deadline = time.monotonic() + 10
    while not mark.exists() and time.monotonic() < deadline:  # the worker is busy with the first
        time.sleep(0.01)
    for thread in threads[1:]:
        thread.start()
        time.sleep(0.1)
    # THEN one queued behind them all (1 + 1 + 3.5 s of work) is throttled once its 4 s timeout has passed
    started = time.monotonic()
    with pytest.raises(Throttled):
        runtime.invoke("Sleep", {"seconds": 0})
    assert 3.5 < time.monotonic() - started < 10
    for thread in threads:
        thread.join(timeout=30)
    assert [result["slept"] for result in results] == [1.0, 1.0, 3.5]
    assert {result["pid"] for result in results} == {first_pid} and runtime.workers_started("Sleep") == 1


def test_restart_loads_the_edited_code_in_fresh_workers(code: Path, runtime: LocalRuntime) -> None:
    (code / "edited.py").write_text("def handler(event, context):\n    return 'before'\n", encoding="utf-8")
    runtime.replace({"Edited": _spec(code, "Edited", "edited.handler")})
    assert runtime.invoke("Edited", {}) == "before"
    (code / "edited.py").write_text("def handler(event, context):\n    return 'after'\n", encoding="utf-8")
    assert runtime.invoke("Edited", {}) == "before"  # a warm worker keeps what it imported
    runtime.restart(["Edited"])
    assert runtime.invoke("Edited", {}) == "after"


def test_a_function_not_served_is_a_key_error(runtime: LocalRuntime) -> None:
    with pytest.raises(KeyError):
        runtime.invoke("Nope", {})


def test_the_template_functions_get_their_own_environment_with_the_local_endpoints() -> None:
    settings = LocalSettings(
        tables={"ItemsTable": "items", "ConnectionsTable": "connections", "TriggersTable": "triggers"},
        dynamodb_endpoint="http://127.0.0.1:1",
        lambda_endpoint="http://127.0.0.1:2",
        connections_endpoint="http://127.0.0.1:3/local",
        auth_function="my-auth",
    )
    specs = template_specs(settings)
    broadcast, stream = specs["BroadcastFunction"], specs["StreamFunction"]
    # Globals plus the function's own Environment: only BroadcastFunction names the fan-out function
    assert broadcast.environment["FANOUT_FUNCTION"] == "FanoutFunction" and stream.environment["FANOUT_FUNCTION"] == ""
    assert stream.environment["ITEMS_TABLE"] == "items" and stream.environment["AUTH_FUNCTION"] == "my-auth"
    assert stream.environment["CONNECTIONS_ENDPOINT"] == "http://127.0.0.1:3/local"
    assert stream.environment["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:1"
    assert stream.environment["AWS_LAMBDA_FUNCTION_NAME"] == "StreamFunction"
    # each function's template Timeout and MemorySize
    assert (broadcast.timeout_seconds, broadcast.memory_mb) == (120.0, 1769)
    assert (stream.timeout_seconds, stream.memory_mb) == (29.0, 512)
    assert stream.handler == "stream_functions.handler"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("zombie") < 0 if sys.platform == "linux" else True


HANDLERS = textwrap.dedent(HANDLERS)


def test_a_queued_event_invocation_waits_for_a_worker_however_long_it_takes(code: Path, runtime: LocalRuntime) -> None:
    # GIVEN a function with one worker and a 2 s timeout
    runtime.replace({"Sleep": _spec(code, "Sleep", "handlers.sleep", timeout_seconds=2.0, concurrency=1)})
    handler = runtime.handler("Sleep")
    # WHEN four Event invocations of 0.8 s each come at once (3.2 s of work: the last waits past the timeout)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(handler.queued({"seconds": 0.8}))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # THEN none is throttled or lost: Lambda keeps them in its queue until a worker is free
    assert [result["slept"] for result in results] == [0.8] * 4  # type: ignore[index]
    assert runtime.workers_started("Sleep") == 1
