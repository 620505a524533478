"""A team's own app, outside this repository: the README's "Build your own app" path, as a new user runs it.

Build the wheel; install it with ``[local]`` into a fresh virtual environment in a temporary folder; ``iii-stream
new`` a project there; run the project's generated tests with its own pytest (the ``iii_stream`` fixture starts the
local service from the installed package); ``iii-stream package`` it (validated offline); then start
``iii-stream local --app app.py`` from the project, POST to its route and see the change arrive at the published
Node client. Nothing here imports this checkout: every step is a subprocess of the new environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from iii_stream.infra.offline_env import offline_env

from tests.e2e.test_node_client import NODE, NODE_DIR, NodeProcess, needs_node, npm_ci

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SECONDS = 600


@dataclass
class Installed:
    venv: Path
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, encoding="utf-8", timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done


def _clean_env(home: Path) -> dict[str, str]:
    """Offline AWS settings, and nothing that points Python at this checkout."""
    env = offline_env()
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["HOME"] = os.environ.get("HOME", str(home))  # pip's cache
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    where = tmp_path_factory.mktemp("your-own-app")
    env = _clean_env(where)
    dist = where / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        check=True,
        env=env,
        timeout=INSTALL_SECONDS,
    )
    (wheel,) = dist.glob("iii_stream_aws-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[local]", "pytest"],
        check=True,
        env=env,
        timeout=INSTALL_SECONDS,
    )
    return Installed(venv, {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv)})


def test_the_package_installs_under_iii_stream_only_with_the_cli_and_the_stack(installed: Installed) -> None:
    version = installed.run(installed.bin("iii-stream"), "--version", cwd=installed.venv)
    assert version.stdout.startswith("iii-stream ")
    probe = (
        "import importlib.util, json, pathlib, iii_stream, site\n"
        "tops = sorted(p.name for s in site.getsitepackages() for p in pathlib.Path(s).iterdir())\n"
        "stack = pathlib.Path(iii_stream.__file__).parent / '_stack'\n"
        "print(json.dumps({'infra': importlib.util.find_spec('infra') is not None,\n"
        "  'handlers': importlib.util.find_spec('stream_functions') is not None, 'tops': tops,\n"
        "  'template': (stack / 'template.yaml').is_file(), 'code': (stack / 'functions/ws_message.py').is_file()}))\n"
    )
    found = json.loads(installed.run(installed.bin("python"), "-c", probe, cwd=installed.venv).stdout)
    assert not found["infra"] and not found["handlers"]  # no generic top-level names
    assert "iii_stream" in found["tops"] and "infra" not in found["tops"]
    assert found["template"] and found["code"]


@pytest.fixture(scope="module")
def project(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("team") / "todo-app"
    installed.run(installed.bin("iii-stream"), "new", str(root), cwd=root.parent)
    return root


def test_the_new_projects_own_tests_pass_with_its_own_pytest(installed: Installed, project: Path) -> None:
    done = installed.run(installed.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


def test_the_new_project_packages_into_a_validated_sam_project(installed: Installed, project: Path) -> None:
    out = project / "build"
    installed.run(installed.bin("iii-stream"), "package", "--app", "app.py", "--out", str(out), cwd=project)
    assert (out / "template.yaml").is_file() and (out / "iii-stream" / "template.yaml").is_file()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def running(installed: Installed, project: Path) -> Iterator[dict[str, int]]:
    ports = {"port": _free_port(), "lambda-port": _free_port(), "http-port": _free_port()}
    command = [installed.bin("iii-stream"), "local", "--app", "app.py"]
    for name, port in ports.items():
        command += [f"--{name}", str(port)]
    process = subprocess.Popen(
        command,
        cwd=project,
        env={**installed.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:  # drained to the end: a full pipe would stall the service
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "iii-stream local is running" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not ready.wait(0.1):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("iii-stream local did not start:\n" + "".join(lines))
        yield ports
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stdout.close()


def _post(url: str, body: Any, token: str) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback only
        assert answer.status == 201
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def node_dir() -> Path:
    """tests/e2e/node (the published Node client) with its packages installed."""
    if NODE is None:
        pytest.skip("node is not installed")
    npm_ci(NODE_DIR)
    return NODE_DIR


@needs_node
def test_a_post_to_the_apps_route_reaches_the_published_node_client(running: dict[str, int], node_dir: Path) -> None:
    # GIVEN the published Node client subscribed to a list of the running app (its token in the subprotocol)
    group = f"list-{uuid.uuid4().hex[:8]}"
    config = {
        "url": f"ws://127.0.0.1:{running['port']}/",
        "protocols": ["Authorization", "alice"],
        "subs": [{"name": "todos", "stream": "todo", "group": group}],
    }
    node = NodeProcess(node_dir / "watch.mjs", config)
    try:
        assert node.read(30)["event"] == "ready"
        # WHEN alice adds an item through the app's HTTP route
        item = _post(f"http://127.0.0.1:{running['http-port']}/todos/{group}", {"title": "Buy milk"}, "alice")
        # THEN the client's list holds it
        assert node.wait_for({"todos": [item]})["matched"] is True
    finally:
        node.close()
