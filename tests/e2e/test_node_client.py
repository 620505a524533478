"""The published ``@motiadev/stream-client-node`` client against a running ``iii-stream local``.

The Node scripts live in tests/e2e/node (``npm ci`` there installs the exact versions of package-lock.json).
Each test runs ``node watch.mjs`` as a subprocess and drives it over stdin/stdout, one JSON object a line;
the writes go through the Lambda endpoint between its steps, so every step's state is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalService

NODE_DIR = Path(__file__).with_name("node")
NODE = shutil.which("node")
STEP_TIMEOUT_MS = 5000

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (CI has it; apt-get install nodejs npm)")


def npm_ci(directory: Path) -> None:
    """``npm ci`` in ``directory`` unless its node_modules already matches package-lock.json."""
    lock = directory / "package-lock.json"
    installed = directory / "node_modules" / ".package-lock.json"  # npm writes it on every install
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not"
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci in {directory} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def node_scripts() -> Path:
    """tests/e2e/node with its packages installed."""
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(NODE_DIR)
    return NODE_DIR


class NodeProcess:
    """A Node script that prints JSON lines and reads JSON commands; always ended by ``close``."""

    def __init__(self, script: Path, config: dict[str, Any]) -> None:
        assert NODE is not None
        self.process = subprocess.Popen(
            [NODE, str(script), json.dumps(config)],
            cwd=script.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.process.stdout:
                self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.process.stderr:
                self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next JSON line; fails (with the script's stderr) on a timeout or when the script ended."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no answer from the node script within {timeout} s; stderr:\n{self.stderr}")
            if line is None:
                self.process.wait(5)
                pytest.fail(f"the node script ended (exit {self.process.returncode}); stderr:\n{self.stderr}")
            if line.strip():
                message: dict[str, Any] = json.loads(line)
                return message

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def wait_for(self, expect: dict[str, Any], timeout_ms: int = STEP_TIMEOUT_MS) -> dict[str, Any]:
        self.send({"cmd": "wait", "expect": expect, "timeout_ms": timeout_ms})
        answer = self.read(timeout_ms / 1000 + 5)
        assert answer["event"] == "state", answer
        return answer

    def close(self) -> int:
        """Ask the script to close its client and exit; kill it if it does not within 10 s."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):  # BrokenPipeError: the script is gone already
                self.send({"cmd": "close"})
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:  # they end at EOF, now that the process is gone
            reader.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.process.returncode


def watch(scripts: Path, config: dict[str, Any]) -> NodeProcess:
    return NodeProcess(scripts / "watch.mjs", {"lifetime_ms": 30000, **config})


def by_id(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: str(item["id"]))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@needs_node
def test_group_and_item_subscriptions_follow_writes(local: LocalService, node_scripts: Path) -> None:
    """Token in the query; a group and an item subscription on one socket; each write's state checked."""
    client = local.client()
    stream, group = "node-follow", unique("g")
    a1 = {"id": "a", "title": "first", "n": 1}
    client.set(stream, group, "a", a1)
    script = watch(
        node_scripts,
        {
            "url": local.ws_url + "?token=user-node",
            "subs": [
                {"name": "group", "stream": stream, "group": group, "events": ["ping"]},
                {"name": "item", "stream": stream, "group": group, "id": "a"},
            ],
        },
    )
    try:
        ready = script.read()
        assert ready["event"] == "ready", ready
        assert ready["states"] == {"group": [a1], "item": a1}  # the join's sync

        b1 = {"id": "b", "title": "second"}
        client.set(stream, group, "b", b1)
        assert script.wait_for({"group": by_id(a1, b1), "item": a1})["matched"]

        client.update(stream, group, "a", [{"type": "increment", "path": "n", "by": 2}])
        a2 = {**a1, "n": 3}
        assert script.wait_for({"group": by_id(a2, b1), "item": a2})["matched"]

        client.delete(stream, group, "b")
        assert script.wait_for({"group": [a2], "item": a2})["matched"]

        b2 = {"id": "b", "title": "second, again"}  # re-created right after its delete: not dropped
        client.set(stream, group, "b", b2)
        assert script.wait_for({"group": by_id(a2, b2)})["matched"]

        client.send(stream, group, "ping", {"from": "python"})
        client.delete(stream, group, "a")
        state = script.wait_for({"group": [b2], "item": None})
        assert state["matched"], state

        a3 = {"id": "a", "title": "back"}
        client.set(stream, group, "a", a3)
        client.update(stream, group, "a", [{"type": "set", "path": "done", "value": True}])
        a4 = {**a3, "done": True}
        final = script.wait_for({"group": by_id(a4, b2), "item": a4})
        assert final["matched"], final
        assert final["custom"]["group"] == [{"type": "ping", "data": {"from": "python"}}]  # exactly once
        assert final["custom"]["item"] == []
    finally:
        code = script.close()
    assert code == 0, script.stderr


