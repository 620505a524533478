"""The log of ``iii-stream local`` (the real service, a subprocess): what a developer reads to act.

One line per invocation and per pump batch; a failing function in one line with its function id, trigger id,
error type and message (the traceback only with ``--verbose``); no tracebacks for clients that go away; no
CloudWatch metric (EMF) lines; a port in use stops the start at once, naming it and its flag; the banner's
``Try:`` line runs as printed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from iii_stream.client import RegistryClient, StreamClient
from iii_stream.infra.offline_env import offline_env

CLI = Path(sys.executable).parent / "iii-stream"
READY = "iii-stream local is running"
START_SECONDS = 90  # two busy cores: moto, the handlers and the app take a while to import
APP = """
from iii_stream.app import App

app = App()


@app.function("demo::boom")
def boom(event, context):
    raise ValueError("boom went the handler for " + event["streamName"])


@app.function("demo::ok")
def ok(event, context):
    return {"ok": True}


@app.http("GET", "/hello")
def hello(event, context):
    return {"hello": "world"}


app.trigger("stream", "demo::boom", {"stream_name": "explodes"}, id="boom-trigger")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Local:
    process: subprocess.Popen[str]
    lambda_url: str
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, found: Callable[[str], bool], timeout: float = 30, after: int = 0) -> str:
        """The first line (from line ``after`` on) for which ``found`` is true, once it is there (fails the test after
        ``timeout``)."""
        with self.changed:
            self.changed.wait_for(lambda: any(found(line) for line in self.lines[after:]), timeout=timeout)
            hits = [line for line in self.lines[after:] if found(line)]
        if not hits:
            pytest.fail(f"no such line within {timeout} s; the log:\n{self.output()[-6000:]}")
        return hits[0]

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def mark(self) -> int:
        """How many lines there are so far (for ``wait_for(after=...)``)."""
        with self.changed:
            return len(self.lines)

    def client(self) -> StreamClient:
        result: StreamClient = StreamClient.via_lambda(endpoint_url=self.lambda_url)
        return result


