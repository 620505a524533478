"""The ``stream::update`` op engine: six ops applied in order, best effort, with per-op errors.

Semantics follow the original engine (see ``spec/upstream-iii-stream.md`` 3.4): a failed op is
skipped and reported, the rest still apply. Paths of ``set``/``increment``/``decrement``/``remove``
are one literal first-level key (``""`` is the root); ``merge``/``append`` also take a list of
literal segments. Dots are never separators.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

from iii_stream.core.models import (
    I64_MIN,
    AppendOp,
    DecrementOp,
    IncrementOp,
    MergeOp,
    RemoveOp,
    SetOp,
    UpdateOp,
)

MAX_PATH_DEPTH: Final = 32
MAX_SEGMENT_BYTES: Final = 256
MAX_VALUE_DEPTH: Final = 16
MAX_VALUE_KEYS: Final = 1024
PROTO_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})
DOC_URL: Final = "https://iii.dev/docs/workers/iii-state#error-codes"
U64_MAX: Final = 2**64 - 1


class _Missing:
    """The value of an item that does not exist (distinct from JSON null); a singleton, even when copied."""

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


MISSING: Final = _Missing()


class _OpFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def apply_update_ops(old_value: Any, ops: list[UpdateOp]) -> tuple[Any, list[dict[str, Any]]]:
    """Apply ``ops`` to ``old_value`` (``MISSING`` for a new item); return the new value and the op errors."""
    state = _State(old_value if old_value is MISSING else copy.deepcopy(old_value))
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        try:
            _APPLY[type(op)](state, op)
        except _OpFailed as failure:
            errors.append({"op_index": index, "code": failure.code, "message": failure.message, "doc_url": DOC_URL})
    return state.value, errors


class _State:
    """The value being updated, and whether it is still the missing item's default ``{}``."""

    def __init__(self, old_value: Any) -> None:
        self.missing = old_value is MISSING
        self.value: Any = {} if self.missing else old_value

    def replace(self, value: Any) -> None:
        self.value = value
        self.missing = False


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _segments(path: str | list[str] | None) -> list[str]:
    if path is None or path == "":
        return []
    return [path] if isinstance(path, str) else list(path)


def _check_path(op_name: str, segments: list[str]) -> None:
    if len(segments) > MAX_PATH_DEPTH:
        raise _OpFailed(f"{op_name}.path.too_deep", f"Path depth {len(segments)} exceeds maximum of {MAX_PATH_DEPTH}")
    for segment in segments:
        if segment == "":
            raise _OpFailed(f"{op_name}.path.empty_segment", "Path contains an empty segment")
        size = len(segment.encode("utf-8"))
        if size > MAX_SEGMENT_BYTES:
            raise _OpFailed(
                f"{op_name}.path.segment_too_long",
                f"Path segment of {size} bytes exceeds maximum of {MAX_SEGMENT_BYTES}",
            )
        if segment in PROTO_KEYS:
            raise _OpFailed(
                f"{op_name}.path.proto_polluted",
                f"Path segment '{segment}' is not allowed (prototype pollution).",
            )


def _label(segments: list[str]) -> str:
    if not segments:
        return "root"
    return segments[0] if len(segments) == 1 else "[" + ", ".join(segments) + "]"


def _not_object(op_name: str, verb: str, segments: list[str], target: Any) -> _OpFailed:
    return _OpFailed(
        f"{op_name}.target_not_object",
        f"Cannot {verb} at path '{_label(segments)}': target is {_type_name(target)}, expected object.",
    )


def _json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_json_depth(v) for v in value), default=0)
    return 0


def _check_merge_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _OpFailed("merge.value.not_an_object", "Merge value must be a JSON object")
    if len(value) > MAX_VALUE_KEYS:
        raise _OpFailed(
            "merge.value.too_many_keys",
            f"Merge value has {len(value)} top-level keys, exceeds maximum of {MAX_VALUE_KEYS}",
        )
    for key in value:
        if key in PROTO_KEYS:
            raise _OpFailed(
                "merge.value.proto_polluted",
                f"Merge value top-level key {json.dumps(key)} is a prototype-pollution sink",
            )
    depth = _json_depth(value)
    if depth > MAX_VALUE_DEPTH:
        raise _OpFailed(
            "merge.value.too_deep", f"Merge value JSON nesting depth {depth} exceeds maximum of {MAX_VALUE_DEPTH}"
        )
    return value


def _walk_or_create(state: _State, segments: list[str]) -> dict[str, Any]:
    """Descend ``segments`` from the root, turning missing or non-object nodes into ``{}``."""
    if not isinstance(state.value, dict):
        state.value = {}
    node: dict[str, Any] = state.value
    for segment in segments:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child
    return node


