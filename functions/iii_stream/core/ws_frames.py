"""Client-to-server WebSocket frames (``join``/``leave``), parsed leniently: bad frames are ignored, never fatal."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from iii_stream.core.errors import BadFrameError
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
    """Parse a frame body (the text the client sent); raise BadFrameError with a short reason."""
    if not isinstance(body, str) or not body.strip():
        raise BadFrameError("empty or non-text frame")
    try:
        return ClientFrame.model_validate(json.loads(body))
    except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError are both ValueErrors
        reason = exc.errors(include_url=False)[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
        raise BadFrameError(reason) from None