def containing(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def write_app(directory: Path) -> Path:
    app = directory / "logs_app.py"
    app.write_text(APP, encoding="utf-8")
    return app


@contextlib.contextmanager
def start_local(directory: Path, *extra: str) -> Iterator[Local]:
    """``iii-stream local --app logs_app.py`` on free ports, its stdout and stderr read line by line; stopped after."""
    lambda_port = free_port()
    app = write_app(directory)
    command = [str(CLI), "local", "--app", str(app), "--port", str(free_port())]
    command += ["--lambda-port", str(lambda_port), "--http-port", str(free_port()), *extra]
    process = subprocess.Popen(
        command,
        env=offline_env(PYTHONUNBUFFERED="1"),
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    local = Local(process, f"http://127.0.0.1:{lambda_port}")
    reader = threading.Thread(target=local.read, name="local-logs-output", daemon=True)
    reader.start()
    try:
        local.wait_for(lambda line: line.startswith("Try:"), timeout=START_SECONDS)
        yield local
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    with start_local(tmp_path_factory.mktemp("local-logs")) as service:
        yield service


# --- a port in use -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--port", "--lambda-port", "--http-port", "--connections-port"])
def test_a_port_in_use_fails_at_once_naming_the_port_and_its_flag(tmp_path: Path, flag: str) -> None:
    # GIVEN a port something else listens on
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        ports = {"--port": free_port(), "--lambda-port": free_port(), "--http-port": free_port()}
        ports[flag] = busy
        command = [str(CLI), "local", "--app", str(write_app(tmp_path))]
        for name, port in ports.items():
            command += [name, str(port)]
        # WHEN the local service is asked to listen there
        started = time.monotonic()
        result = subprocess.run(
            command,
            env=offline_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
        )
        elapsed = time.monotonic() - started
    # THEN it stops at once, with exit code 1 and one line naming the port and the flag that moves it
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert elapsed < 2.0, f"took {elapsed:.1f} s"
    assert f"port {busy} " in result.stderr and f"{flag} PORT" in result.stderr, output
    assert "Traceback" not in output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_two_flags_given_the_same_port_fail_at_once(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [str(CLI), "local", "--port", str(port), "--lambda-port", str(port)],
        env=offline_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 1
    assert f"port {port} " in result.stderr and "--port" in result.stderr and "--lambda-port PORT" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# --- one line per invocation -----------------------------------------------------------------------------------------


def test_each_invocation_has_one_line_with_its_function_duration_and_outcome(local: Local) -> None:
    client = local.client()
    # WHEN a stream function is called, once well and once badly
    client.set("logs", "g", "one", {"n": 1})
    with pytest.raises(Exception, match="deserialization_error|missing field"):
        client.call("stream::get", {"stream_name": "logs"})
    # THEN each call has its line: the function, the stream function id, the duration and the outcome
    ok = local.wait_for(lambda line: "invoke StreamFunction stream::set " in line)
    assert re.search(r"invoke StreamFunction stream::set \d+\.\d ms -> ok$", ok), ok
    error = local.wait_for(lambda line: "invoke StreamFunction stream::get " in line and "deserialization" in line)
    assert re.search(r"stream::get \d+\.\d ms -> error deserialization_error: Failed to deserialize", error), error
    # AND each pump batch has one (the write's change reached broadcast and dispatch)
    for pump in ("broadcast", "dispatch"):
        line = local.wait_for(containing(f"pump {pump} "))
        assert re.search(rf"pump {pump} \d+ record\(s\) \d+\.\d ms -> ok$", line), line


def test_an_unknown_function_is_said_in_one_line(local: Local) -> None:
    lambda_client = boto3.client("lambda", endpoint_url=local.lambda_url, region_name="us-east-1")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")
    line = local.wait_for(lambda s: "invoke NoSuchFunction -> ResourceNotFoundException" in s)
    assert "StreamFunction" in line  # what is served instead


# --- a failing function ----------------------------------------------------------------------------------------------


def _boom_line(line: str) -> bool:
    return "invoke demo--boom" in line and "ValueError" in line


def test_a_raising_stream_trigger_handler_is_one_line_with_its_ids_and_error(local: Local) -> None:
    # WHEN a change runs a stream trigger whose handler raises
    local.client().set("explodes", "g", "item", 1)
    assert "Traceback" not in local.output()
    # THEN one line names the function, its function id, the trigger, the error type and the message ...
    line = local.wait_for(_boom_line)
    assert "(async)" in line
    assert "ValueError: boom went the handler for explodes" in line
    assert "function demo::boom" in line and "trigger boom-trigger" in line
    # ... and no traceback follows it (not without --verbose)
    time.sleep(0.5)
    assert "Traceback" not in local.output()


def test_with_verbose_the_failing_handler_has_its_traceback(tmp_path: Path) -> None:
    with start_local(tmp_path, "--verbose") as verbose:
        verbose.client().set("explodes", "g", "item", 1)
        line = verbose.wait_for(_boom_line)
        assert "function demo::boom" in line and "trigger boom-trigger" in line
        verbose.wait_for(lambda s: 'raise ValueError("boom went the handler for " + event["streamName"])' in s)
        assert "Traceback (most recent call last):" in verbose.output()


def test_a_record_set_aside_names_its_change_and_the_reason(local: Local) -> None:
    # GIVEN a stream trigger whose function's Lambda does not exist (dispatch cannot queue it: the record fails)
    registry = RegistryClient.via_lambda(endpoint_url=local.lambda_url)
    registry.register_function("ghost::fn", "NoSuchLambda")
    registry.register_trigger("stream", "ghost::fn", {"stream_name": "ghost"}, id="ghost-trigger")
    time.sleep(1.5)  # the local service reads the triggers again after 1 s
    # WHEN a change matches it
    local.client().set("ghost", "room", "x", {"a": 1})
    # THEN each retry says why, and the record set aside after them is named: eventID, event, stream/group/item
    line = local.wait_for(lambda s: "pump dispatch set aside" in s)
    assert re.search(r"eventID \w+, (INSERT|MODIFY), stream \"ghost\" group \"room\" item \"x\" after 3 retries", line)
    assert "FunctionFailedError" in line and "ghost-trigger" in line and "NoSuchLambda" in line, line
    assert "attempt 4 of 4" in local.output()
    registry.unregister_trigger("ghost-trigger")


# --- no noise ----------------------------------------------------------------------------------------------------


def _reset(port: int, request: bytes, read_answer: bool) -> None:
    """A keep-alive connection that ends with a TCP reset (SO_LINGER 0), before or after its answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request)
    if read_answer:
        sock.settimeout(10)
        sock.recv(65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_disconnect_leave_no_traceback(local: Local) -> None:
    port = int(local.lambda_url.rsplit(":", 1)[1])
    key = {"stream_name": "s", "group_id": "g", "item_id": "i"}
    payload = json.dumps({"function_id": "stream::get", "payload": key})
    # WHEN plain boto3 clients call and go away (their keep-alive connections closed) ...
    for _ in range(5):
        client = boto3.client("lambda", endpoint_url=local.lambda_url, region_name="us-east-1")
        client.invoke(FunctionName="StreamFunction", Payload=payload.encode())
        client.close()
    # ... and clients reset their connections: idle after an answer, with a body still to come, or before the answer
    head = f"POST /2015-03-31/functions/StreamFunction/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    whole = (head + f"Content-Length: {len(payload)}\r\n\r\n" + payload).encode()
    for _ in range(3):
        _reset(port, whole, read_answer=True)
        _reset(port, (head + "Content-Length: 1000\r\n\r\n{").encode(), read_answer=False)
        _reset(port, whole, read_answer=False)
    # THEN the endpoint still answers, and the log has no traceback
    mark = local.mark()
    local.client().set("logs", "g", "after-resets", 1)
    local.wait_for(lambda line: "invoke StreamFunction stream::set " in line and line.endswith("-> ok"), after=mark)
    time.sleep(0.5)
    output = local.output()
    assert "Traceback" not in output and "Exception occurred" not in output, output[-4000:]


def test_no_cloudwatch_metric_lines(local: Local) -> None:
    # GIVEN more pump batches than powertools holds metric values (100; it flushed them then, disabled or not)
    client = local.client()
    for n in range(120):
        client.set("metrics", "g", f"i{n}", n)
    mark = local.mark()
    client.set("metrics", "g", "last", "done")
    local.wait_for(lambda line: "pump dispatch" in line, after=mark)
    time.sleep(1)  # the last batches
    # THEN no EMF line was printed
    assert '"_aws"' not in local.output()
    assert "CloudWatchMetrics" not in local.output()


# --- the banner --------------------------------------------------------------------------------------------------


def test_the_try_line_runs_as_printed(local: Local, tmp_path: Path) -> None:
    line = local.wait_for(lambda s: s.startswith("Try:"))
    command = line.removeprefix("Try:").strip()
    # It names this very iii-stream by its full path, and the endpoint (the Lambda port is not 3001)
    program = Path(shlex.split(command)[0])
    assert program.is_absolute() and program.is_file() and program.name == "iii-stream", command
    assert f"--endpoint-url {local.lambda_url}" in command
    # WHEN it is run as printed, from another directory, by a shell
    result = subprocess.run(
        command,
        shell=True,
        env=offline_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    # THEN it sets the item
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["new_value"] == 1
