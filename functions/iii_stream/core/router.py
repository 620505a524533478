"""Route a function id and its JSON input to a service method: the Lambda contract of the function Lambdas.

``StreamFunction`` serves the table ``core.service.STREAM_FUNCTIONS`` and ``RegistryFunction`` the table
``core.registry.REGISTRY_FUNCTIONS``; each table sits beside the service whose methods it names. A route
pairs an input model with the method that takes it, so mypy checks that every method gets its model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from iii_stream.core.errors import FunctionNotFoundError, InvalidInvocationError, StoreError, StreamError
from iii_stream.core.models import parse_input

S = TypeVar("S")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Route(Generic[S, M]):
    """One function: its input model and the service method that takes it."""

    model: type[M]
    method: Callable[[S, M], Any]

    def run(self, service: S, payload: Any, function_id: str) -> Any:
        return self.method(service, parse_input(self.model, payload, function_id))


class Router(Generic[S]):
    """A service's functions by id."""

    def __init__(self, routes: Mapping[str, Route[S, Any]]) -> None:
        self._routes = dict(routes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __contains__(self, function_id: object) -> bool:
        return function_id in self._routes

    def call(self, service: S, function_id: str, payload: Any) -> Any:
        """Run one function; raises StreamError (with its wire code) on any failure."""
        route = self._routes.get(function_id) if isinstance(function_id, str) else None
        if route is None:
            raise FunctionNotFoundError(f"Function {function_id} not found.")
        return route.run(service, payload, function_id)

    def invoke(self, service: S, event: Any) -> dict[str, Any]:
        """The Lambda contract: ``{"function_id", "payload"}`` in, ``{"result"}`` or ``{"error"}`` out."""
        try:
            if not isinstance(event, dict) or not isinstance(event.get("function_id"), str):
                raise InvalidInvocationError(
                    'The invocation must be a JSON object {"function_id": "...", "payload": {...}}.'
                )
            return {"result": self.call(service, event["function_id"], event.get("payload", {}))}
        except (StreamError, StoreError) as exc:
            # A StoreError reaching here is a table failure no service mapped (the registry's): ``STORE_ERROR``.
            return {"error": exc.to_body()}
