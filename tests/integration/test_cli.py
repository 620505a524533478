"""The real ``iii-stream`` console script, run as a subprocess: ``call`` (in-process and via Lambda) and ``local``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.template import create_tables

CLI = Path(sys.executable).parent / "iii-stream"
KEY = {"stream_name": "chat", "group_id": "room-1", "item_id": "m1"}


def _env() -> dict[str, str]:
    """The subprocess must not depend on this process's environment: offline, and no table named."""
    env = offline_env()
    env.pop("ITEMS_TABLE", None)
    return env


def iii_stream(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=_env(), cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=30
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def _failed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    body: dict[str, Any] = json.loads(result.stderr)
    assert set(body) == {"code", "message"}
    return body


def test_console_script_is_installed_next_to_the_interpreter() -> None:
    assert CLI.is_file() and os.access(CLI, os.X_OK)


# --- call --dynamodb-endpoint: the function runs in the CLI's process against a moto server ---------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = EmbeddedDynamoDB()
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class DirectTarget:
    args: list[str]
    dynamodb: Any
    table: str


@pytest.fixture
def direct(moto_server: str) -> DirectTarget:
    table = f"cli-items-{uuid.uuid4().hex[:12]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server)
    create_tables(dynamodb, {"ItemsTable": table})
    return DirectTarget(["--dynamodb-endpoint", moto_server, "--items-table", table], dynamodb, table)


def test_call_direct_set_get_list_all(direct: DirectTarget, tmp_path: Path) -> None:
    data = {"text": "hï ✓", "n": [1, 2.5, None]}
    set_result = _ok(iii_stream("call", *direct.args, "stream::set", json.dumps({**KEY, "data": data}), cwd=tmp_path))
    assert set_result == {"old_value": None, "new_value": data}
    assert _ok(iii_stream("call", *direct.args, "stream::get", json.dumps(KEY), cwd=tmp_path)) == data
    # The payload defaults to {}.
    assert _ok(iii_stream("call", *direct.args, "stream::list_all", cwd=tmp_path)) == {
        "stream": [{"id": "chat", "groups": ["room-1"]}],
        "count": 1,
    }


def test_call_direct_missing_field_exits_1_with_the_error_on_stderr(direct: DirectTarget, tmp_path: Path) -> None:
    body = _failed(iii_stream("call", *direct.args, "stream::set", json.dumps(KEY), cwd=tmp_path))
    assert body == {
        "code": "deserialization_error",
        "message": "Failed to deserialize input for stream::set: missing field `data`",
    }
    assert direct.dynamodb.scan(TableName=direct.table)["Items"] == []


def test_call_unknown_function_exits_1_with_function_not_found(direct: DirectTarget, tmp_path: Path) -> None:
    body = _failed(iii_stream("call", *direct.args, "stream::nope", "{}", cwd=tmp_path))
    assert body == {"code": "function_not_found", "message": "Function stream::nope not found."}


def test_call_invalid_json_payload_exits_1_with_invalid_json(direct: DirectTarget, tmp_path: Path) -> None:
    body = _failed(iii_stream("call", *direct.args, "stream::set", "{not json", cwd=tmp_path))
    assert body["code"] == "invalid_json"
    assert body["message"].startswith("The payload is not JSON: ")


def test_call_to_an_endpoint_nobody_listens_on_exits_1_with_call_failed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    body = _failed(iii_stream("call", "--endpoint-url", url, "stream::get", json.dumps(KEY), cwd=tmp_path))
    assert body["code"] == "call_failed"
    assert body["message"].startswith("EndpointConnectionError: ")


def test_call_to_an_endpoint_nobody_listens_on_says_how_to_start_the_service(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    body = _failed(iii_stream("call", "--endpoint-url", url, "stream::list_all", cwd=tmp_path))
    assert "Start it with `iii-stream local`" in body["message"]


def test_call_reads_a_large_payload_from_a_file_or_stdin(direct: DirectTarget, tmp_path: Path) -> None:
    # GIVEN an item far larger than a command line can comfortably hold, in a file
    data = {"text": "x" * 120_000}
    (tmp_path / "payload.json").write_text(json.dumps({**KEY, "data": data}), encoding="utf-8")
    # WHEN it is set from the file (@payload.json), then read with the payload on stdin (-)
    assert _ok(iii_stream("call", *direct.args, "stream::set", "@payload.json", cwd=tmp_path))["new_value"] == data
    read = subprocess.run(
        [str(CLI), "call", *direct.args, "stream::get", "-"],
        input=json.dumps(KEY),
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )
    # THEN both worked; a missing file is invalid_json naming the file
    assert _ok(read) == data
    body = _failed(iii_stream("call", *direct.args, "stream::get", "@missing.json", cwd=tmp_path))
    assert body["code"] == "invalid_json" and "missing.json" in body["message"]


def test_call_with_dynamodb_endpoint_needs_no_aws_settings(direct: DirectTarget, tmp_path: Path) -> None:
    # GIVEN an environment with no AWS region, credentials, profile or config files at all
    env = {k: v for k, v in _env().items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    # WHEN a function runs against the given DynamoDB
    result = subprocess.run(
        [str(CLI), "call", *direct.args, "stream::set", json.dumps({**KEY, "data": 1})],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )
    # THEN it worked (a local DynamoDB takes any region and credentials)
    assert _ok(result) == {"old_value": None, "new_value": 1}


def test_call_without_a_function_id_is_a_usage_error(tmp_path: Path) -> None:
    result = iii_stream("call", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: iii-stream call" in result.stderr


# --- iii-stream local, then call --endpoint-url against it ----------------------------------------------------------


@dataclass
class LocalProcess:
    process: subprocess.Popen[str]
    port: int
    ws_port: int
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, text: str, timeout: float) -> bool:
        """Whether a stdout line containing ``text`` arrives within ``timeout`` seconds."""
        with self.changed:
            return self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout=timeout)

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)


@pytest.fixture
def local_service(tmp_path: Path) -> Iterator[LocalProcess]:
    # Every port free, none of the defaults (3112, 3001): the test must not depend on what else runs here.
    port, ws_port = _free_port(), _free_port()
    stderr_path = tmp_path / "local.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [str(CLI), "local", "--port", str(ws_port), "--lambda-port", str(port), "--connections-port", "0"],
            env=_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
    local = LocalProcess(process, port, ws_port)
    local.reader = threading.Thread(target=local.read_stdout, name="iii-stream-local-stdout", daemon=True)
    local.reader.start()
    try:
        if not local.wait_for_line("iii-stream local is running", timeout=20):
            pytest.fail(
                f"iii-stream local did not start within 20 s (exit code {process.poll()}).\n"
                f"stdout:\n{local.output()}\nstderr:\n{stderr_path.read_text(encoding='utf-8')}"
            )
        yield local
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        local.reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()


def test_local_service_serves_calls_and_stops_on_sigint(local_service: LocalProcess, tmp_path: Path) -> None:
    url = local_service.endpoint_url
    assert local_service.wait_for_line(f"Lambda invoke endpoint     {url}", timeout=5), local_service.output()
    ws_url = f"ws://127.0.0.1:{local_service.ws_port}/"
    assert local_service.wait_for_line(f"WebSocket gateway          {ws_url}", timeout=5), local_service.output()

    set_payload = json.dumps({**KEY, "data": {"text": "hi"}})
    assert _ok(iii_stream("call", "--endpoint-url", url, "stream::set", set_payload, cwd=tmp_path)) == {
        "old_value": None,
        "new_value": {"text": "hi"},
    }
    assert _ok(iii_stream("call", "--endpoint-url", url, "stream::get", json.dumps(KEY), cwd=tmp_path)) == {
        "text": "hi"
    }
    # A stream function error comes back through Lambda as the same {code, message} on stderr.
    body = _failed(iii_stream("call", "--endpoint-url", url, "stream::get", '{"stream_name": "chat"}', cwd=tmp_path))
    assert body["code"] == "deserialization_error"
    # An unknown Lambda function is a failed call, not a stream error.
    unknown = iii_stream("call", "--endpoint-url", url, "--function-name", "Nope", "stream::list_all", cwd=tmp_path)
    assert _failed(unknown)["code"] == "call_failed"
    assert "Function not found" in unknown.stderr

    local_service.process.send_signal(signal.SIGINT)
    assert local_service.process.wait(timeout=10) == 0
    assert local_service.reader is not None
    local_service.reader.join(timeout=5)
    assert "iii-stream local stopped." in local_service.lines, local_service.output()
