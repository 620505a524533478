"""The example page (examples/todo) in headless Chromium: a change made with ``iii-stream call`` shows on it.

The page loads the published ``@motiadev/stream-client-browser`` from examples/todo/node_modules through an
import map, served here by a static file server on a free port; the local service runs the example's app.
Chromium is Debian's ``chromium`` package (``.ci/run`` installs it), driven by playwright-core (tests/e2e/node).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CLI, LocalService, start_local, stop_local
from tests.e2e.test_node_client import NODE, NodeProcess, needs_node, node_scripts, npm_ci

__all__ = ["node_scripts"]  # a fixture used here

EXAMPLE = Path(__file__).parents[2] / "examples" / "todo"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does it in CI)",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def page_server() -> Iterator[str]:
    """examples/todo (with its node_modules) on a free loopback port, as ``python -m http.server`` would."""
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(EXAMPLE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(EXAMPLE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def example_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    service = start_local(tmp_path_factory.mktemp("example"), "--app", str(EXAMPLE / "app.py"))
    try:
        yield service
    finally:
        stop_local(service)


def cli_call(service: LocalService, function_id: str, payload: dict[str, Any]) -> Any:
    """The real command line, as the README's walkthrough uses it."""
    done = subprocess.run(
        [str(CLI), "call", "--endpoint-url", service.lambda_url, function_id, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def item(item_id: str, title: str, done: bool = False) -> dict[str, Any]:
    return {"id": item_id, "title": title, "done": done}


@needs_node
@needs_chromium
def test_a_change_made_with_the_cli_appears_on_the_page(
    example_service: LocalService, page_server: str, node_scripts: Path, tmp_path: Path
) -> None:
    assert CHROMIUM is not None, "CI must have Debian's chromium (.ci/run installs it)"
    todo = {"stream_name": "todo", "group_id": "groceries"}
    url = f"{page_server}?ws={example_service.ws_url}&user=alice&list=groceries"
    page = NodeProcess(node_scripts / "page.mjs", {"url": url, "executable": CHROMIUM, "lifetime_ms": 40000})
    try:
        ready = page.read(30)
        assert ready["event"] == "ready", ready
        assert ready["view"]["items"] == [] and ready["view"]["status"] == "live", ready

        def shows(expect: dict[str, Any]) -> None:
            page.send({"cmd": "wait", "expect": expect, "timeout_ms": 5000})
            answer = page.read(15)
            assert answer["event"] == "state" and answer["matched"], answer

        milk = {"id": "milk", "title": "Buy milk", "done": False}
        cli_call(example_service, "stream::set", {**todo, "item_id": "milk", "data": milk})
        shows({"items": [item("milk", "Buy milk")], "summary": "1 to do, 0 done"})  # the trigger's recount too

        cli_call(
            example_service,
            "stream::update",
            {**todo, "item_id": "milk", "ops": [{"type": "set", "path": "done", "value": True}]},
        )
        shows({"items": [item("milk", "Buy milk", done=True)], "summary": "0 to do, 1 done"})

        cli_call(
            example_service,
            "stream::set",
            {**todo, "item_id": "bread", "data": {"id": "bread", "title": "Bread", "done": False}},
        )
        cli_call(example_service, "stream::delete", {**todo, "item_id": "milk"})
        shows({"items": [item("bread", "Bread")], "summary": "1 to do, 0 done"})

        page.send({"cmd": "screenshot", "path": str(tmp_path / "page.png")})
        assert page.read(15)["event"] == "screenshot"
    finally:
        code = page.close()
    assert code == 0, page.stderr
    assert (tmp_path / "page.png").stat().st_size > 0


def test_example_auth_and_join_gate() -> None:
    """The example's rules, called as the local service calls them (no network)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_todo_app", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def connect(headers: dict[str, str], query: dict[str, list[str]]) -> Any:
        return module.auth({"headers": headers, "path": "/", "query_params": query, "addr": "127.0.0.1:0"}, None)

    assert connect({"sec-websocket-protocol": "Authorization, alice"}, {}) == {"context": {"user": "alice"}}
    assert connect({"sec-websocket-protocol": "Authorization,bob"}, {}) == {"context": {"user": "bob"}}
    assert connect({}, {"token": ["carol"]}) == {"context": {"user": "carol"}}
    assert connect({}, {}) == {"unauthorized": True}
    assert connect({}, {"token": ["no spaces"]}) == {"unauthorized": True}

    def join(group: str, user: str | None) -> Any:
        context = None if user is None else {"user": user}
        event = {"subscription_id": "s", "stream_name": "todo", "group_id": group, "id": None, "context": context}
        return module.join_gate(event, None)

    assert join("groceries", "alice") == {"unauthorized": False}
    assert join("private-alice", "alice") == {"unauthorized": False}
    assert join("private-alice", "bob") == {"unauthorized": True}
    assert join("private-alice", None) == {"unauthorized": True}
