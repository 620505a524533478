"""Table-driven conformance suite for the ``stream::update`` op engine.

Every case is data: the stored value before the call (``MISSING`` when the item does not exist),
the ops exactly as the wire sends them, the value expected afterwards and the ``(op_index, code)``
pairs expected in ``errors``. The expectations follow the original engine (iii-hq/iii,
``engine/src/update_ops.rs`` and ``sdk/packages/rust/helpers/src/stream.rs`` at ``bacffa0d3``; see
``spec/upstream-iii-stream.md`` section 3.4), not the Python implementation.

Values are compared strictly: ``3`` and ``3.0`` differ, and ``True`` is not ``1``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from iii_stream.core.errors import DeserializationError
from iii_stream.core.models import parse_ops
from iii_stream.core.update_ops import MISSING, apply_update_ops

DOC_URL = "https://iii.dev/docs/workers/iii-state#error-codes"
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)
U64_MAX = 2**64 - 1
PROTO_SINKS = ("__proto__", "constructor", "prototype")
OPS_WITH_KEY_PATH = ("set", "increment", "decrement", "remove")

Errors = list[tuple[int, str]]


# --------------------------------------------------------------------------- op builders (wire dicts)


def set_(path: str, value: Any) -> dict[str, Any]:
    return {"type": "set", "path": path, "value": value}


def merge(value: Any, path: Any = None) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "merge", "value": value}
    if path is not None:
        op["path"] = path
    return op


def inc(path: str, by: int) -> dict[str, Any]:
    return {"type": "increment", "path": path, "by": by}


def dec(path: str, by: int) -> dict[str, Any]:
    return {"type": "decrement", "path": path, "by": by}


def append(value: Any, path: Any = None) -> dict[str, Any]:
    op: dict[str, Any] = {"type": "append", "value": value}
    if path is not None:
        op["path"] = path
    return op


def remove(path: str) -> dict[str, Any]:
    return {"type": "remove", "path": path}


def op_on(op_type: str, path: Any) -> dict[str, Any]:
    """A well-formed op of ``op_type`` aimed at ``path`` (used by the validation matrices)."""
    builders: dict[str, Any] = {
        "set": lambda: set_(path, 1),
        "merge": lambda: merge({"x": 1}, path),
        "increment": lambda: inc(path, 1),
        "decrement": lambda: dec(path, 1),
        "append": lambda: append("x", path),
        "remove": lambda: remove(path),
    }
    result: dict[str, Any] = builders[op_type]()
    return result


# --------------------------------------------------------------------------- value builders


def nested_object(depth: int) -> dict[str, Any]:
    """An object whose JSON nesting depth (objects and arrays each count one) is ``depth``."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def nested_array_value(depth: int) -> dict[str, Any]:
    """``{"a": [[...]]}`` with a total JSON nesting depth of ``depth`` (arrays count too)."""
    inner: list[Any] = []
    for _ in range(depth - 2):
        inner = [inner]
    return {"a": inner}


def chain(segments: list[str], leaf: Any) -> Any:
    """``{"s0": {"s1": ... leaf}}`` for the given segments."""
    value = leaf
    for segment in reversed(segments):
        value = {segment: value}
    return value


def keys(count: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(count)}


DEEP_33 = [f"k{i}" for i in range(33)]
DEEP_32 = [f"k{i}" for i in range(32)]
SEG_256 = "a" * 256
SEG_257 = "a" * 257
SEG_MULTIBYTE_258 = "é" * 129  # 258 bytes, only 129 characters
SEG_MULTIBYTE_258_CJK = "日" * 86  # 258 bytes, only 86 characters
SEG_MULTIBYTE_256 = "é" * 128  # exactly 256 bytes


# --------------------------------------------------------------------------- the table

SET_CASES = [
    pytest.param({"a": 1}, [set_("b", 2)], {"a": 1, "b": 2}, [], id="set-key-adds-field"),
    pytest.param({"a": 1}, [set_("a", {"x": [1]})], {"a": {"x": [1]}}, [], id="set-key-overwrites-field"),
    pytest.param({"a": 1}, [set_("", [1, 2])], [1, 2], [], id="set-root-replaces-value"),
    pytest.param(
        {"": "empty-field", "keep": True},
        [{"type": "set", "path": ""}],
        None,
        [],
        id="set-root-without-value-means-null",
    ),
    pytest.param({"a": 1}, [{"type": "set", "path": "a"}], {"a": None}, [], id="set-key-without-value-means-null"),
    pytest.param({"a": 1}, [set_("a", None)], {"a": None}, [], id="set-key-explicit-null"),
    pytest.param(MISSING, [set_("k", 1)], {"k": 1}, [], id="set-key-on-missing-item"),
    pytest.param(MISSING, [set_("", "v")], "v", [], id="set-root-on-missing-item"),
    pytest.param("leaf", [set_("field", 1)], "leaf", [(0, "set.target_not_object")], id="set-key-on-string-root"),
    pytest.param(None, [set_("field", 1)], None, [(0, "set.target_not_object")], id="set-key-on-null-root"),
    pytest.param([1], [set_("0", 2)], [1], [(0, "set.target_not_object")], id="set-key-on-array-root"),
    pytest.param(
        {"a": {"b": 1}}, [set_("a.b", 2)], {"a": {"b": 1}, "a.b": 2}, [], id="set-dotted-path-is-one-literal-key"
    ),
    pytest.param({}, [set_("Constructor", 1)], {"Constructor": 1}, [], id="set-proto-lookalike-key-is-allowed"),
]

