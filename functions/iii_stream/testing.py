"""A pytest plugin for apps built on iii-stream: the local service with your app, for your own tests.

Installed with the package (entry point ``pytest11``), so a project's tests only ask for the fixture:

>>> def test_a_write_reaches_a_subscriber(iii_stream):  # doctest: +SKIP
...     with iii_stream.subscribe("todo", "inbox") as subscription:
...         assert subscription.sync == []
...         iii_stream.client.set("todo", "inbox", "a", {"id": "a"})
...         assert subscription.next()["event"] == {"type": "create", "data": {"id": "a"}}

``iii_stream`` (session-wide) runs ``iii-stream local --app <app>`` in a process of its own, on free ports,
in memory (nothing is kept after the session), and stops it when the session ends, whether the tests passed or
not. The app is ``app.py`` in pytest's root directory, or the ini option ``iii_stream_app``.
It gives a ``StreamClient`` (``client``), the WebSocket URL (``ws_url``) with ``subscribe``, the HTTP routes'
base URL (``http_url``) and the Lambda endpoint (``lambda_url``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from iii_stream.client import RegistryClient, StreamClient

STARTUP_SECONDS = 60.0
STOP_SECONDS = 60.0  # a clean stop on a busy machine (its sockets closed, their leaves run, workers let go)
READY_LINE = "iii-stream local is running"


class LocalServiceError(RuntimeError):
    """The local service did not start (its output is in the message)."""


@dataclass
class Subscription:
    """One join over a real WebSocket: ``sync`` is what the join's sync frame carried; ``next()`` the next frame."""

    frames: list[dict[str, Any]]
    _socket: Any
    _closing: ExitStack
    sync: Any = None

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame (a dict), or TimeoutError when none arrives within ``timeout`` seconds."""
        frame: dict[str, Any] = json.loads(self._socket.recv(timeout=timeout))
        self.frames.append(frame)
        return frame

    def close(self) -> None:
        self._closing.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class LocalStack:
    """The running local service, as the fixture gives it."""

    client: StreamClient
    registry: RegistryClient
    ws_url: str
    http_url: str
    lambda_url: str
    output: list[str] = field(default_factory=list)

    def subscribe(
        self, stream_name: str, group_id: str, item_id: str | None = None, query: str = "", timeout: float = 5.0
    ) -> Subscription:
        """Open a socket (``query``: e.g. ``"token=alice"`` for your auth function), join, and wait for the sync."""
        from websockets.sync.client import connect

        url = self.ws_url + (f"?{query}" if query else "")
        closing = ExitStack()  # websockets >= 17.1 wants connect() entered as a context manager
        socket_ = closing.enter_context(connect(url, open_timeout=timeout))
        data: dict[str, Any] = {"streamName": stream_name, "groupId": group_id, "subscriptionId": str(uuid.uuid4())}
        if item_id is not None:
            data["id"] = item_id
        socket_.send(json.dumps({"type": "join", "data": data}))
        subscription = Subscription([], socket_, closing)
        first = subscription.next(timeout)
        if first.get("event", {}).get("type") != "sync":
            closing.close()
            raise AssertionError(f"the join was answered with {first!r}, not a sync")
        subscription.sync = first["event"]["data"]
        return subscription


class LocalProcess:
    """``iii-stream local`` in a child process on free ports; ``stop()`` always ends it."""

    def __init__(self, app: Path, cwd: Path, extra: Sequence[str] = ()) -> None:
        self.app = app
        self.cwd = cwd
        self.extra = list(extra)  # more ``iii-stream local`` flags (``--reload``, ``--concurrency 2``)
        self.ports = {name: _free_port() for name in ("port", "lambda-port", "http-port")}
        self.output: list[str] = []
        self._ready = threading.Event()
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> LocalStack:
        command = [sys.executable, "-m", "iii_stream.infra.cli", "local", "--in-memory", "--app", str(self.app)]
        for name, port in self.ports.items():
            command += [f"--{name}", str(port)]
        command += self.extra
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            command, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, name="iii-stream-local-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LocalServiceError("iii-stream local did not start:\n" + "\n".join(self.output[-40:]))
        lambda_url = f"http://127.0.0.1:{self.ports['lambda-port']}"
        return LocalStack(
            client=StreamClient.via_lambda(endpoint_url=lambda_url),
            registry=RegistryClient.via_lambda(endpoint_url=lambda_url),
            ws_url=f"ws://127.0.0.1:{self.ports['port']}/",
            http_url=f"http://127.0.0.1:{self.ports['http-port']}",
            lambda_url=lambda_url,
            output=self.output,
        )

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line.rstrip("\n"))
            if READY_LINE in line:
                self._ready.set()

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # SIGTERM: a clean stop (sockets closed, their leaves run)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reader.join(timeout=5)  # the output to its end
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("iii_stream_app", "the app file the iii_stream fixture runs (default: app.py in the rootdir)")


@pytest.fixture(scope="session")
def iii_stream(pytestconfig: pytest.Config) -> Iterator[LocalStack]:
    """The local service running your app (see the module docstring)."""
    root = Path(pytestconfig.rootpath)
    app = root / (pytestconfig.getini("iii_stream_app") or "app.py")
    if not app.is_file():
        raise pytest.UsageError(f"the iii_stream fixture needs an app file: {app} does not exist (ini: iii_stream_app)")
    with LocalProcess(app, root) as stack:
        yield stack
