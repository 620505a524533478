"""Client-to-server WebSocket frames (``join``/``leave``), parsed leniently: bad frames are ignored, never fatal."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from iii_stream.core.errors import BadFrameError
from iii_stream.core.json_limits import json_problem
from iii_stream.core.limits import MAX_NAME_BYTES, name_bytes_over


def _short_enough(value: str) -> str:
    if name_bytes_over(value) is not None:
        raise ValueError(f"longer than {MAX_NAME_BYTES} bytes")
    return value


Name = Annotated[StrictStr, AfterValidator(_short_enough)]


class SubscriptionData(BaseModel):
    """``data`` of a join or leave frame: camelCase, as the published clients send it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    subscription_id: Name = Field(alias="subscriptionId", min_length=1)
    stream_name: Name = Field(alias="streamName")
    group_id: Name = Field(alias="groupId")
    id: Name | None = None


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    type: Literal["join", "leave"]
    data: SubscriptionData


def parse_client_frame(body: Any) -> ClientFrame:
    """Parse a frame body (the text the client sent); raise BadFrameError with a short reason, never another error."""
    if not isinstance(body, str) or not body.strip():
        raise BadFrameError("empty or non-text frame")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # also an integer over Python's 4,300 digits, or nesting it cannot read
        raise BadFrameError("not JSON") from None
    problem = json_problem(value)  # nested deeper than MAX_JSON_DEPTH, a lone surrogate, NaN: not the service's JSON
    if problem is not None:
        raise BadFrameError(problem.reason)
    try:
        return ClientFrame.model_validate(value)
    except ValidationError as exc:
        raise BadFrameError(exc.errors(include_url=False)[0]["msg"]) from None