MERGE_CASES = [
    pytest.param(
        {"a": 1, "n": {"x": 1}},
        [merge({"b": 2, "n": {"y": 2}})],
        {"a": 1, "b": 2, "n": {"y": 2}},
        [],
        id="merge-root-is-shallow",
    ),
    pytest.param(
        {"a": 1},
        [{"type": "merge", "path": None, "value": {"b": 2}}],
        {"a": 1, "b": 2},
        [],
        id="merge-path-null-means-root",
    ),
    pytest.param({"a": 1}, [merge({"b": 2}, "")], {"a": 1, "b": 2}, [], id="merge-path-empty-string-means-root"),
    pytest.param({"a": 1}, [merge({"b": 2}, [])], {"a": 1, "b": 2}, [], id="merge-path-empty-list-means-root"),
    pytest.param(MISSING, [merge({"a": 1})], {"a": 1}, [], id="merge-root-on-missing-item"),
    pytest.param("leaf", [merge({"a": 1})], "leaf", [], id="merge-root-on-string-is-silent-noop"),
    pytest.param(None, [merge({"a": 1})], None, [], id="merge-root-on-null-is-silent-noop"),
    pytest.param([1], [merge({"a": 1})], [1], [], id="merge-root-on-array-is-silent-noop"),
    pytest.param(
        {"session-1": {"ts1": "a"}},
        [merge({"ts2": "b"}, "session-1")],
        {"session-1": {"ts1": "a", "ts2": "b"}},
        [],
        id="merge-key-into-existing-object",
    ),
    pytest.param({}, [merge({"author": "alice"}, "s")], {"s": {"author": "alice"}}, [], id="merge-key-creates-object"),
    pytest.param({}, [merge({"x": 1}, ["foo"])], {"foo": {"x": 1}}, [], id="merge-one-segment-list-equals-string"),
    pytest.param(
        {}, [merge({"x": 1}, ["a", "b", "c"])], {"a": {"b": {"c": {"x": 1}}}}, [], id="merge-nested-creates-objects"
    ),
    pytest.param(
        {"sessions": {"abc": "garbage"}},
        [merge({"author": "alice"}, ["sessions", "abc"])],
        {"sessions": {"abc": {"author": "alice"}}},
        [],
        id="merge-nested-replaces-scalar-target",
    ),
    pytest.param(
        {"a": None, "k": 1},
        [merge({"author": "alice"}, ["a", "b"])],
        {"a": {"b": {"author": "alice"}}, "k": 1},
        [],
        id="merge-nested-replaces-null-intermediate",
    ),
    pytest.param(
        {"a": [1, 2]},
        [merge({"x": 1}, ["a", "b"])],
        {"a": {"b": {"x": 1}}},
        [],
        id="merge-nested-replaces-array-intermediate",
    ),
    pytest.param(
        {"s": {"abc": {"author": "old", "topic": "kept"}}},
        [merge({"author": "new"}, ["s", "abc"])],
        {"s": {"abc": {"author": "new", "topic": "kept"}}},
        [],
        id="merge-nested-is-shallow-at-target",
    ),
    pytest.param("leaf", [merge({"x": 1}, "a")], {"a": {"x": 1}}, [], id="merge-key-replaces-non-object-root"),
    pytest.param(None, [merge({"x": 1}, ["a", "b"])], {"a": {"b": {"x": 1}}}, [], id="merge-nested-replaces-null-root"),
    pytest.param(MISSING, [merge({"x": 1}, ["a", "b"])], {"a": {"b": {"x": 1}}}, [], id="merge-nested-on-missing-item"),
    pytest.param(
        {"a": {"b": {"p": True}}},
        [merge({"x": 1}, ["a.b"])],
        {"a": {"b": {"p": True}}, "a.b": {"x": 1}},
        [],
        id="merge-dotted-segment-is-one-literal-key",
    ),
    pytest.param(
        {"a": 1}, [merge("nope", "foo")], {"a": 1}, [(0, "merge.value.not_an_object")], id="merge-value-string"
    ),
    pytest.param({"a": 1}, [merge([1])], {"a": 1}, [(0, "merge.value.not_an_object")], id="merge-value-array"),
    pytest.param({"a": 1}, [merge(None)], {"a": 1}, [(0, "merge.value.not_an_object")], id="merge-value-null"),
    pytest.param(MISSING, [merge(3)], {}, [(0, "merge.value.not_an_object")], id="merge-value-number-on-missing"),
    pytest.param(
        {},
        [merge({"a": 1}, "s"), remove("s"), merge({"b": 2}, "s")],
        {"s": {"b": 2}},
        [],
        id="merge-remove-merge-recreates-field",
    ),
    pytest.param(
        {},
        [merge({"a": {"__proto__": 1, "constructor": 2}})],
        {"a": {"__proto__": 1, "constructor": 2}},
        [],
        id="merge-nested-proto-key-inside-value-is-allowed",
    ),
]

