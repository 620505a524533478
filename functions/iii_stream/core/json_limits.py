"""Is a value JSON that the service can store and send? Checked where data enters, in one walk.

A value passes when it is plain JSON (objects with string keys, arrays, strings, booleans, null, and numbers
that are finite and within f64's range), its strings and keys are valid Unicode (no lone surrogate:
``json.loads`` accepts ``"\\ud800"``, but UTF-8, DynamoDB and the original's parser do not), and it nests at most
``MAX_JSON_DEPTH`` levels of arrays and objects.

The walk is iterative, so checking a value nested 100,000 levels deep cannot itself overflow the stack.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from math import isfinite
from typing import Any, Final

from iii_stream.core.limits import MAX_JSON_DEPTH

Path = tuple[int | str, ...]
# A node's place as a linked list (parent's trail, key): O(1) per node; turned into a Path only on failure.
_Trail = tuple[Any, int | str] | None

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_LONE_SURROGATE: Final = "invalid Unicode (a lone surrogate)"
_SCALARS: Final = (str, int, float, type(None))  # bool is an int
_PLAIN: Final = frozenset({bool, type(None)})  # scalars with nothing to check
# The largest integer a JSON number can hold in the original (serde_json reads big integers as f64) and in
# JavaScript; Python would keep more digits, up to its 4,300-digit str() limit, and then fail.
_MAX_INTEGER: Final = int(sys.float_info.max)


@dataclass(frozen=True)
class JsonProblem:
    """Why a value is not storable JSON (in serde's words, without the location) and where: its path."""

    reason: str
    path: Path


def json_problem(value: Any, envelope: int = 0, max_depth: int = MAX_JSON_DEPTH) -> JsonProblem | None:
    """The first thing found that makes ``value`` not storable JSON, or None.

    Depth counts nested arrays and objects (a scalar is 0 deep, ``[1]`` is 1). The values that are limited
    sit ``envelope`` levels inside ``value`` (1 for ``data`` in a function's input object): each may nest
    ``max_depth`` levels, and a value that nests deeper is reported at its own path, not at the deepest point.
    """
    if not isinstance(value, dict | list):
        problem = _scalar_problem(value)
        return None if problem is None else JsonProblem(problem, ())
    limit = envelope + max_depth
    stack: list[tuple[Any, int, _Trail]] = [(value, 1, None)]
    while stack:
        node, level, trail = stack.pop()
        if level > limit:
            return JsonProblem(f"nesting deeper than {max_depth} levels", _path(trail)[:envelope])
        if isinstance(node, dict) and not _plain_keys(node):
            problem = next(filter(None, map(_key_problem, node)))
            return JsonProblem(problem, _path(trail))
        containers = []
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(child, dict | list):
                containers.append((child, level + 1, (trail, key)))
            elif type(child) not in _PLAIN:
                problem = _scalar_problem(child)
                if problem is not None:
                    return JsonProblem(problem, _path((trail, key)))
        stack.extend(reversed(containers))
    return None


def _plain_keys(node: dict[Any, Any]) -> bool:
    """Are all keys strings of valid Unicode? (One join and one scan: much faster than a check per key.)"""
    try:
        keys = "".join(node)
    except TypeError:
        return False
    return keys.isascii() or not _SURROGATE.search(keys)


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"invalid type: {type(key).__name__} key, expected a string"
    return f"{_LONE_SURROGATE} in a key" if _SURROGATE.search(key) else None


def _scalar_problem(node: Any) -> str | None:
    if isinstance(node, str):
        return _LONE_SURROGATE if not node.isascii() and _SURROGATE.search(node) else None
    if isinstance(node, float) and not isfinite(node):
        return f"invalid number: {node} is not JSON"
    if isinstance(node, int) and not -_MAX_INTEGER <= node <= _MAX_INTEGER:
        return "invalid number: out of range"
    return None if isinstance(node, _SCALARS) else f"invalid type: {type(node).__name__}, expected a JSON value"


def _path(trail: _Trail) -> Path:
    parts: list[int | str] = []
    while trail is not None:
        trail, key = trail
        parts.append(key)
    return tuple(reversed(parts))
