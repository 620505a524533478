"""Route a function id and its JSON input to the StreamService, returning upstream's result or ErrorBody."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel

from iii_stream.core.errors import FunctionNotFoundError, StreamError
from iii_stream.core.models import (
    DeleteInput,
    GetInput,
    ListAllInput,
    ListGroupsInput,
    ListInput,
    SendInput,
    SetInput,
    UpdateInput,
    parse_input,
)
from iii_stream.core.service import StreamService

STREAM_FUNCTIONS: Final[dict[str, tuple[type[BaseModel], Callable[[StreamService, Any], Any]]]] = {
    "stream::set": (SetInput, StreamService.set),
    "stream::get": (GetInput, StreamService.get),
    "stream::delete": (DeleteInput, StreamService.delete),
    "stream::update": (UpdateInput, StreamService.update),
    "stream::list": (ListInput, StreamService.list_items),
    "stream::list_groups": (ListGroupsInput, StreamService.list_groups),
    "stream::list_all": (ListAllInput, StreamService.list_all),
    "stream::send": (SendInput, StreamService.send),
}


def call(service: StreamService, function_id: str, payload: Any) -> Any:
    """Run one stream function; raises StreamError (with its wire code) on any failure."""
    try:
        model, method = STREAM_FUNCTIONS[function_id]
    except (KeyError, TypeError):
        raise FunctionNotFoundError(f"Function {function_id} not found.") from None
    return method(service, parse_input(model, payload, function_id))


def invoke(service: StreamService, event: Any) -> dict[str, Any]:
    """The Lambda contract: ``{"function_id", "payload"}`` in, ``{"result"}`` or ``{"error"}`` out."""
    if not isinstance(event, dict) or not isinstance(event.get("function_id"), str):
        error = StreamError(
            'The invocation must be a JSON object {"function_id": "stream::...", "payload": {...}}.',
            "invalid_invocation",
        )
        return {"error": error.to_body()}
    try:
        return {"result": call(service, event["function_id"], event.get("payload", {}))}
    except StreamError as exc:
        return {"error": exc.to_body()}