COUNTER_CASES = [
    pytest.param(
        {"count": 2}, [inc("count", 3), inc("missing", 3)], {"count": 5, "missing": 3}, [], id="inc-existing-and-new"
    ),
    pytest.param(
        {"count": 5}, [dec("count", 3), dec("missing", 3)], {"count": 2, "missing": -3}, [], id="dec-existing-and-new"
    ),
    pytest.param({"count": 10}, [inc("count", 5), dec("count", 3)], {"count": 12}, [], id="inc-dec-in-order"),
    pytest.param({"n": 5}, [inc("n", -7)], {"n": -2}, [], id="inc-negative-by"),
    pytest.param({"n": 5}, [dec("n", -7)], {"n": 12}, [], id="dec-negative-by"),
    pytest.param(2, [inc("", 3)], 5, [], id="inc-root-number"),
    pytest.param(5, [dec("", 3)], 2, [], id="dec-root-number"),
    pytest.param(MISSING, [inc("", 7)], 7, [], id="inc-root-on-missing-item-gives-by"),
    pytest.param(MISSING, [dec("", 7)], -7, [], id="dec-root-on-missing-item-gives-minus-by"),
    pytest.param(MISSING, [inc("", 2), inc("", 3)], 5, [], id="inc-root-on-missing-item-twice"),
    pytest.param(MISSING, [inc("n", 1)], {"n": 1}, [], id="inc-key-on-missing-item"),
    pytest.param(MISSING, [dec("n", 2)], {"n": -2}, [], id="dec-key-on-missing-item"),
    pytest.param({}, [inc("", 1)], {}, [(0, "increment.not_number")], id="inc-root-on-existing-empty-object"),
    pytest.param(None, [dec("", 1)], None, [(0, "decrement.not_number")], id="dec-root-on-existing-null"),
    pytest.param("7", [inc("", 1)], "7", [(0, "increment.not_number")], id="inc-root-on-numeric-string"),
    pytest.param(True, [inc("", 1)], True, [(0, "increment.not_number")], id="inc-root-on-bool"),
    pytest.param(
        {"inc": None, "dec": None},
        [inc("inc", 1), dec("dec", 1)],
        {"inc": None, "dec": None},
        [(0, "increment.not_number"), (1, "decrement.not_number")],
        id="counters-on-null-field-are-not-numbers",
    ),
    pytest.param({"s": "5"}, [inc("s", 1)], {"s": "5"}, [(0, "increment.not_number")], id="inc-string-field"),
    pytest.param({"s": "5"}, [dec("s", 1)], {"s": "5"}, [(0, "decrement.not_number")], id="dec-string-field"),
    pytest.param({"b": True}, [inc("b", 1)], {"b": True}, [(0, "increment.not_number")], id="inc-bool-field"),
    pytest.param({"b": False}, [dec("b", 1)], {"b": False}, [(0, "decrement.not_number")], id="dec-bool-field"),
    pytest.param(
        {"a": [1], "o": {}},
        [inc("a", 1), dec("o", 1)],
        {"a": [1], "o": {}},
        [(0, "increment.not_number"), (1, "decrement.not_number")],
        id="counters-on-array-and-object-fields",
    ),
    pytest.param(
        {"bad": "v", "count": 2},
        [inc("bad", 0), dec("count", 0)],
        {"bad": "v", "count": 2},
        [(0, "increment.not_number")],
        id="by-zero-still-checks-type",
    ),
    pytest.param("leaf", [inc("n", 1)], "leaf", [(0, "increment.target_not_object")], id="inc-key-on-string-root"),
    pytest.param([1], [dec("n", 1)], [1], [(0, "decrement.target_not_object")], id="dec-key-on-array-root"),
    pytest.param(None, [inc("n", 1)], None, [(0, "increment.target_not_object")], id="inc-key-on-null-root"),
    pytest.param(3, [dec("n", 1)], 3, [(0, "decrement.target_not_object")], id="dec-key-on-number-root"),
    pytest.param({"a.b": 1, "a": {"b": 1}}, [inc("a.b", 1)], {"a.b": 2, "a": {"b": 1}}, [], id="inc-dotted-key"),
    # float arithmetic
    pytest.param({"count": 1.5}, [inc("count", 2), dec("count", 1)], {"count": 2.5}, [], id="float-field-stays-float"),
    pytest.param({"n": 2.0}, [inc("n", 1)], {"n": 3.0}, [], id="integral-float-stays-float"),
    pytest.param({"n": 1.0}, [inc("n", 0)], {"n": 1.0}, [], id="float-by-zero-stays-float"),
    pytest.param(0.5, [dec("", 1)], -0.5, [], id="float-root-decrement"),
    pytest.param({"n": 0.5}, [inc("n", I64_MAX)], {"n": float(2**63)}, [], id="float-plus-huge-by"),
    # integer range: i64, then u64, then failure
    pytest.param({"n": I64_MAX}, [inc("n", 1)], {"n": 2**63}, [], id="i64-max-plus-one-becomes-u64"),
    pytest.param(
        {"inc": 2**63 + 10, "dec": 2**63 + 10},
        [inc("inc", 1), dec("dec", 1)],
        {"inc": 2**63 + 11, "dec": 2**63 + 9},
        [],
        id="u64-values-keep-exact-precision",
    ),
    pytest.param({"n": 2**63}, [dec("n", 1)], {"n": I64_MAX}, [], id="u64-back-into-i64"),
    pytest.param({"n": U64_MAX}, [dec("n", 1)], {"n": U64_MAX - 1}, [], id="u64-max-minus-one"),
    pytest.param({"n": I64_MIN}, [dec("n", 1)], {"n": I64_MIN}, [(0, "decrement.not_number")], id="i64-min-minus-one"),
    pytest.param(
        {"n": I64_MIN}, [inc("n", -1)], {"n": I64_MIN}, [(0, "increment.not_number")], id="i64-min-plus-minus-one"
    ),
    pytest.param({"n": U64_MAX}, [inc("n", 1)], {"n": U64_MAX}, [(0, "increment.not_number")], id="u64-max-plus-one"),
    pytest.param(
        {"n": U64_MAX}, [dec("n", -1)], {"n": U64_MAX}, [(0, "decrement.not_number")], id="u64-max-minus-minus-one"
    ),
    pytest.param(U64_MAX, [inc("", 1)], U64_MAX, [(0, "increment.not_number")], id="u64-max-root-plus-one"),
    pytest.param({"n": 0}, [dec("n", I64_MIN)], {"n": 2**63}, [], id="zero-minus-i64-min"),
    pytest.param({"n": -1}, [inc("n", I64_MAX)], {"n": I64_MAX - 1}, [], id="minus-one-plus-i64-max"),
    pytest.param({}, [dec("n", I64_MIN)], {"n": 2**63}, [], id="missing-key-dec-by-i64-min-is-its-magnitude"),
    pytest.param(MISSING, [dec("", I64_MIN)], 2**63, [], id="missing-root-dec-by-i64-min-is-its-magnitude"),
    pytest.param({}, [inc("n", I64_MIN)], {"n": I64_MIN}, [], id="missing-key-inc-by-i64-min"),
    pytest.param({}, [inc("n", I64_MAX)], {"n": I64_MAX}, [], id="missing-key-inc-by-i64-max"),
]

