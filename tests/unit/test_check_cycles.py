"""iii_stream.infra.check_cycles on small fake packages written to tmp_path (parsed, never imported)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from iii_stream.infra.check_cycles import (
    find_cycles,
    import_graph,
    main,
    modules_under,
    project_modules,
    strongly_connected,
)


def write(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


def cycles_in(root: Path, files: dict[str, str], top: str = "pkg") -> list[list[str]]:
    write(root, files)
    return find_cycles(import_graph(modules_under(root, root / top)))


def test_a_cycle_through_a_type_checking_import(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/core/__init__.py": "",
        "pkg/core/dispatch.py": "from pkg.core.registry import REGISTRY\n",
        "pkg/core/registry.py": """\
            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                from pkg.core.dispatch import FunctionTable
            REGISTRY = {}
            """,
    }
    assert cycles_in(tmp_path, files) == [["pkg.core.dispatch", "pkg.core.registry", "pkg.core.dispatch"]]


def test_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": """\
            import pkg.b

            def run():
                return pkg.b.VALUE
            """,
        "pkg/b.py": """\
            VALUE = 1

            class Lazy:
                def load(self):
                    import pkg.a
                    return pkg.a
            """,
    }
    assert cycles_in(tmp_path, files) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_a_cycle_through_a_module_getattr(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": """\
            def __getattr__(name):
                from pkg.heavy import Heavy
                return Heavy
            """,
        "pkg/heavy.py": "from pkg import something\nclass Heavy: ...\n",
    }
    assert cycles_in(tmp_path, files) == [["pkg", "pkg.heavy", "pkg"]]


@pytest.mark.parametrize(
    ("x_source", "y_source"),
    [
        ("from .y import Y\nX = 1\n", "from .x import X\nY = 2\n"),  # from .module import name
        ("from . import y\n", "from . import x\n"),  # from . import submodule
        ("from ..sub import y\n", "from ..sub.x import X\n"),  # up to the parent package and down again
    ],
)
def test_a_relative_import_cycle(tmp_path: Path, x_source: str, y_source: str) -> None:
    files = {"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/x.py": x_source, "pkg/sub/y.py": y_source}
    assert cycles_in(tmp_path, files) == [["pkg.sub.x", "pkg.sub.y", "pkg.sub.x"]]


def test_a_relative_import_in_a_package_init_starts_from_the_package_itself(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from .x import X\n",  # pkg.sub.x, not pkg.x
        "pkg/sub/x.py": "from ...pkg import sub\nX = 1\n",  # three dots from pkg.sub.x: above pkg, refused
        "pkg/x.py": "from .sub import X\n",
    }
    assert cycles_in(tmp_path, files) == []
    graph = import_graph(modules_under(tmp_path, tmp_path / "pkg"))
    assert graph["pkg.sub"] == {"pkg.sub.x": 1}
    assert graph["pkg.sub.x"] == {}
    assert graph["pkg.x"] == {"pkg.sub": 1}


def test_from_a_package_import_a_submodule_is_an_edge_to_the_submodule(tmp_path: Path) -> None:
    # pkg/__init__ imports nothing, so a -> pkg would be harmless; a -> pkg.b closes the cycle.
    files = {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b, VERSION\n", "pkg/b.py": "from pkg.a import f\n"}
    assert cycles_in(tmp_path, files) == [["pkg.a", "pkg.b", "pkg.a"]]
    graph = import_graph(modules_under(tmp_path, tmp_path / "pkg"))
    assert graph["pkg.a"] == {"pkg.b": 1, "pkg": 1}  # VERSION is a name from the package itself


def test_a_cycle_of_three_is_reported_once_in_import_order(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "from pkg.c import thing as other\n",
        "pkg/c.py": "import json\nfrom pkg import a\n",
    }
    assert cycles_in(tmp_path, files) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_two_separate_cycles(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "import pkg.a\n",
        "pkg/c.py": "import pkg.d\nimport pkg.a\n",
        "pkg/d.py": "import pkg.c\n",
    }
    assert cycles_in(tmp_path, files) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.d", "pkg.c"]]


def test_no_cycle(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from pkg.api import run\n",  # a package importing its submodules is not a cycle
        "pkg/api.py": """\
            from typing import TYPE_CHECKING

            from pkg.models import Model
            from . import errors

            if TYPE_CHECKING:
                from pkg.models import Other

            def run():
                import pkg.errors
                import json, os.path
                return Model, errors, pkg.errors
            """,
        "pkg/models.py": "from .errors import Failure\nfrom pkg import errors\n",
        "pkg/errors.py": "import collections.abc\nclass Failure(Exception): ...\n",
        "pkg/self_import.py": "from . import self_import\nimport pkg.self_import\n",  # not a cycle among modules
    }
    assert cycles_in(tmp_path, files) == []


def test_project_modules_are_named_as_on_sys_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "functions/stream_functions.py": "",
            "functions/iii_stream/__init__.py": "",
            "functions/iii_stream/core/service.py": "",
            "functions/iii_stream/__pycache__/stale.py": "",
            "infra/__init__.py": "",
            "infra/local/gateway.py": "",
            "bench/__main__.py": "",
            "tests/test_x.py": "",  # not a project module
            "examples/todo/app.py": "",
        },
    )
    assert sorted(project_modules(tmp_path)) == [
        "bench.__main__",
        "iii_stream",
        "iii_stream.core.service",
        "iii_stream.infra",
        "iii_stream.infra.local.gateway",
        "stream_functions",
    ]


def _project_with_a_cycle(root: Path) -> None:
    write(
        root,
        {
            "functions/iii_stream/__init__.py": "",
            "functions/iii_stream/core/__init__.py": "",
            "functions/iii_stream/core/dispatch.py": (
                "def table():\n    from iii_stream.core.registry import REGISTRY_FUNCTIONS\n"
            ),
            "functions/iii_stream/core/registry.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from iii_stream.core.dispatch import T\n"
            ),
            "functions/stream_functions.py": "from iii_stream.core import dispatch\n",
            "infra/__init__.py": "",
            "infra/cli.py": "import stream_functions\nfrom iii_stream.infra import __name__ as _\n",
            "bench/__init__.py": "",
            "bench/run.py": "from iii_stream.infra.cli import main\nfrom . import VERSION\n",
        },
    )


def test_main_prints_each_cycle_with_its_lines_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _project_with_a_cycle(tmp_path)
    assert main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Import cycles among the project's modules (1):",
        "iii_stream.core.dispatch -> iii_stream.core.registry -> iii_stream.core.dispatch",
        "    functions/iii_stream/core/dispatch.py:2 imports iii_stream.core.registry",
        "    functions/iii_stream/core/registry.py:3 imports iii_stream.core.dispatch",
    ]


def test_main_without_a_cycle_prints_ok_with_the_module_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _project_with_a_cycle(tmp_path)
    (tmp_path / "functions/iii_stream/core/registry.py").write_text("REGISTRY_FUNCTIONS = {}\n", encoding="utf-8")
    assert main(["--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "OK: no import cycle among 9 modules.\n"


def test_main_exits_2_on_a_file_that_does_not_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"infra/__init__.py": "", "infra/broken.py": "def f(:\n"})
    assert main(["--root", str(tmp_path)]) == 2
    assert "infra/broken.py" in capsys.readouterr().err


def test_the_line_reported_is_the_first_import_even_when_a_later_one_is_shallower(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    import pkg.b\n\nimport pkg.b\n",
        "pkg/b.py": "",
    }
    write(tmp_path, files)
    assert import_graph(modules_under(tmp_path, tmp_path / "pkg"))["pkg.a"] == {"pkg.b": 2}


def test_a_long_chain_needs_no_recursion() -> None:
    names = [f"m{i:05}" for i in range(5000)]
    chain = {name: {after: 1} for name, after in zip(names, names[1:], strict=False)}
    assert strongly_connected({**chain, names[-1]: {}}) == []
    graph = {**chain, names[-1]: {names[0]: 1}}
    assert strongly_connected(graph) == [names]
    assert find_cycles(graph) == [[*names, names[0]]]
