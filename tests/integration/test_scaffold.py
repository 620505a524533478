"""``iii-stream new DIR``: the project it makes works as generated.

The real console script writes the project into a temporary directory; then the project's own tests run in a
pytest of their own (cwd = the project, its pytest.ini, nothing of this repository's configuration), with the
``iii_stream`` fixture coming from the installed package's ``pytest11`` entry point, as in a user's project.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.scaffold import STREAM_CLIENT_BROWSER_VERSION, files, project_name

CLI = Path(sys.executable).parent / "iii-stream"
EXAMPLE = Path(__file__).parents[2] / "examples" / "todo"
LAYOUT = {
    "app.py",
    "tests/test_app.py",
    "pytest.ini",
    "requirements.txt",
    ".gitignore",
    "README.md",
    "public/index.html",
    "public/main.js",
    "public/package.json",
}


def _env() -> dict[str, str]:
    """Offline, and nothing of this pytest run leaks in (its options, plugins, or a table name)."""
    env = offline_env(PYTHONUNBUFFERED="1")
    for name in ("ITEMS_TABLE", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH"):
        env.pop(name, None)
    return env


def new(directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "new", str(directory)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


def layout(directory: Path) -> set[str]:
    return {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}


@pytest.mark.timeout(300)
def test_the_generated_project_passes_its_own_tests(tmp_path: Path) -> None:
    made = new(Path("my-todo"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "my-todo"
    assert layout(project) == LAYOUT
    assert "iii-stream local --app app.py" in made.stdout and "pytest" in made.stdout

    report = tmp_path / "report.xml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-c",
            "pytest.ini",
            "--rootdir",
            ".",
            "-v",
            f"--junitxml={report}",
        ],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # The fixture came from the installed distribution's entry point (pytest lists it by distribution name).
    plugins = next(line for line in run.stdout.splitlines() if line.startswith("plugins:"))
    assert "iii-stream-aws" in plugins, output
    assert f"rootdir: {project}" in run.stdout and "configfile: pytest.ini" in run.stdout, output

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert {key: suite.get(key) for key in ("failures", "errors", "skipped")} == {
        "failures": "0",
        "errors": "0",
        "skipped": "0",
    }, output
    ran = {case.get("name") for case in suite.iter("testcase")}
    assert {
        "test_an_item_posted_reaches_a_subscriber",  # a POST to a route reaches a subscriber
        "test_a_private_list_is_only_for_its_owner",  # a refused join
        "test_the_change_trigger_keeps_the_summary",  # the change trigger's effect
        "test_no_token_no_entry",  # no token: 403
    } <= ran, ran


def test_new_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    project = tmp_path / "taken"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    refused = new(project, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "is not empty" in refused.stderr and str(project) in refused.stderr
    assert layout(project) == {"notes.txt"} and (project / "notes.txt").read_text() == "mine"

    (tmp_path / "a-file").write_text("x")
    refused = new(tmp_path / "a-file", cwd=tmp_path)
    assert refused.returncode == 1 and "is not a directory" in refused.stderr
    assert (tmp_path / "a-file").read_text() == "x"


def test_new_fills_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    made = new(Path("empty"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert layout(tmp_path / "empty") == LAYOUT


def _load_app(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("generated_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_the_project_holds(tmp_path: Path) -> None:
    made = new(tmp_path / "Shop List", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "Shop List"
    assert project_name(project) == "shop-list"

    readme = (project / "README.md").read_text()
    assert readme.startswith("# shop-list\n")
    commands = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in commands[:2]] == ["iii-stream local --app app.py", "pytest"]
    assert "npm install" in readme
    assert "iii-stream package --app app.py --out build && cd build && sam build && sam deploy --guided" in readme

    assert (project / "pytest.ini").read_text().splitlines() == [
        "[pytest]",
        "testpaths = tests",
        "iii_stream_app = app.py",
    ]
    requirements = (project / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("iii-stream-aws[local]") and requirements[1].startswith("pytest")
    assert "public/node_modules/" in (project / ".gitignore").read_text().splitlines()

    # The page loads the very browser client the example pins.
    page = json.loads((project / "public" / "package.json").read_text())
    example = json.loads((EXAMPLE / "package.json").read_text())
    assert page["dependencies"] == example["dependencies"]
    assert page["dependencies"]["@motiadev/stream-client-browser"] == STREAM_CLIENT_BROWSER_VERSION
    assert page["name"] == "shop-list-page"
    html = (project / "public" / "index.html").read_text()
    assert "./node_modules/@motiadev/stream-client-browser/dist/index.js" in html and "./main.js" in html

    app = _load_app(project / "app.py").app
    assert app.auth_function_id == "todo::auth"
    assert {route.route_key for route in app.routes if route.auth} == {
        "GET /todos/{list}",
        "POST /todos/{list}",
        "PATCH /todos/{list}/{id}",
        "DELETE /todos/{list}/{id}",
    }
    assert {(t.type, t.config["stream_name"]) for t in app.triggers} == {
        ("stream:join", "todo"),
        ("stream:join", "todo-summary"),
        ("stream", "todo"),
    }
    source = (project / "app.py").read_text()
    assert 'StreamClient.via_lambda(os.environ.get("STREAM_FUNCTION_NAME"), endpoint_url=None)' in source


def test_the_auth_function_reads_every_kind_of_token(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(files("t")["app.py"])
    module = _load_app(tmp_path / "app.py")

    def auth(headers: dict[str, str], query: dict[str, list[str]]) -> Any:
        return module.auth({"headers": headers, "path": "/", "query_params": query, "addr": "127.0.0.1:0"}, None)

    alice = {"context": {"user": "alice"}}
    assert auth({}, {"token": ["alice"]}) == alice
    assert auth({"sec-websocket-protocol": "Authorization, alice"}, {}) == alice
    assert auth({"authorization": "Bearer alice"}, {}) == alice
    assert auth({"authorization": "bearer alice"}, {}) == alice
    assert auth({}, {}) == {"unauthorized": True}
    assert auth({"authorization": "Basic YWxpY2U6eA=="}, {}) == {"unauthorized": True}
    assert auth({"authorization": "Bearer not a name"}, {}) == {"unauthorized": True}