APPEND_CASES = [
    pytest.param(
        {"events": [{"kind": "start"}]},
        [append({"kind": "chunk"}, "events")],
        {"events": [{"kind": "start"}, {"kind": "chunk"}]},
        [],
        id="append-pushes-onto-array",
    ),
    pytest.param(
        {"events": []},
        [append(["nested", "array"], "events")],
        {"events": [["nested", "array"]]},
        [],
        id="append-array-value-is-one-element",
    ),
    pytest.param({"t": "hello"}, [append(" world", "t")], {"t": "hello world"}, [], id="append-concatenates-strings"),
    pytest.param(
        {},
        [append("hello", "transcript"), append({"kind": "chunk"}, "events")],
        {"transcript": "hello", "events": [{"kind": "chunk"}]},
        [],
        id="append-missing-key-initialises-by-value-kind",
    ),
    pytest.param(
        {"string": None, "array": None},
        [append("chunk", "string"), append({"kind": "chunk"}, "array")],
        {"string": "chunk", "array": [{"kind": "chunk"}]},
        [],
        id="append-null-field-initialises-by-value-kind",
    ),
    pytest.param(
        {"events": []},
        [append("first", "events"), append("second", "events")],
        {"events": ["first", "second"]},
        [],
        id="append-keeps-op-order",
    ),
    pytest.param({"a": []}, [append(None, "a")], {"a": [None]}, [], id="append-null-value-to-array"),
    pytest.param({}, [append(None, "k")], {"k": [None]}, [], id="append-null-value-to-missing-key"),
    pytest.param({}, [append(5, "k")], {"k": [5]}, [], id="append-number-to-missing-key"),
    pytest.param(
        {"events": {}},
        [append("chunk", "events")],
        {"events": {}},
        [(0, "append.type_mismatch")],
        id="append-to-object",
    ),
    pytest.param({"c": 1}, [append("chunk", "c")], {"c": 1}, [(0, "append.type_mismatch")], id="append-to-number"),
    pytest.param({"c": 1.5}, [append([1], "c")], {"c": 1.5}, [(0, "append.type_mismatch")], id="append-to-float"),
    pytest.param({"b": True}, [append("x", "b")], {"b": True}, [(0, "append.type_mismatch")], id="append-to-bool"),
    pytest.param(
        {"t": "hi"}, [append(1, "t")], {"t": "hi"}, [(0, "append.type_mismatch")], id="append-number-to-string"
    ),
    pytest.param(
        {"t": "hi"},
        [append({"not": "string"}, "t")],
        {"t": "hi"},
        [(0, "append.type_mismatch")],
        id="append-object-to-string",
    ),
    pytest.param(
        {"t": "hi"}, [append(None, "t")], {"t": "hi"}, [(0, "append.type_mismatch")], id="append-null-to-string"
    ),
    pytest.param(
        {"t": "hi"}, [append(["x"], "t")], {"t": "hi"}, [(0, "append.type_mismatch")], id="append-array-to-string"
    ),
    pytest.param(
        "leaf", [append("chunk", "events")], "leaf", [(0, "append.target_not_object")], id="append-key-on-string-root"
    ),
    pytest.param(
        [1, 2, 3],
        [append("x", ["a", "b"])],
        [1, 2, 3],
        [(0, "append.target_not_object")],
        id="append-nested-on-array-root-is-not-walked",
    ),
    pytest.param(None, [append("x", "k")], None, [(0, "append.target_not_object")], id="append-key-on-null-root"),
    pytest.param(MISSING, [append("hello", "")], "hello", [], id="append-root-on-missing-item-string"),
    pytest.param(
        MISSING, [append({"kind": "chunk"})], [{"kind": "chunk"}], [], id="append-root-on-missing-item-object"
    ),
    pytest.param(MISSING, [append([1, 2], [])], [[1, 2]], [], id="append-root-on-missing-item-array-value"),
    pytest.param(MISSING, [append("a"), append("b")], "ab", [], id="append-root-on-missing-item-twice"),
    pytest.param(
        MISSING,
        [{"type": "append", "path": None, "value": 1}],
        [1],
        [],
        id="append-path-null-means-root",
    ),
    pytest.param([], [append("x")], ["x"], [], id="append-root-existing-empty-array"),
    pytest.param("ab", [append("c", [])], "abc", [], id="append-root-existing-string"),
    pytest.param(None, [append(1, "")], [1], [], id="append-root-existing-null-non-string"),
    pytest.param(None, [append("s")], "s", [], id="append-root-existing-null-string"),
    pytest.param({}, [append("x")], {}, [(0, "append.type_mismatch")], id="append-root-existing-empty-object"),
    pytest.param(5, [append(1)], 5, [(0, "append.type_mismatch")], id="append-root-existing-number"),
    pytest.param("ab", [append(1)], "ab", [(0, "append.type_mismatch")], id="append-root-string-non-string"),
    pytest.param(
        {"e": {"buffer": ["a"]}}, [append("b", ["e", "buffer"])], {"e": {"buffer": ["a", "b"]}}, [], id="append-nested"
    ),
    pytest.param(
        {},
        [append("first", ["session", "abc", "events"])],
        {"session": {"abc": {"events": ["first"]}}},
        [],
        id="append-nested-creates-intermediates",
    ),
    pytest.param(
        {"e": {}},
        [append("x", ["e", "buffer"])],
        {"e": {"buffer": ["x"]}},
        [],
        id="append-nested-missing-leaf-is-array",
    ),
    pytest.param(MISSING, [append(42, ["a", "b"])], {"a": {"b": [42]}}, [], id="append-nested-on-missing-item"),
    pytest.param(
        {"a": [1, 2, 3]}, [append(42, ["a", "b"])], {"a": {"b": [42]}}, [], id="append-nested-replaces-array-parent"
    ),
    pytest.param({"a": "s"}, [append("x", ["a", "b"])], {"a": {"b": ["x"]}}, [], id="append-nested-replaces-scalar"),
    pytest.param(
        {"a": {"b": None}}, [append("x", ["a", "b"])], {"a": {"b": "x"}}, [], id="append-nested-null-leaf-keeps-string"
    ),
    pytest.param({"a": {"b": "x"}}, [append("y", ["a", "b"])], {"a": {"b": "xy"}}, [], id="append-nested-concat"),
    pytest.param(
        {"e": {"buffer": {"x": "y"}}},
        [append("z", ["e", "buffer"])],
        {"e": {"buffer": {"x": "y"}}},
        [(0, "append.type_mismatch")],
        id="append-nested-object-leaf",
    ),
    pytest.param({}, [append("x", ["k"])], {"k": "x"}, [], id="append-one-segment-list-keeps-string-tier"),
    pytest.param(
        {"user.name": ["A"], "user": {"name": ["B"]}},
        [append("C", "user.name")],
        {"user.name": ["A", "C"], "user": {"name": ["B"]}},
        [],
        id="append-dotted-key-is-literal",
    ),
    pytest.param(
        {"e": {"buffer": ["nested"]}},
        [append("flat", "e.buffer")],
        {"e": {"buffer": ["nested"]}, "e.buffer": "flat"},
        [],
        id="append-dotted-key-creates-literal-field",
    ),
]