@needs_node
def test_token_in_the_subprotocol_is_accepted(local: LocalService, node_scripts: Path) -> None:
    """``protocols: ['Authorization', token]``: the socket opens and the token's context reaches the join."""
    client = local.client()
    group = unique("lobby")
    client.set("rooms", group, "m1", {"id": "m1", "text": "hello"})
    script = watch(
        node_scripts,
        {
            "url": local.ws_url,
            "protocols": ["Authorization", "user-alice"],
            "subs": [{"name": "room", "stream": "rooms", "group": group}],
        },
    )
    try:
        ready = script.read()
        assert ready["event"] == "ready", ready
        assert ready["states"]["room"] == [{"id": "m1", "text": "hello"}]
        client.set("rooms", group, "m2", {"id": "m2", "text": "live"})
        state = script.wait_for({"room": [{"id": "m1", "text": "hello"}, {"id": "m2", "text": "live"}]})
        assert state["matched"], state
    finally:
        code = script.close()
    assert code == 0, script.stderr
    joins = [event for event in local.wait_for_calls("join", 1) if event["group_id"] == group]
    assert [event["context"] for event in joins] == [{"user": "user-alice"}]


@needs_node
def test_bad_token_gets_no_data(local: LocalService, node_scripts: Path) -> None:
    """A refused handshake (HTTP 401): the client throws, no state ever arrives."""
    group = unique("lobby")
    local.client().set("rooms", group, "m1", {"id": "m1", "text": "secret"})
    script = watch(
        node_scripts,
        {
            "url": local.ws_url,
            "protocols": ["Authorization", "intruder"],
            "subs": [{"name": "room", "stream": "rooms", "group": group}],
        },
    )
    try:
        answer = script.read()
    finally:
        code = script.close()
    assert answer["event"] == "error", answer
    assert "401" in answer["message"]
    assert answer["states"] == {"room": []}
    assert code == 2


@needs_node
def test_bad_token_crashes_an_unguarded_node_process(local: LocalService, node_scripts: Path) -> None:
    """As the spec warns: the published Node client has no 'error' listener, so a 401 ends the process."""
    script = watch(
        node_scripts,
        {
            "url": local.ws_url,
            "protocols": ["Authorization", "intruder"],
            "guard": False,
            "subs": [{"name": "room", "stream": "rooms", "group": "lobby"}],
        },
    )
    try:
        script.process.wait(10)
    finally:
        code = script.close()
    assert code == 1
    assert "Unexpected server response: 401" in script.stderr
    assert "Unhandled 'error' event" in script.stderr


@needs_node
def test_private_group_is_unauthorized_and_stays_empty(local: LocalService, node_scripts: Path) -> None:
    """The join gate refuses ``private-*``: an ``unauthorized`` frame, an empty state, the socket still open."""
    client = local.client()
    private, public = unique("private"), unique("open")
    client.set("rooms", private, "s1", {"id": "s1", "text": "secret"})
    client.set("rooms", public, "p1", {"id": "p1", "text": "hi"})
    script = watch(
        node_scripts,
        {
            "url": local.ws_url + "?token=user-bob",
            "subs": [
                {"name": "private", "stream": "rooms", "group": private},
                {"name": "public", "stream": "rooms", "group": public},
            ],
        },
    )
    try:
        ready = script.read()
        assert ready["event"] == "ready", ready
        assert ready["unauthorized"] == ["private"]
        assert ready["states"] == {"private": [], "public": [{"id": "p1", "text": "hi"}]}
        client.set("rooms", private, "s2", {"id": "s2", "text": "more secret"})
        client.set("rooms", public, "p2", {"id": "p2", "text": "still here"})
        state = script.wait_for({"public": [{"id": "p1", "text": "hi"}, {"id": "p2", "text": "still here"}]})
        assert state["matched"], state
        assert state["states"]["private"] == []
    finally:
        code = script.close()
    assert code == 0, script.stderr
