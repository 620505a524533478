"""The to-do app as people use it: two Chromium pages on one list, each writing through the app's HTTP routes,
each seeing the other's writes live. Runs on examples/todo and on a project made by ``iii-stream new``.

As in test_browser.py: Debian's ``chromium`` driven by playwright-core (from tests/e2e/node), the page served by a
static file server on a free port with the published browser client from examples/todo/node_modules, and
``iii-stream local --app <app.py> --http-port <free port>`` in a process of its own. The pages are told where
the service is with ``?ws=`` and ``?api=``.

``IIIS_TODO_SCREENSHOT=docs/todo.png`` saves the example page with a few items (the README's picture).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import CLI, LocalService, free_port, start_local, stop_local
from tests.e2e.test_browser import CHROMIUM, EXAMPLE, _QuietHandler, needs_chromium
from tests.e2e.test_node_client import NODE, NODE_DIR, NodeProcess, needs_node, node_scripts, npm_ci

__all__ = ["node_scripts"]  # a fixture used here

SCREENSHOT_ENV = "IIIS_TODO_SCREENSHOT"

# Drives several pages, each in a browser context of its own (two people), one JSON command a line on stdin,
# one JSON answer a line on stdout. playwright-core comes from tests/e2e/node (config.modules).
#   {"cmd":"add", page, title}       type the title in the form and submit it; done when the form is cleared
#   {"cmd":"toggle"|"delete", page, title}   click the item's checkbox or its delete button
#   {"cmd":"wait", page, expect, timeout_ms}  until the page shows expect ({status?, items?, summary?, error?})
#   {"cmd":"screenshot", page, path}  {"cmd":"close"}
# Answers: {"event":"ready", views} once every page is live, {"event":"done", view}, {"event":"state", matched,
# view}, {"event":"error", message, views, log} (exit 2). A view is {status, items: [{title, done}], summary, error}.
DRIVER = r"""
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import path from 'node:path';

const config = JSON.parse(process.argv[2]);
const { chromium } = createRequire(path.join(config.modules, 'package.json'))('playwright-core');
const print = (message) => process.stdout.write(JSON.stringify(message) + '\n');
const log = [];

const browser = await chromium.launch({
  executablePath: config.executable ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  timeout: 15000,
});

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(lifetime);
  await browser.close().catch(() => {});
  process.stdout.write('', () => process.exit(code));
}
const lifetime = setTimeout(() => fail(new Error('lifetime_ms passed')), config.lifetime_ms ?? 60000);

function show() {
  return {
    status: document.body.dataset.status,
    items: [...document.querySelectorAll('#todos li')].map((li) => ({
      title: li.querySelector('.title').textContent,
      done: li.classList.contains('done'),
    })),
    summary: document.getElementById('summary').textContent,
    error: document.getElementById('error').textContent,
  };
}

const pages = {};
const view = (name) => pages[name].evaluate(show);
async function views() {
  const shown = {};
  for (const name of Object.keys(pages)) {
    try { shown[name] = await view(name); } catch { shown[name] = null; }
  }
  return shown;
}

async function fail(error) {
  print({ event: 'error', message: String(error?.message ?? error), views: await views(), log });
  await finish(2);
}