REMOVE_CASES = [
    pytest.param({"a": 1, "b": 2}, [remove("a")], {"b": 2}, [], id="remove-key"),
    pytest.param({"a": 1}, [remove("zz")], {"a": 1}, [], id="remove-missing-key-is-silent"),
    pytest.param(MISSING, [remove("missing")], {}, [], id="remove-on-missing-item"),
    pytest.param({"": "x", "keep": True}, [remove("")], None, [], id="remove-root-gives-null"),
    pytest.param(MISSING, [remove("")], None, [], id="remove-root-on-missing-item"),
    pytest.param("leaf", [remove("count")], "leaf", [(0, "remove.target_not_object")], id="remove-key-on-string-root"),
    pytest.param(None, [remove("k")], None, [(0, "remove.target_not_object")], id="remove-key-on-null-root"),
    pytest.param({"a.b": 1, "a": {"b": 2}}, [remove("a.b")], {"a": {"b": 2}}, [], id="remove-dotted-key-is-literal"),
    pytest.param(
        {"a": 1, "b": 2},
        [{"type": "remove", "path": "a", "value": 1, "by": 2}],
        {"b": 2},
        [],
        id="remove-ignores-unknown-fields",
    ),
]

MISSING_DEFAULT_CASES = [
    pytest.param(MISSING, [], {}, [], id="no-ops-on-missing-item-gives-empty-object"),
    pytest.param({"a": 1}, [], {"a": 1}, [], id="no-ops-on-existing-item"),
    pytest.param(None, [], None, [], id="no-ops-on-existing-null"),
    pytest.param(
        MISSING, [remove("x"), inc("", 1)], {}, [(1, "increment.not_number")], id="remove-ends-the-missing-default"
    ),
    pytest.param(
        MISSING, [merge({}), append("x")], {}, [(1, "append.type_mismatch")], id="root-merge-ends-the-missing-default"
    ),
    pytest.param(
        MISSING, [inc("a", 1), inc("", 1)], {"a": 1}, [(1, "increment.not_number")], id="key-inc-ends-missing-default"
    ),
    pytest.param(
        MISSING,
        [{"type": "set", "path": ""}, inc("", 1)],
        None,
        [(1, "increment.not_number")],
        id="root-set-null-then-increment",
    ),
    pytest.param(
        MISSING,
        [set_("__proto__", 1), inc("", 5)],
        5,
        [(0, "set.path.proto_polluted")],
        id="failed-op-keeps-the-missing-default",
    ),
    pytest.param(
        MISSING,
        [merge("x"), append(1)],
        [1],
        [(0, "merge.value.not_an_object")],
        id="failed-merge-keeps-the-missing-default",
    ),
]


