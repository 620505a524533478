"""``iii-stream new DIR``: a project that works as generated, a live to-do list to grow your own app from.

Layout (``files(name)`` gives each file's text, ``create_project(directory)`` writes them)::

    app.py               the auth function, a join gate, a change trigger and HTTP routes that write
    tests/test_app.py    its tests against the real local service (the ``iii_stream`` pytest fixture)
    pytest.ini           testpaths = tests, iii_stream_app = app.py
    requirements.txt     iii-stream-aws[local] and pytest
    public/index.html    a page that shows a list live and writes through the routes
    public/main.js
    public/package.json  the published @motiadev/stream-client-browser (npm install in public/)
    README.md            run, test, open the page, deploy
    .gitignore

The templates are the string constants below; ``__PROJECT__`` is replaced by the project's name and
``__VERSION__`` by this package's version. Nothing else is substituted, so the templates hold JavaScript,
Python and JSON as they are written.
"""

from __future__ import annotations

import re
from pathlib import Path

from iii_stream import __version__
from iii_stream.infra.stack import EXAMPLE_DIR

# The browser client the page loads: the version examples/todo pins (tests/integration/test_scaffold.py checks).
STREAM_CLIENT_BROWSER_VERSION = "0.17.14-beta.196"


class ScaffoldError(Exception):
    """The project cannot be created there (the message says why); nothing was written."""


def create_project(directory: str | Path) -> list[Path]:
    """Write a new project into ``directory`` (created if missing); returns the files written.

    Raises ScaffoldError when ``directory`` exists and is not an empty directory: nothing is overwritten."""
    target = Path(directory)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ScaffoldError(f"{target} exists and is not a directory; give a new or empty directory")
        if any(target.iterdir()):
            raise ScaffoldError(f"{target} is not empty; give a new or empty directory (nothing was written)")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from exc
    written: list[Path] = []
    for relative, text in files(project_name(target)).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def project_name(directory: str | Path) -> str:
    """A name for the project, from its directory: lower case letters, digits, ``.``, ``_`` and ``-`` (npm's rules)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", Path(directory).resolve().name.lower()).strip("-._")
    return name[:60] or "iii-stream-app"


def files(name: str) -> dict[str, str]:
    """Every file of a new project named ``name``, by its path relative to the project."""
    templates = {
        "app.py": app_py(),
        "tests/test_app.py": TEST_APP_PY,
        "pytest.ini": PYTEST_INI,
        "requirements.txt": REQUIREMENTS_TXT,
        ".gitignore": GITIGNORE,
        "README.md": README_MD,
        "public/index.html": INDEX_HTML,
        "public/main.js": MAIN_JS,
        "public/package.json": PACKAGE_JSON,
    }
    return {
        path: text.replace("__PROJECT__", name)
        .replace("__VERSION__", __version__)
        .replace("__CLIENT_VERSION__", STREAM_CLIENT_BROWSER_VERSION)
        for path, text in templates.items()
    }


APP_HEADER = r'''"""__PROJECT__: a live to-do list on iii-stream. Run it with ``iii-stream local --app app.py``.

