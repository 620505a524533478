"""Import cycles among the project's own modules, found by reading the sources (nothing is imported).

``python -m iii_stream.infra.check_cycles`` (``make cycles``) parses every .py file under functions/ (``iii_stream.*``
and the handler modules such as ``stream_functions``), infra/ (``iii_stream.infra.*``) and bench/ (``bench.*``),
draws an edge for every import of one project module by another, wherever the import is written (at the
top, inside a function, a module ``__getattr__`` or an ``if TYPE_CHECKING:`` block) and prints each
cycle as ``a -> b -> a`` with the lines that make it. Exit code 1 when there is a cycle, 0 when not.

Importing ``a.b.c`` also runs ``a`` and ``a.b``; those implicit edges to parent packages are left out,
or every package whose ``__init__`` imports a submodule would be a cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
SKIPPED_DIRECTORIES: Final = frozenset({"__pycache__", "node_modules"})

# Module name -> imported module name -> the first line (1-based) that imports it.
Graph = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def package(self) -> str:
        """The package a relative import starts from (the module itself when it is a package)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


class ParseError(Exception):
    """A project file that is not valid Python."""


def modules_under(search_dir: Path, top: Path) -> dict[str, Module]:
    """The modules in ``top`` (a package, or a directory of modules), named as with ``search_dir`` on sys.path."""
    found: dict[str, Module] = {}
    if not top.is_dir():
        return found
    for path in sorted(top.rglob("*.py")):
        relative = path.relative_to(search_dir)
        if any(part in SKIPPED_DIRECTORIES or part.startswith(".") for part in relative.parts[:-1]):
            continue
        parts = relative.with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and all(part.isidentifier() for part in parts):
            name = ".".join(parts)
            found[name] = Module(name, path)
    return found


def project_modules(root: Path) -> dict[str, Module]:
    """functions/ is on sys.path in the Lambdas and the tests; infra/ is ``iii_stream.infra`` (linked from
    functions/iii_stream/infra, read once, from infra/), and bench a package at the root."""
    functions = root / "functions"
    linked = functions / "iii_stream" / "infra"
    found = {
        name: module
        for name, module in modules_under(functions, functions).items()
        if linked not in module.path.parents
    }
    found.update(
        {
            f"iii_stream.{name}": Module(f"iii_stream.{name}", m.path)
            for name, m in modules_under(root, root / "infra").items()
        }
    )
    found.update(modules_under(root, root / "bench"))
    return found


def _imported_names(module: Module, tree: ast.AST) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(module named, the names taken from it, line) for every import statement anywhere in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level == 0:
                yield node.module or "", names, node.lineno
                continue
            base = module.package.split(".") if module.package else []
            if node.level > len(base):
                continue  # beyond the top-level package (or no package at all): Python refuses it too
            anchor = base[: len(base) - (node.level - 1)]
            target = ".".join([*anchor, *([node.module] if node.module else [])])
            yield target, names, node.lineno


def _resolve(name: str, modules: Mapping[str, Module]) -> str | None:
    """The project module that ``name`` is, or lies in (the longest project prefix); None when not ours."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _targets(target: str, names: tuple[str, ...], modules: Mapping[str, Module]) -> set[str]:
    """The project modules one import statement loads.

    ``from pkg import sub`` loads the submodule ``pkg.sub`` when there is one, else takes a name from ``pkg``.
    """
    found = set()
    for imported in names or ("",):  # ``import a.b`` takes no names: a.b itself
        submodule = f"{target}.{imported}"
        resolved = submodule if imported and submodule in modules else _resolve(target, modules)
        if resolved is not None:
            found.add(resolved)
    return found


def import_graph(modules: Mapping[str, Module]) -> Graph:
    graph: Graph = {name: {} for name in modules}
    for name, module in modules.items():
        try:
            tree = ast.parse(module.path.read_bytes(), filename=str(module.path))
        except SyntaxError as exc:
            raise ParseError(f"{module.path}: {exc}") from exc
        for target, names, line in _imported_names(module, tree):
            for imported in _targets(target, names, modules) - {name}:
                graph[name][imported] = min(line, graph[name].get(imported, line))  # ast.walk is not in line order
    return graph


def strongly_connected(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's components, iteratively (no recursion limit), each sorted; only those of two modules or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    work: list[tuple[str, Iterator[str]]] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(sorted(graph.get(node, {})))))

    for start in sorted(graph):
        if start in index:
            continue
        visit(start)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is not None:
                if successor not in index:
                    visit(successor)
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while not component or component[-1] != node:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _shortest_cycle(graph: Mapping[str, Mapping[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first, so deterministic)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node]):
            if successor not in within:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    return [start]


def find_cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """One cycle per module caught in one (shortest first found), e.g. ``[a, b, a]``; empty when acyclic."""
    cycles: list[list[str]] = []
    for component in strongly_connected(graph):
        members = set(component)
        covered: set[str] = set()
        for member in component:
            if member not in covered:
                cycle = _shortest_cycle(graph, member, members)
                cycles.append(cycle)
                covered.update(cycle)
    return cycles


def report(cycles: Sequence[list[str]], graph: Graph, modules: Mapping[str, Module], root: Path) -> list[str]:
    lines: list[str] = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle))
        for source, target in pairwise(cycle):
            path = modules[source].path
            where = path.relative_to(root) if path.is_relative_to(root) else path
            lines.append(f"    {where}:{graph[source][target]} imports {target}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.check_cycles", description="Fail on an import cycle among the project's modules."
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the project directory (default: this checkout)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    modules = project_modules(root)
    try:
        graph = import_graph(modules)
    except ParseError as exc:
        print(f"check_cycles: cannot parse {exc}", file=sys.stderr)
        return 2
    cycles = find_cycles(graph)
    if cycles:
        print(f"Import cycles among the project's modules ({len(cycles)}):")
        print("\n".join(report(cycles, graph, modules, root)))
        return 1
    print(f"OK: no import cycle among {len(modules)} modules.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