def _proto_path_cases() -> list[Any]:
    cases = []
    for op_type in ("set", "merge", "increment", "decrement", "append", "remove"):
        for sink in PROTO_SINKS:
            cases.append(
                pytest.param(
                    {"a": 1},
                    [op_on(op_type, sink)],
                    {"a": 1},
                    [(0, f"{op_type}.path.proto_polluted")],
                    id=f"{op_type}-path-{sink}",
                )
            )
    return cases


def _segment_length_cases() -> list[Any]:
    cases = []
    for op_type in ("set", "merge", "increment", "decrement", "append", "remove"):
        path: Any = [SEG_257] if op_type in ("merge", "append") else SEG_257
        cases.append(
            pytest.param(
                {}, [op_on(op_type, path)], {}, [(0, f"{op_type}.path.segment_too_long")], id=f"{op_type}-segment-257"
            )
        )
    return cases


PATH_VALIDATION_CASES = [
    *_proto_path_cases(),
    *_segment_length_cases(),
    pytest.param(
        {},
        [dec(SEG_MULTIBYTE_258, 1)],
        {},
        [(0, "decrement.path.segment_too_long")],
        id="dec-segment-258-bytes-129-chars",
    ),
    pytest.param(
        {},
        [merge({"x": 1}, ["ok", SEG_MULTIBYTE_258_CJK])],
        {},
        [(0, "merge.path.segment_too_long")],
        id="merge-segment-258-bytes-86-chars",
    ),
    pytest.param({}, [set_(SEG_256, 1)], {SEG_256: 1}, [], id="set-segment-256-bytes-ok"),
    pytest.param({}, [inc(SEG_MULTIBYTE_256, 1)], {SEG_MULTIBYTE_256: 1}, [], id="inc-segment-256-multibyte-ok"),
    pytest.param({}, [append("x", ["a", SEG_256])], {"a": {SEG_256: ["x"]}}, [], id="append-segment-256-bytes-ok"),
    pytest.param({}, [merge({"x": 1}, DEEP_33)], {}, [(0, "merge.path.too_deep")], id="merge-path-depth-33"),
    pytest.param({}, [append("x", DEEP_33)], {}, [(0, "append.path.too_deep")], id="append-path-depth-33"),
    pytest.param(
        {},
        [merge({"x": 1}, ["", *DEEP_32])],
        {},
        [(0, "merge.path.too_deep")],
        id="depth-is-checked-before-segments",
    ),
    pytest.param({}, [merge({"x": 1}, DEEP_32)], chain(DEEP_32, {"x": 1}), [], id="merge-path-depth-32-ok"),
    pytest.param({}, [append(1, DEEP_32)], chain(DEEP_32, [1]), [], id="append-path-depth-32-ok"),
    pytest.param({}, [merge({"x": 1}, ["a", ""])], {}, [(0, "merge.path.empty_segment")], id="merge-empty-segment"),
    pytest.param({}, [merge({"x": 1}, [""])], {}, [(0, "merge.path.empty_segment")], id="merge-only-empty-segment"),
    pytest.param({}, [append("x", [""])], {}, [(0, "append.path.empty_segment")], id="append-empty-segment"),
    pytest.param(
        {}, [append("x", ["a", "constructor", "b"])], {}, [(0, "append.path.proto_polluted")], id="append-proto-middle"
    ),
    pytest.param(
        {"safe": {}},
        [append("x", ["safe", "prototype"])],
        {"safe": {}},
        [(0, "append.path.proto_polluted")],
        id="append-proto-leaf",
    ),
    pytest.param(
        {}, [merge({"x": 1}, ["a", "__proto__"])], {}, [(0, "merge.path.proto_polluted")], id="merge-proto-nested"
    ),
]

MERGE_VALUE_VALIDATION_CASES = [
    pytest.param({}, [merge(keys(1025))], {}, [(0, "merge.value.too_many_keys")], id="merge-value-1025-keys"),
    pytest.param({}, [merge(keys(1024))], keys(1024), [], id="merge-value-1024-keys-ok"),
    pytest.param(
        {},
        [merge({**keys(1024), "__proto__": 1})],
        {},
        [(0, "merge.value.too_many_keys")],
        id="key-count-is-checked-before-proto-keys",
    ),
    *[
        pytest.param(
            {"a": 1},
            [merge({"ok": 1, sink: {"polluted": True}}, "foo")],
            {"a": 1},
            [(0, "merge.value.proto_polluted")],
            id=f"merge-value-top-level-{sink}",
        )
        for sink in PROTO_SINKS
    ],
    pytest.param(
        {},
        [merge({"__proto__": nested_object(17)})],
        {},
        [(0, "merge.value.proto_polluted")],
        id="proto-keys-are-checked-before-depth",
    ),
    pytest.param({}, [merge(nested_object(17))], {}, [(0, "merge.value.too_deep")], id="merge-value-depth-17"),
    pytest.param({}, [merge(nested_object(16))], nested_object(16), [], id="merge-value-depth-16-ok"),
    pytest.param(
        {}, [merge(nested_array_value(17))], {}, [(0, "merge.value.too_deep")], id="merge-value-depth-17-via-arrays"
    ),
    pytest.param({}, [merge(nested_array_value(16))], nested_array_value(16), [], id="merge-value-depth-16-via-arrays"),
    pytest.param(
        {}, [merge("nope", ["__proto__"])], {}, [(0, "merge.path.proto_polluted")], id="merge-path-checked-before-value"
    ),
]