const timeout = config.ready_timeout_ms ?? 10000;
try {
  for (const [name, url] of Object.entries(config.urls)) {
    const context = await browser.newContext({ viewport: config.viewport ?? { width: 720, height: 480 } });
    const page = await context.newPage();
    page.on('console', (message) => log.push(`${name} console.${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => log.push(`${name} pageerror: ${error.message}`));
    page.on('requestfailed', (request) => {
      log.push(`${name} requestfailed: ${request.url()} ${request.failure()?.errorText}`);
    });
    pages[name] = page;
    await page.goto(url, { timeout });
  }
  for (const page of Object.values(pages)) await page.waitForSelector('body[data-status="live"]', { timeout });
  print({ event: 'ready', views: await views(), log });
} catch (error) {
  await fail(error);
}

const item = (page, title) => page.locator('#todos li').filter({ has: page.getByText(title, { exact: true }) });

// Whether the page shows `expected`: show() again, inside the predicate (page functions cannot share code).
function matches(expected) {
  const shown = {
    status: document.body.dataset.status,
    items: [...document.querySelectorAll('#todos li')].map((li) => ({
      title: li.querySelector('.title').textContent,
      done: li.classList.contains('done'),
    })),
    summary: document.getElementById('summary').textContent,
    error: document.getElementById('error').textContent,
  };
  return Object.entries(expected).every(([key, value]) => JSON.stringify(shown[key]) === JSON.stringify(value));
}

async function wait(page, expect, ms) {
  try {
    await page.waitForFunction(matches, expect, { timeout: ms, polling: 'raf' });
    return true;
  } catch {
    return false;
  }
}

async function run(line) {
  if (!line.trim() || finishing) return;
  const command = JSON.parse(line);
  const page = pages[command.page];
  const ms = command.timeout_ms ?? 5000;
  try {
    if (command.cmd === 'add') {
      await page.fill('#new-title', command.title, { timeout: ms });
      await page.press('#new-title', 'Enter', { timeout: ms });
      // The page clears the field once the route answered 201 (and shows an error otherwise).
      await page.waitForFunction(() => document.getElementById('new-title').value === '', null, { timeout: ms });
      print({ event: 'done', view: await view(command.page) });
    } else if (command.cmd === 'toggle') {
      await item(page, command.title).locator('.toggle').click({ timeout: ms });
      print({ event: 'done', view: await view(command.page) });
    } else if (command.cmd === 'delete') {
      await item(page, command.title).locator('.delete').click({ timeout: ms });
      print({ event: 'done', view: await view(command.page) });
    } else if (command.cmd === 'wait') {
      const matched = await wait(page, command.expect, ms);
      print({ event: 'state', matched, view: await view(command.page), log });
    } else if (command.cmd === 'screenshot') {
      await page.screenshot({ path: command.path, fullPage: true });
      print({ event: 'done', path: command.path });
    } else if (command.cmd === 'close') {
      print({ event: 'closed' });
      await finish(0);
    }
  } catch (error) {
    await fail(error);
  }
}

let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => { queue = queue.then(() => run(line)); })
  .on('close', () => { queue = queue.then(() => finish(0)); }); // stdin closed: the test is gone
"""


@dataclass
class TodoApp:
    name: str
    page_url: str  # the static server's root: index.html
    service: LocalService
    http_url: str  # the app's routes


@pytest.fixture(scope="module")
def driver(node_scripts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("driver") / "pages.mjs"
    script.write_text(DRIVER, encoding="utf-8")
    return script


def _serve(directory: Path) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _scaffold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``iii-stream new``; its public/ gets the example's node_modules (the same pinned client, checked)."""
    project = tmp_path_factory.mktemp("scaffold") / "shared-list"
    made = subprocess.run([str(CLI), "new", str(project)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    public = project / "public"
    page_deps = json.loads((public / "package.json").read_text())["dependencies"]
    assert page_deps == json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    (public / "node_modules").symlink_to(EXAMPLE / "node_modules", target_is_directory=True)
    return project / "app.py", public


@pytest.fixture(scope="module", params=["example", "scaffold"])
def todo_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TodoApp]:
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(EXAMPLE)
    app, public = (EXAMPLE / "app.py", EXAMPLE) if request.param == "example" else _scaffold(tmp_path_factory)
    http_port = free_port()
    service = start_local(tmp_path_factory.mktemp("service"), "--app", str(app), "--http-port", str(http_port))
    server, thread = _serve(public)
    try:
        yield TodoApp(
            request.param, f"http://127.0.0.1:{server.server_address[1]}/", service, f"http://127.0.0.1:{http_port}"
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        stop_local(service)


def page_url(app: TodoApp, user: str, todo_list: str) -> str:
    query = {"ws": app.service.ws_url, "api": app.http_url, "user": user, "list": todo_list}
    return app.page_url + "?" + urlencode(query)


class Pages:
    """The driver process with its pages; each step fails the test with what the pages showed."""

    def __init__(self, driver: Path, urls: dict[str, str]) -> None:
        assert CHROMIUM is not None, "CI must have Debian's chromium (.ci/run installs it)"
        config = {"urls": urls, "executable": CHROMIUM, "modules": str(NODE_DIR), "lifetime_ms": 90000}
        self.process = NodeProcess(driver, config)

    def read(self, timeout: float = 20) -> dict[str, Any]:
        return self.process.read(timeout)

    def do(self, page: str, cmd: str, **fields: Any) -> dict[str, Any]:
        self.process.send({"cmd": cmd, "page": page, **fields})
        answer = self.read()
        assert answer["event"] == "done", answer
        return answer

    def shows(self, page: str, **expect: Any) -> None:
        self.process.send({"cmd": "wait", "page": page, "expect": expect, "timeout_ms": 5000})
        answer = self.read()
        assert answer["event"] == "state" and answer["matched"], (page, expect, answer)

    def close(self) -> int:
        return self.process.close()


def todo(title: str, done: bool = False) -> dict[str, Any]:
    return {"title": title, "done": done}


@needs_node
@needs_chromium
def test_two_pages_see_each_others_writes(todo_app: TodoApp, driver: Path, tmp_path: Path) -> None:
    url = page_url(todo_app, "alice", "groceries")
    pages = Pages(driver, {"a": url, "b": page_url(todo_app, "bob", "groceries")})
    try:
        ready = pages.read(40)
        assert ready["event"] == "ready", ready
        for shown in ready["views"].values():
            assert shown["status"] == "live" and shown["items"] == [], ready

        # Add on A: B sees it (and A too: the page draws only what comes back over its socket).
        pages.do("a", "add", title="Buy milk")
        pages.shows("b", items=[todo("Buy milk")], summary="1 to do, 0 done")
        pages.shows("a", items=[todo("Buy milk")], summary="1 to do, 0 done")
        pages.do("b", "add", title="Bread")
        pages.shows("a", items=[todo("Buy milk"), todo("Bread")])
        pages.do("a", "add", title="Eggs")
        pages.shows("b", items=[todo("Buy milk"), todo("Bread"), todo("Eggs")])
        pages.do("b", "add", title="Call the plumber")
        everything = [todo("Buy milk"), todo("Bread"), todo("Eggs"), todo("Call the plumber")]
        pages.shows("a", items=everything, summary="4 to do, 0 done")

        # Toggle on B: A sees it.
        pages.do("b", "toggle", title="Buy milk")
        done = [todo("Buy milk", True), *everything[1:]]
        pages.shows("a", items=done, summary="3 to do, 1 done")
        pages.shows("b", items=done, summary="3 to do, 1 done")

        # Delete on A: gone on B.
        pages.do("a", "delete", title="Bread")
        left = [todo("Buy milk", True), todo("Eggs"), todo("Call the plumber")]
        pages.shows("b", items=left, summary="2 to do, 1 done", error="")
        pages.shows("a", items=left, summary="2 to do, 1 done", error="")

        # Untick on A: back on B.
        pages.do("a", "toggle", title="Buy milk")
        pages.shows("b", items=[todo("Buy milk"), *left[1:]], summary="3 to do, 0 done")
        pages.do("b", "toggle", title="Buy milk")
        pages.shows("a", items=left, summary="2 to do, 1 done")

        pages.do("a", "screenshot", path=str(tmp_path / "page.png"))
        wanted = os.environ.get(SCREENSHOT_ENV)
        if wanted and todo_app.name == "example":
            target = Path(wanted).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            pages.do("a", "screenshot", path=str(target))
    finally:
        code = pages.close()
    assert code == 0, pages.process.stderr
    assert (tmp_path / "page.png").stat().st_size > 0


@needs_node
@needs_chromium
def test_a_page_on_someone_elses_private_list_can_neither_read_nor_write(todo_app: TodoApp, driver: Path) -> None:
    pages = Pages(driver, {"owner": page_url(todo_app, "alice", "private-alice")})
    try:
        assert pages.read(40)["event"] == "ready"
        pages.do("owner", "add", title="Secret")
        pages.shows("owner", items=[todo("Secret")])
    finally:
        assert pages.close() == 0, pages.process.stderr
    # Bob may not write there (the route's check; his page would get no sync: the join gate).
    status, body = _request("POST", f"{todo_app.http_url}/todos/private-alice", {"title": "x"}, token="bob")
    assert status == 403, body
    status, body = _request("GET", f"{todo_app.http_url}/todos/private-alice", token="alice")
    assert status == 200 and [item["title"] for item in body] == ["Secret"], body


@needs_node
def test_the_routes_need_a_token(todo_app: TodoApp) -> None:
    assert _request("POST", f"{todo_app.http_url}/todos/groceries", {"title": "x"}, token=None)[0] == 403
    assert _request("DELETE", f"{todo_app.http_url}/todos/groceries/nothing", token="alice")[0] == 404


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener.open(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None
