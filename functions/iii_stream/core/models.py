"""Pydantic models of every stream function's input, with upstream-shaped validation errors.

Inputs are snake_case, unknown fields are ignored, and a missing or mistyped field fails with
``deserialization_error`` and a serde-like message that names the field. So does an input that is not
storable JSON (a lone surrogate, NaN, a value nested deeper than ``MAX_JSON_DEPTH``; see ``json_limits``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from iii_stream.core.errors import DeserializationError
from iii_stream.core.json_limits import json_problem

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

I64 = Annotated[StrictInt, Field(ge=I64_MIN, le=I64_MAX)]
TtlSeconds = Annotated[StrictInt, Field(gt=0, le=10 * 365 * 24 * 3600)]


class _Input(BaseModel):
    # defer_build: a model's schema is built on its first use, so a cold start pays only for the functions it runs.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    # How many levels inside the input its free-form values sit (``data``: 1); each may nest MAX_JSON_DEPTH more.
    value_envelope: ClassVar[int] = 1


class ItemKey(_Input):
    stream_name: StrictStr
    group_id: StrictStr
    item_id: StrictStr


class GetInput(ItemKey):
    pass


class DeleteInput(ItemKey):
    pass


class SetInput(ItemKey):
    data: Any = Field(...)
    ttl: TtlSeconds | None = None


class GroupKey(_Input):
    stream_name: StrictStr
    group_id: StrictStr


class ListInput(GroupKey):
    pass


class ListGroupsInput(_Input):
    stream_name: StrictStr


class ListAllInput(_Input):
    pass


class SendInput(GroupKey):
    type: StrictStr
    data: Any = Field(...)
    id: StrictStr | None = None


class SetOp(_Input):
    type: Literal["set"]
    path: StrictStr
    value: Any = None


class MergeOp(_Input):
    type: Literal["merge"]
    path: StrictStr | list[StrictStr] | None = None
    value: Any = Field(...)


class IncrementOp(_Input):
    type: Literal["increment"]
    path: StrictStr
    by: I64


class DecrementOp(_Input):
    type: Literal["decrement"]
    path: StrictStr
    by: I64


class AppendOp(_Input):
    type: Literal["append"]
    path: StrictStr | list[StrictStr] | None = None
    value: Any = Field(...)


class RemoveOp(_Input):
    type: Literal["remove"]
    path: StrictStr


UpdateOp = Annotated[
    SetOp | MergeOp | IncrementOp | DecrementOp | AppendOp | RemoveOp,
    Field(discriminator="type"),
]


class UpdateInput(ItemKey):
    ops: list[UpdateOp]
    ttl: TtlSeconds | None = None
    value_envelope: ClassVar[int] = 3  # an op's value sits in the input, ``ops`` and the op


M = TypeVar("M", bound=BaseModel)

_OP_TYPES = "`set`, `merge`, `increment`, `decrement`, `append`, `remove`"


def parse_input(model: type[M], payload: Any, function_id: str) -> M:
    """Validate ``payload`` against ``model``, raising upstream's ``deserialization_error``."""
    if not isinstance(payload, dict):
        raise DeserializationError(
            f"Failed to deserialize input for {function_id}: invalid type: {_describe(payload)}, expected an object"
        )
    check_json(payload, f"input for {function_id}", getattr(model, "value_envelope", 1))
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise DeserializationError(f"Failed to deserialize input for {function_id}: {describe_error(exc)}") from None


def parse_ops(ops: Any) -> list[UpdateOp]:
    """Validate a list of update ops (used by tests and by ``stream::update``)."""
    try:
        return _ops_adapter().validate_python(ops)
    except ValidationError as exc:
        raise DeserializationError(f"Failed to deserialize update ops: {describe_error(exc)}") from None


def check_json(value: Any, what: str, envelope: int = 0) -> None:
    """Raise ``deserialization_error`` unless ``value`` is storable JSON (see ``json_limits.json_problem``)."""
    problem = json_problem(value, envelope)
    if problem is not None:
        raise DeserializationError(f"Failed to deserialize {what}: {problem.reason} at `{_location(problem.path)}`")


def invocation_error(event: Any) -> dict[str, Any] | None:
    """The answer to a Lambda event whose fields besides ``payload`` (parse_input's) are not JSON; None if fine."""
    if not isinstance(event, dict):
        return None  # the router answers invalid_invocation
    try:
        check_json({key: value for key, value in event.items() if key != "payload"}, "the invocation", 1)
    except DeserializationError as exc:
        return {"error": exc.to_body()}
    return None


@cache
def _ops_adapter() -> TypeAdapter[list[UpdateOp]]:
    return TypeAdapter(list[UpdateOp])


def describe_error(exc: ValidationError) -> str:
    """Render the first pydantic error in serde's words, naming the field's path."""
    error = exc.errors(include_url=False)[0]
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    in_untagged_union = any(part in _UNION_MEMBERS for part in error["loc"])
    where = _location(loc)
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return f"missing field `{loc[-1]}`" + (f" at `{_location(loc[:-1])}`" if len(loc) > 1 else "")
    if kind == "union_tag_invalid":
        tag = _short(error.get("ctx", {}).get("tag", value))
        return f"unknown variant `{tag}`, expected one of {_OP_TYPES} at `{where}.type`"
    if kind == "union_tag_not_found":
        return f"missing field `type` at `{where}`"
    if kind == "extra_forbidden":
        return f"unknown field `{loc[-1]}`" + (f" at `{_location(loc[:-1])}`" if len(loc) > 1 else "")
    if kind in ("string_too_short", "string_too_long", "too_short", "too_long"):
        return f"invalid length: {error['msg'].lower()} at `{where}`"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"invalid value: {_describe(value)} is out of range ({error['msg'].lower()}) at `{where}`"
    expected = "a string or a sequence of strings" if in_untagged_union else _EXPECTED.get(kind, error["msg"].lower())
    return f"invalid type: {_describe(value)}, expected {expected} at `{where}`"


_EXPECTED = {
    "string_type": "a string",
    "int_type": "i64",
    "list_type": "a sequence",
    "model_type": "an object",
    "dict_type": "an object",
    "model_attributes_type": "an object",
}


_OP_TAGS = {"set", "merge", "increment", "decrement", "append", "remove"}
_UNION_MEMBERS = {"str", "list[str]"}


def _is_union_tag(part: int | str) -> bool:
    return part in _OP_TAGS or part in _UNION_MEMBERS


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{_printable(part)}" if text else _printable(part))
    return _short(text, 256) or "input"


def _printable(key: str) -> str:
    """A key fit for a message: shortened, a lone surrogate escaped (a message must encode as UTF-8)."""
    return _short(key.encode("utf-8", "backslashreplace").decode("utf-8"))


def _short(value: Any, limit: int = 64) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    """Name a JSON value the way serde does in its 'invalid type' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {_short(repr(value))}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__