BEST_EFFORT_CASES = [
    pytest.param(
        {"bad": "value", "events": {}},
        [inc("bad", 1), set_("__proto__", True), append("chunk", "events"), set_("ok", True)],
        {"bad": "value", "events": {}, "ok": True},
        [(0, "increment.not_number"), (1, "set.path.proto_polluted"), (2, "append.type_mismatch")],
        id="failed-ops-are-skipped-and-keep-their-index",
    ),
    pytest.param(
        {"buffer": []},
        [append("first", "buffer"), append(True, ["__proto__", "polluted"]), append("third", "buffer")],
        {"buffer": ["first", "third"]},
        [(1, "append.path.proto_polluted")],
        id="earlier-and-later-successes-are-kept",
    ),
    pytest.param(
        {},
        [
            append("first", ["session", "abc", "events"]),
            append(True, ["__proto__", "polluted"]),
            append("third", ["session", "abc", "events"]),
        ],
        {"session": {"abc": {"events": ["first", "third"]}}},
        [(1, "append.path.proto_polluted")],
        id="nested-appends-around-a-failure",
    ),
    pytest.param(
        {"n": 1, "s": "x"},
        [inc("s", 1), inc("n", 1), merge(1), dec("n", 5), remove("prototype"), set_("done", True)],
        {"n": -3, "s": "x", "done": True},
        [(0, "increment.not_number"), (2, "merge.value.not_an_object"), (4, "remove.path.proto_polluted")],
        id="alternating-failures-and-successes",
    ),
    pytest.param(
        {"a": 1},
        [set_("", "leaf"), set_("b", 2), set_("", {"c": 3}), set_("d", 4)],
        {"c": 3, "d": 4},
        [(1, "set.target_not_object")],
        id="root-changes-affect-later-ops",
    ),
]

CASES = [
    *SET_CASES,
    *MERGE_CASES,
    *COUNTER_CASES,
    *APPEND_CASES,
    *REMOVE_CASES,
    *MISSING_DEFAULT_CASES,
    *PATH_VALIDATION_CASES,
    *MERGE_VALUE_VALIDATION_CASES,
    *BEST_EFFORT_CASES,
]


