"""Pydantic models of every stream function's input, with upstream-shaped validation errors.

Inputs are snake_case, unknown fields are ignored, and a missing or mistyped field fails with
``deserialization_error`` and a serde-like message that names the field.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from iii_stream.core.errors import DeserializationError

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

I64 = Annotated[StrictInt, Field(ge=I64_MIN, le=I64_MAX)]
TtlSeconds = Annotated[StrictInt, Field(gt=0, le=10 * 365 * 24 * 3600)]


class _Input(BaseModel):
    # defer_build: a model's schema is built on its first use, so a cold start pays only for the functions it runs.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


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


M = TypeVar("M", bound=BaseModel)

_OP_TYPES = "`set`, `merge`, `increment`, `decrement`, `append`, `remove`"


def parse_input(model: type[M], payload: Any, function_id: str) -> M:
    """Validate ``payload`` against ``model``, raising upstream's ``deserialization_error``."""
    if not isinstance(payload, dict):
        raise DeserializationError(
            f"Failed to deserialize input for {function_id}: invalid type: {_describe(payload)}, expected an object"
        )
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


def _location(loc: list[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "input"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."


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