- ``todo::auth`` (``@app.auth``): every WebSocket and every HTTP request to an ``auth=True`` route carries a
  token, as ``?token=<token>``, ``Sec-WebSocket-Protocol: Authorization, <token>`` (browsers' sockets) or
  ``Authorization: Bearer <token>`` (HTTP). Here the token simply is the user's name (1 to 32 letters, digits,
  ``.``, ``_``, ``-``): check a real token instead (a JWT's signature, a session). The context it answers reaches
  the join gate and the routes (``event["requestContext"]["authorizer"]["lambda"]``).
- ``todo::join-gate`` (``stream:join``): anyone may join a list, but a ``private-<user>`` list only <user>.
- ``todo::on-change`` (``stream``): after each change of a list, counts it into ``todo-summary/<list>/summary``.
- HTTP routes (``@app.http``), all behind the auth function: ``GET /todos/{list}``, ``POST /todos/{list}``
  ``{"title"}`` (201, the new item), ``PATCH /todos/{list}/{id}`` ``{"done": bool}`` (without a body it toggles),
  ``DELETE /todos/{list}/{id}`` (204). They write with ``StreamClient``; every subscriber sees the change.

Each function is an ordinary Lambda handler: locally ``iii-stream local`` serves them all (the routes on
http://127.0.0.1:3000); on AWS ``iii-stream package`` makes each a Lambda.
"""'''


def app_py() -> str:
    """The project's app.py: its own docstring, then the code of the example app (examples/todo/app.py, carried by
    the wheel as part of the stack), so the example and what ``new`` writes are one program."""
    example = (EXAMPLE_DIR / "app.py").read_text(encoding="utf-8")
    return APP_HEADER + example[example.index('"""', 3) + 3 :]


TEST_APP_PY = r'''"""The app against the real local service, over real HTTP (urllib) and real WebSockets.

``iii_stream``, a pytest fixture that comes with iii-stream-aws, runs ``iii-stream local --app app.py`` on free
ports for the whole session; the tests share it, each on a list of its own."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from iii_stream.testing import LocalStack
from websockets.exceptions import InvalidStatus

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def call(
    stack: LocalStack, method: str, path: str, body: Any = None, token: str | None = "alice"
) -> tuple[int, Any]:
    """One request to the app's routes: (status, the JSON answer or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(stack.http_url + path, data=data, method=method)
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


def new_list() -> str:
    return f"list-{uuid.uuid4().hex[:8]}"


def eventually(read: Callable[[], Any], expected: Any, timeout: float = 10.0) -> Any:
    """``read()`` until it returns ``expected`` (triggers run asynchronously), or its last value at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_an_item_posted_reaches_a_subscriber(iii_stream: LocalStack) -> None:
    name = new_list()
    with iii_stream.subscribe("todo", name, query="token=bob") as subscription:
        assert subscription.sync == []
        status, item = call(iii_stream, "POST", f"/todos/{name}", {"title": "Buy milk"})
        assert status == 201
        assert item == {"id": item["id"], "title": "Buy milk", "done": False, "by": "alice", "created": item["created"]}
        assert subscription.next()["event"] == {"type": "create", "data": item}
    assert call(iii_stream, "GET", f"/todos/{name}") == (200, [item])


def test_toggle_and_delete_reach_a_subscriber(iii_stream: LocalStack) -> None:
    name = new_list()
    _, item = call(iii_stream, "POST", f"/todos/{name}", {"title": "Bread"})
    with iii_stream.subscribe("todo", name, query="token=bob") as subscription:
        assert subscription.sync == [item]
        status, toggled = call(iii_stream, "PATCH", f"/todos/{name}/{item['id']}")  # no body: toggles
        assert (status, toggled) == (200, {**item, "done": True})
        assert subscription.next()["event"] == {"type": "update", "data": toggled}
        assert call(iii_stream, "PATCH", f"/todos/{name}/{item['id']}", {"done": True}) == (200, toggled)
        assert subscription.next()["event"]["type"] == "update"
        assert call(iii_stream, "DELETE", f"/todos/{name}/{item['id']}") == (204, None)
        assert subscription.next()["event"]["type"] == "delete"
    assert call(iii_stream, "DELETE", f"/todos/{name}/{item['id']}")[0] == 404
    assert call(iii_stream, "PATCH", f"/todos/{name}/{item['id']}")[0] == 404


def test_a_bad_body_is_a_400(iii_stream: LocalStack) -> None:
    name = new_list()
    assert call(iii_stream, "POST", f"/todos/{name}", {"title": "  "})[0] == 400
    assert call(iii_stream, "POST", f"/todos/{name}", ["not", "an", "object"])[0] == 400
    assert call(iii_stream, "GET", f"/todos/{name}") == (200, [])


def test_the_change_trigger_keeps_the_summary(iii_stream: LocalStack) -> None:
    name = new_list()
    _, milk = call(iii_stream, "POST", f"/todos/{name}", {"title": "Buy milk"})
    call(iii_stream, "POST", f"/todos/{name}", {"title": "Bread"})
    call(iii_stream, "PATCH", f"/todos/{name}/{milk['id']}", {"done": True})
    expected = {"id": "summary", "total": 2, "done": 1, "open": 1}
    assert eventually(lambda: iii_stream.client.get("todo-summary", name, "summary"), expected) == expected
    with iii_stream.subscribe("todo-summary", name, item_id="summary", query="token=bob") as subscription:
        assert subscription.sync == expected


def test_a_private_list_is_only_for_its_owner(iii_stream: LocalStack) -> None:
    with iii_stream.subscribe("todo", "private-alice", query="token=alice") as own:
        assert isinstance(own.sync, list)
    with pytest.raises(AssertionError, match="unauthorized"):  # the join is answered `unauthorized`, not a sync
        iii_stream.subscribe("todo", "private-alice", query="token=bob")
    assert call(iii_stream, "POST", "/todos/private-alice", {"title": "Secret"}, token="bob")[0] == 403
    assert call(iii_stream, "GET", "/todos/private-alice", token="bob")[0] == 403
    assert call(iii_stream, "POST", "/todos/private-alice", {"title": "Mine"}, token="alice")[0] == 201


def test_no_token_no_entry(iii_stream: LocalStack) -> None:
    refused = call(iii_stream, "POST", f"/todos/{new_list()}", {"title": "x"}, token=None)
    assert refused == (403, {"message": "Forbidden"})  # the auth function said no: the function never ran
    assert call(iii_stream, "GET", f"/todos/{new_list()}", token="not a name")[0] == 403
    with pytest.raises(InvalidStatus) as no_socket:  # a socket without a token is refused at connect
        iii_stream.subscribe("todo", new_list())
    assert no_socket.value.response.status_code == 401
'''

PYTEST_INI = """[pytest]
testpaths = tests
iii_stream_app = app.py
"""

REQUIREMENTS_TXT = """iii-stream-aws[local]>=__VERSION__
pytest>=8
"""

GITIGNORE = """.venv/
__pycache__/
.pytest_cache/
.iii-stream/
public/node_modules/
build/
.aws-sam/
"""

README_MD = r"""# __PROJECT__

```sh
iii-stream local --app app.py    # run it: WebSocket ws://127.0.0.1:3112/, your routes http://127.0.0.1:3000
pytest                           # test it: tests/test_app.py against a local service of its own
```

Both need Python 3.11+ with `pip install -r requirements.txt` (iii-stream-aws with its local service, and
pytest), for example in a virtual environment: `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt`.
No AWS account and no Docker: `iii-stream local` runs the same handlers as AWS, with DynamoDB embedded.

## What is here

A shared live to-do list, made of:

- `app.py`: the functions, each an ordinary Lambda handler.
  - `todo::auth` reads the token from `?token=`, `Sec-WebSocket-Protocol: Authorization, <token>` or
    `Authorization: Bearer <token>`. Here the token is the user's name: check a real one there.
  - `todo::join-gate`: a `private-<user>` list is only for `<user>`.
  - `todo::on-change`: keeps the item `todo-summary/<list>/summary` (what is done, what is not).
  - The routes `GET` and `POST /todos/{list}`, `PATCH` and `DELETE /todos/{list}/{id}` use `StreamClient`.
- `tests/test_app.py`: real HTTP requests and WebSocket subscribers against `iii-stream local --app app.py`
  (the `iii_stream` fixture, which comes with iii-stream-aws).
- `public/`: a page that shows a list live (`@motiadev/stream-client-browser`) and adds, toggles and deletes
  through the routes.

Try the routes with curl while `iii-stream local --app app.py` runs:

```sh
curl -X POST http://127.0.0.1:3000/todos/inbox -H 'Authorization: Bearer alice' -d '{"title":"Buy milk"}'
curl http://127.0.0.1:3000/todos/inbox -H 'Authorization: Bearer alice'
iii-stream call stream::list '{"stream_name":"todo","group_id":"inbox"}'
```

## Open the page

```sh
cd public && npm install              # the published browser client, loaded from node_modules by an import map
python3 -m http.server 8080 --bind 127.0.0.1
```

Open <http://127.0.0.1:8080/?user=alice> in two windows: what one adds, ticks or deletes, the other shows at
once. Query parameters: `?user=` (the token), `?list=` (default `inbox`), `?ws=` (default
`ws://127.0.0.1:3112/`), `?api=` (default `http://127.0.0.1:3000`).

## Deploy to AWS

```sh
iii-stream package --app app.py --out build && cd build && sam build && sam deploy --guided
```

This needs the AWS SAM CLI and credentials. Each function of `app.py` becomes a Lambda, the routes an HTTP API
behind a Lambda authorizer that calls `todo::auth`, and the stack sets `STREAM_FUNCTION_NAME` for them. Open the
page with `?ws=` the stack's WebSocket URL (output `WebSocketURL`) and `?api=` its HTTP API URL.
"""

PACKAGE_JSON = """{
  "name": "__PROJECT__-page",
  "private": true,
  "description": "__PROJECT__: the live page, with the published browser client",
  "type": "module",
  "dependencies": {
    "@motiadev/stream-client-browser": "__CLIENT_VERSION__"
  }
}
"""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>__PROJECT__</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <!-- The published ES modules, straight from node_modules (npm install in this folder); no bundler. -->
  <script type="importmap">
    {
      "imports": {
        "@motiadev/stream-client-browser": "./node_modules/@motiadev/stream-client-browser/dist/index.js",
        "@motiadev/stream-client": "./node_modules/@motiadev/stream-client/dist/index.js",
        "uuid": "./node_modules/uuid/dist/index.js"
      }
    }
  </script>
  <script type="module" src="./main.js"></script>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
    h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
    .meta { color: #666; font-size: 0.9rem; }
    #status { font-weight: 600; }
    body[data-status="live"] #status { color: #18794e; }
    body[data-status="connecting"] #status { color: #b45309; }
    form#add { display: flex; gap: 0.5rem; margin: 1.2rem 0 0.6rem; }
    #new-title { flex: 1; font: inherit; padding: 0.4rem 0.6rem; border: 1px solid #ccc; border-radius: 6px; }
    button { font: inherit; cursor: pointer; border-radius: 6px; }
    form#add button { padding: 0.4rem 1rem; border: 1px solid #18794e; background: #18794e; color: #fff; }
    #error { color: #b91c1c; font-size: 0.9rem; }
    ul#todos { list-style: none; padding: 0; margin: 0; }
    #todos li { padding: 0.45rem 0.6rem; border-bottom: 1px solid #eee; display: flex; gap: 0.6rem; }
    #todos li { align-items: center; }
    #todos li .title { flex: 1; }
    #todos li.done .title { text-decoration: line-through; color: #888; }
    #todos li .toggle { width: 1.1rem; height: 1.1rem; margin: 0; }
    #todos li .by { color: #888; font-size: 0.8rem; }
    #todos li .delete { border: none; background: none; color: #999; font-size: 1.1rem; padding: 0.1rem 0.3rem; }
    #todos li .delete:hover { color: #b91c1c; }
    #empty { color: #888; font-style: italic; }
    #summary { margin: 1rem 0; font-weight: 600; }
  </style>
</head>
<body data-status="connecting">
  <h1>__PROJECT__ <code id="list"></code></h1>
  <div class="meta">as <code id="user"></code> on <code id="server"></code> — <span id="status">connecting…</span></div>

  <form id="add" autocomplete="off">
    <input id="new-title" name="title" placeholder="What needs doing?" maxlength="200" required aria-label="New item">
    <button type="submit">Add</button>
  </form>
  <p id="error" role="alert" hidden></p>

  <ul id="todos"></ul>
  <p id="empty" hidden>Nothing to do yet.</p>
  <p id="summary"></p>

  <p class="meta">Query parameters: <code>?user=NAME</code> (your token), <code>?list=NAME</code> (a
    <code>private-NAME</code> list is only for NAME), <code>?ws=URL</code> (default <code>ws://127.0.0.1:3112/</code>),
    <code>?api=URL</code> (your routes, default <code>http://127.0.0.1:3000</code>).</p>
</body>
</html>
"""

MAIN_JS = r"""// Subscribe to a list (a stream group) and its summary (an item) with the published browser client,
// render each state it hands us, and add, toggle and delete through the app's HTTP routes (app.py). A write
// is never drawn by hand: it comes back over the socket, to this page and to every other page on the list.
import { Stream } from '@motiadev/stream-client-browser';

const params = new URLSearchParams(location.search);
const server = params.get('ws') || 'ws://127.0.0.1:3112/';
const api = (params.get('api') || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const user = params.get('user') || 'guest';
const list = params.get('list') || 'inbox';
const route = `${api}/todos/${encodeURIComponent(list)}`;

const $ = (id) => document.getElementById(id);
$('list').textContent = list;
$('user').textContent = user;
$('server').textContent = server;

// The socket's token rides in Sec-WebSocket-Protocol: "Authorization, <user>" (app.py's auth function reads it).
const stream = new Stream(server, { protocols: ['Authorization', user] });
const todos = stream.subscribeGroup('todo', list);
const summary = stream.subscribeItem('todo-summary', list, 'summary');

// --- writes: the routes, with the same token as a bearer token ------------------------------------------------
async function call(method, path = '', body = undefined) {
  const headers = { Authorization: `Bearer ${user}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  let response;
  try {
    response = await fetch(route + path, init);
  } catch {
    return showError(`${method} ${route + path} failed: is iii-stream local running (see ?api=)?`);
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).message ?? text; } catch { /* not JSON */ }
    return showError(`${method} ${route + path}: ${response.status} ${message}`);
  }
  showError('');
  return response.status === 204 ? {} : response.json();
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
  return null;
}

$('add').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  if (!title) return;
  const button = event.target.querySelector('button');
  button.disabled = true;
  try {
    if (await call('POST', '', { title })) input.value = '';
  } finally {
    button.disabled = false;
    input.focus();
  }
});

// --- reads: whatever the subscriptions hand us --------------------------------------------------------------
const order = (a, b) => (a.created ?? 0) - (b.created ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function renderTodos(items) {
  document.body.dataset.status = 'live'; // the first state is the join's sync
  $('status').textContent = 'live';
  const sorted = [...items].sort(order);
  $('todos').replaceChildren(...sorted.map(renderItem));
  $('empty').hidden = sorted.length > 0;
}

function renderItem(item) {
  const li = document.createElement('li');
  li.dataset.id = item.id;
  li.classList.toggle('done', Boolean(item.done));
  const title = item.title ?? JSON.stringify(item);
  const toggle = document.createElement('input');
  toggle.type = 'checkbox';
  toggle.className = 'toggle';
  toggle.checked = Boolean(item.done);
  toggle.setAttribute('aria-label', `Done: ${title}`);
  // Set, not toggle: the request says what this page showed, whatever other pages did meanwhile.
  toggle.addEventListener('change', async () => {
    const changed = await call('PATCH', `/${encodeURIComponent(item.id)}`, { done: toggle.checked });
    if (!changed) toggle.checked = Boolean(item.done); // refused: show what is stored
  });
  const text = document.createElement('span');
  text.className = 'title';
  text.textContent = title;
  li.append(toggle, text);
  if (item.by) {
    const by = document.createElement('span');
    by.className = 'by';
    by.textContent = item.by;
    li.append(by);
  }
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = '✕';
  remove.title = 'Delete';
  remove.setAttribute('aria-label', `Delete: ${title}`);
  remove.addEventListener('click', () => call('DELETE', `/${encodeURIComponent(item.id)}`));
  li.append(remove);
  return li;
}

function renderSummary(value) {
  $('summary').textContent = value ? `${value.open} to do, ${value.done} done` : '';
}

todos.addChangeListener(renderTodos);
summary.addChangeListener(renderSummary);
// The client drops an `unauthorized` answer without a trace, so say what no sync usually means.
setTimeout(() => {
  if (document.body.dataset.status !== 'live') {
    $('status').textContent = 'no sync yet: is iii-stream local running, and is this list yours to join?';
  }
}, 3000);
addEventListener('pagehide', () => stream.close());
"""