def _canonical(value: Any) -> str:
    """JSON text that tells ``1`` from ``1.0`` and ``true`` from ``1``, independent of key order."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize(("old_value", "ops", "expected_value", "expected_errors"), CASES)
def test_update_ops_conform_to_upstream(
    old_value: Any, ops: list[dict[str, Any]], expected_value: Any, expected_errors: Errors
) -> None:
    new_value, errors = apply_update_ops(old_value, parse_ops(ops))

    assert new_value is not MISSING
    assert new_value == expected_value
    assert _canonical(new_value) == _canonical(expected_value)
    assert [(error["op_index"], error["code"]) for error in errors] == expected_errors
    for error in errors:
        assert set(error) == {"op_index", "code", "message", "doc_url"}
        assert error["doc_url"] == DOC_URL
        assert isinstance(error["message"], str)
        assert error["message"]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 70
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"


# --------------------------------------------------------------------------- error message text

MESSAGE_CASES = [
    pytest.param(
        {"count": "x"}, [inc("count", 1)], "Expected number at path 'count', got string.", id="msg-not-number-key"
    ),
    pytest.param(True, [dec("", 1)], "Expected number at path 'root', got boolean.", id="msg-not-number-root"),
    pytest.param(
        "leaf", [set_("field", 1)], "Cannot set at path 'field': target is string, expected object.", id="msg-set"
    ),
    pytest.param(
        None, [remove("k")], "Cannot remove at path 'k': target is null, expected object.", id="msg-remove-target"
    ),
    pytest.param(
        [1], [inc("n", 1)], "Cannot increment at path 'n': target is array, expected object.", id="msg-increment-target"
    ),
    pytest.param(
        [1, 2, 3],
        [append("x", ["a", "b"])],
        "Cannot append at path '[a, b]': target is array, expected object.",
        id="msg-append-target-nested",
    ),
    pytest.param(
        "leaf",
        [append("chunk", "events")],
        "Cannot append at path '[events]': target is string, expected object.",
        id="msg-append-target-single-key",
    ),
    pytest.param(
        {"t": "x"}, [append(1, "t")], "Expected string append value at path 't', got number.", id="msg-append-string"
    ),
    pytest.param(
        {"e": {"b": {}}},
        [append(1, ["e", "b"])],
        "Cannot append at path 'b': target is object, expected array, string, null, or missing field.",
        id="msg-append-type-mismatch-leaf",
    ),
    pytest.param(
        {},
        [append(1)],
        "Cannot append at path 'root': target is object, expected array, string, null, or missing field.",
        id="msg-append-type-mismatch-root",
    ),
    pytest.param({}, [merge({"x": 1}, DEEP_33)], "Path depth 33 exceeds maximum of 32", id="msg-too-deep"),
    pytest.param({}, [merge({"x": 1}, ["a", ""])], "Path contains an empty segment", id="msg-empty-segment"),
    pytest.param(
        {}, [set_(SEG_MULTIBYTE_258, 1)], "Path segment of 258 bytes exceeds maximum of 256", id="msg-segment-bytes"
    ),
    pytest.param(
        {},
        [remove("__proto__")],
        "Path segment '__proto__' is not allowed (prototype pollution).",
        id="msg-path-proto",
    ),
    pytest.param({}, [merge([1])], "Merge value must be a JSON object", id="msg-merge-not-object"),
    pytest.param(
        {}, [merge(keys(1025))], "Merge value has 1025 top-level keys, exceeds maximum of 1024", id="msg-too-many-keys"
    ),
    pytest.param(
        {},
        [merge({"__proto__": 1})],
        'Merge value top-level key "__proto__" is a prototype-pollution sink',
        id="msg-merge-value-proto",
    ),
    pytest.param(
        {},
        [merge(nested_object(17))],
        "Merge value JSON nesting depth 17 exceeds maximum of 16",
        id="msg-merge-value-too-deep",
    ),
]


@pytest.mark.parametrize(("old_value", "ops", "expected_message"), MESSAGE_CASES)
def test_error_message_text_matches_upstream(old_value: Any, ops: list[dict[str, Any]], expected_message: str) -> None:
    _, errors = apply_update_ops(old_value, parse_ops(ops))

    assert [error["message"] for error in errors] == [expected_message]


# --------------------------------------------------------------------------- malformed ops

MALFORMED_OPS = [
    pytest.param([{"type": "multiply", "path": "a", "by": 2}], id="unknown-type"),
    pytest.param([{"type": "Set", "path": "a", "value": 1}], id="type-is-case-sensitive"),
    pytest.param([{"path": "a", "value": 1}], id="missing-type"),
    pytest.param([{"type": None, "path": "a"}], id="null-type"),
    pytest.param([{"type": 1, "path": "a"}], id="non-string-type"),
    pytest.param(["set"], id="op-is-not-an-object"),
    pytest.param({"type": "remove", "path": "a"}, id="ops-is-not-a-list"),
    pytest.param([{"type": "increment", "path": "n", "by": 1.5}], id="float-by"),
    pytest.param([{"type": "decrement", "path": "n", "by": 2.0}], id="integral-float-by"),
    pytest.param([{"type": "increment", "path": "n", "by": "1"}], id="string-by"),
    pytest.param([{"type": "increment", "path": "n", "by": True}], id="bool-true-by"),
    pytest.param([{"type": "decrement", "path": "n", "by": False}], id="bool-false-by"),
    pytest.param([{"type": "increment", "path": "n", "by": None}], id="null-by"),
    pytest.param([{"type": "increment", "path": "n"}], id="missing-by"),
    pytest.param([{"type": "increment", "path": "n", "by": I64_MAX + 1}], id="by-above-i64"),
    pytest.param([{"type": "decrement", "path": "n", "by": I64_MIN - 1}], id="by-below-i64"),
    pytest.param([{"type": "set", "value": 1}], id="set-missing-path"),
    pytest.param([{"type": "increment", "by": 1}], id="increment-missing-path"),
    pytest.param([{"type": "decrement", "by": 1}], id="decrement-missing-path"),
    pytest.param([{"type": "remove"}], id="remove-missing-path"),
    pytest.param([{"type": "set", "path": None, "value": 1}], id="set-null-path"),
    pytest.param([{"type": "remove", "path": None}], id="remove-null-path"),
    pytest.param([{"type": "set", "path": ["a"], "value": 1}], id="set-list-path"),
    pytest.param([{"type": "increment", "path": ["a"], "by": 1}], id="increment-list-path"),
    pytest.param([{"type": "remove", "path": 5}], id="remove-number-path"),
    pytest.param([{"type": "merge", "path": "a"}], id="merge-missing-value"),
    pytest.param([{"type": "append", "path": "a"}], id="append-missing-value"),
    pytest.param([{"type": "merge", "path": ["a", 1], "value": {}}], id="merge-non-string-path-element"),
    pytest.param([{"type": "append", "path": ["a", None], "value": 1}], id="append-null-path-element"),
    pytest.param([{"type": "merge", "path": 5, "value": {}}], id="merge-number-path"),
    pytest.param([{"type": "append", "path": {"a": 1}, "value": 1}], id="append-object-path"),
    pytest.param([{"type": "remove", "path": "a"}, {"type": "nope"}], id="one-bad-op-fails-the-whole-list"),
]


@pytest.mark.parametrize("ops", MALFORMED_OPS)
def test_malformed_ops_fail_deserialization(ops: Any) -> None:
    with pytest.raises(DeserializationError) as caught:
        parse_ops(ops)

    assert caught.value.code == "deserialization_error"
    assert caught.value.message


# --------------------------------------------------------------------------- no aliasing


def test_apply_does_not_mutate_old_value_or_ops() -> None:
    old_value = {
        "arr": [1, {"deep": [1]}],
        "obj": {"x": {"y": 1}, "list": [1]},
        "n": 1,
        "s": "a",
        "gone": {"k": 1},
    }
    wire_ops: list[dict[str, Any]] = [
        append(2, "arr"),
        append("z", ["obj", "list"]),
        merge({"z": 2}, ["obj", "x"]),
        merge({"w": [1]}, ["obj", "new"]),
        inc("n", 1),
        append("b", "s"),
        remove("gone"),
        set_("fresh", [1]),
        append(2, "fresh"),
        append(3, ["obj", "new", "w"]),
    ]
    old_snapshot = copy.deepcopy(old_value)
    ops_snapshot = copy.deepcopy(wire_ops)
    parsed = parse_ops(wire_ops)

    new_value, errors = apply_update_ops(old_value, parsed)

    assert errors == []
    assert old_value == old_snapshot
    assert wire_ops == ops_snapshot
    assert new_value == {
        "arr": [1, {"deep": [1]}, 2],
        "obj": {"x": {"y": 1, "z": 2}, "list": [1, "z"], "new": {"w": [1, 3]}},
        "n": 2,
        "s": "ab",
        "fresh": [1, 2],
    }

    # The same parsed ops applied again give the same result: nothing leaked into them.
    again, _ = apply_update_ops(copy.deepcopy(old_snapshot), parsed)
    assert again == new_value

    # The result shares no containers with the input.
    new_value["arr"][1]["deep"].append(99)
    new_value["obj"]["x"]["y"] = 100
    assert old_value == old_snapshot
