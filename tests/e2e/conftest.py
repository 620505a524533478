"""End-to-end fixtures: a real ``iii-stream local`` process on free loopback ports, with tests/e2e/app.py."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from iii_stream.client import RegistryClient, StreamClient
from iii_stream.infra.offline_env import offline_env

HERE = Path(__file__).parent
CLI = Path(sys.executable).parent / "iii-stream"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalService:
    process: subprocess.Popen[str]
    ws_url: str
    lambda_url: str
    log_path: Path
    calls_path: Path

    def client(self) -> StreamClient:
        result: StreamClient = StreamClient.via_lambda(endpoint_url=self.lambda_url)
        return result

    def registry(self) -> RegistryClient:
        result: RegistryClient = RegistryClient.via_lambda(endpoint_url=self.lambda_url)
        return result

    def calls(self, function: str | None = None) -> list[dict[str, Any]]:
        if not self.calls_path.exists():
            return []
        rows = [json.loads(line) for line in self.calls_path.read_text().splitlines() if line]
        return [row["event"] for row in rows if function is None or row["function"] == function]

    def wait_for_calls(
        self,
        function: str,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
    ) -> list[dict[str, Any]]:
        """The calls of ``function`` that satisfy ``where``, once there are ``count`` of them (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in self.calls(function) if where(event)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_local(tmp: Path, *extra: str) -> LocalService:
    ws_port, lambda_port = free_port(), free_port()
    log_path = tmp / "local.log"
    env = offline_env(PYTHONUNBUFFERED="1")
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(CLI), "local", "--in-memory", "--port", str(ws_port), "--lambda-port", str(lambda_port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp,
        )
    service = LocalService(
        process, f"ws://127.0.0.1:{ws_port}/", f"http://127.0.0.1:{lambda_port}", log_path, HERE / ".calls.jsonl"
    )
    deadline = time.monotonic() + 60
    while "iii-stream local is running" not in service.log():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_local(service)
            raise RuntimeError("iii-stream local did not start:\n" + service.log())
        time.sleep(0.1)
    time.sleep(0.3)  # the banner's other lines
    return service


def stop_local(service: LocalService, timeout: float = 60) -> int:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGINT)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
    return service.process.returncode


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    calls = HERE / ".calls.jsonl"
    calls.unlink(missing_ok=True)
    service = start_local(tmp_path_factory.mktemp("local"), "--app", str(HERE / "app.py"))
    yield service
    stop_local(service)
    calls.unlink(missing_ok=True)
