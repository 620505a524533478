"""Route a function id and its JSON input to a service method, returning upstream's result or ErrorBody.

Two Lambdas share this contract: ``StreamFunction`` (the ``stream::*`` functions) and
``RegistryFunction`` (the ``registry::*`` functions that register functions and triggers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

FunctionTable = Mapping[str, tuple[type[BaseModel], Callable[[Any, Any], Any]]]

STREAM_FUNCTIONS: Final[FunctionTable] = {
    "stream::set": (SetInput, StreamService.set),
    "stream::get": (GetInput, StreamService.get),
    "stream::delete": (DeleteInput, StreamService.delete),
    "stream::update": (UpdateInput, StreamService.update),
    "stream::list": (ListInput, StreamService.list_items),
    "stream::list_groups": (ListGroupsInput, StreamService.list_groups),
    "stream::list_all": (ListAllInput, StreamService.list_all),
    "stream::send": (SendInput, StreamService.send),
}


def __getattr__(name: str) -> Any:
    # The registry's table lives with the registry, so the stream functions' cold start never loads it.
    if name == "REGISTRY_FUNCTIONS":
        from iii_stream.core.registry import REGISTRY_FUNCTIONS

        return REGISTRY_FUNCTIONS
    raise AttributeError(name)


def call(service: Any, function_id: str, payload: Any, table: FunctionTable = STREAM_FUNCTIONS) -> Any:
    """Run one function; raises StreamError (with its wire code) on any failure."""
    try:
        model, method = table[function_id]
    except (KeyError, TypeError):
        raise FunctionNotFoundError(f"Function {function_id} not found.") from None
    return method(service, parse_input(model, payload, function_id))


def invoke(service: Any, event: Any, table: FunctionTable = STREAM_FUNCTIONS) -> dict[str, Any]:
    """The Lambda contract: ``{"function_id", "payload"}`` in, ``{"result"}`` or ``{"error"}`` out."""
    if not isinstance(event, dict) or not isinstance(event.get("function_id"), str):
        error = StreamError(
            'The invocation must be a JSON object {"function_id": "...", "payload": {...}}.',
            "invalid_invocation",
        )
        return {"error": error.to_body()}
    try:
        return {"result": call(service, event["function_id"], event.get("payload", {}), table)}
    except StreamError as exc:
        return {"error": exc.to_body()}