def _apply_set(state: _State, op: SetOp) -> None:
    segments = _segments(op.path)
    _check_path("set", segments)
    value = copy.deepcopy(op.value)
    if not segments:
        state.replace(value)
    elif isinstance(state.value, dict):
        state.value[op.path] = value
        state.missing = False
    else:
        raise _not_object("set", "set", segments, state.value)


def _apply_merge(state: _State, op: MergeOp) -> None:
    segments = _segments(op.path)
    _check_path("merge", segments)
    patch = copy.deepcopy(_check_merge_value(op.value))
    if not segments:
        # Upstream quirk kept on purpose: a root merge into a non-object is a silent no-op.
        if isinstance(state.value, dict):
            state.value.update(patch)
            state.missing = False
        return
    _walk_or_create(state, segments).update(patch)
    state.missing = False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _add(value: Any, delta: int) -> Any:
    """Add like serde_json numbers: integers stay in i64/u64 range, floats stay floats."""
    if not _is_number(value):
        return None
    if isinstance(value, float):
        return value + float(delta)
    total = value + delta
    return total if I64_MIN <= total <= U64_MAX else None


def _missing_negated(by: int) -> int:
    # i64::MIN has no negation in i64; upstream then stores its magnitude.
    return -by if by != I64_MIN else abs(by)


def _apply_counter(state: _State, op: IncrementOp | DecrementOp) -> None:
    name = op.type
    delta = op.by if name == "increment" else -op.by
    initial = op.by if name == "increment" else _missing_negated(op.by)
    segments = _segments(op.path)
    _check_path(name, segments)
    if not segments:
        if state.missing:
            state.replace(initial)
            return
        updated = _add(state.value, delta)
        if updated is None:
            raise _OpFailed(f"{name}.not_number", f"Expected number at path 'root', got {_type_name(state.value)}.")
        state.replace(updated)
        return
    if not isinstance(state.value, dict):
        raise _not_object(name, name, segments, state.value)
    if op.path in state.value:
        current = state.value[op.path]
        updated = _add(current, delta)
        if updated is None:
            raise _OpFailed(f"{name}.not_number", f"Expected number at path '{op.path}', got {_type_name(current)}.")
        state.value[op.path] = updated
    else:
        state.value[op.path] = initial
    state.missing = False


def _initial_append(value: Any) -> Any:
    return value if isinstance(value, str) else [value]


def _append_to(target: Any, value: Any, label: str) -> Any:
    """Return the target after appending ``value``, or raise the upstream type-mismatch error."""
    if isinstance(target, list):
        target.append(value)
        return target
    if isinstance(target, str):
        if isinstance(value, str):
            return target + value
        raise _OpFailed(
            "append.type_mismatch",
            f"Expected string append value at path '{label}', got {_type_name(value)}.",
        )
    if target is None:
        return _initial_append(value)
    raise _OpFailed(
        "append.type_mismatch",
        f"Cannot append at path '{label}': target is {_type_name(target)}, "
        "expected array, string, null, or missing field.",
    )


def _apply_append(state: _State, op: AppendOp) -> None:
    segments = _segments(op.path)
    _check_path("append", segments)
    value = copy.deepcopy(op.value)
    if not segments:
        start = None if state.missing else state.value
        state.replace(_append_to(start, value, "root"))
        return
    if not isinstance(state.value, dict):
        # Upstream brackets every non-root append path here, even a single key.
        raise _OpFailed(
            "append.target_not_object",
            f"Cannot append at path '[{', '.join(segments)}]': target is {_type_name(state.value)}, expected object.",
        )
    *parents, leaf = segments
    parent = _walk_or_create(state, parents) if parents else state.value
    if leaf in parent:
        parent[leaf] = _append_to(parent[leaf], value, leaf)
    else:
        # A missing leaf: one key keeps the string tier, a nested path always starts an array.
        parent[leaf] = _initial_append(value) if not parents else [value]
    state.missing = False


def _apply_remove(state: _State, op: RemoveOp) -> None:
    segments = _segments(op.path)
    _check_path("remove", segments)
    if not segments:
        state.replace(None)
    elif isinstance(state.value, dict):
        state.value.pop(op.path, None)
        state.missing = False
    else:
        raise _not_object("remove", "remove", segments, state.value)


_APPLY: Final[dict[type, Any]] = {
    SetOp: _apply_set,
    MergeOp: _apply_merge,
    IncrementOp: _apply_counter,
    DecrementOp: _apply_counter,
    AppendOp: _apply_append,
    RemoveOp: _apply_remove,
}
