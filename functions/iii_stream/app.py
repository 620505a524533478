"""Declare your functions, triggers and auth function once; run them locally or deploy them as Lambdas.

Examples
--------
>>> from iii_stream.app import App
>>> app = App()
>>> @app.function("presence::on-change")
... def on_change(event, context):
...     print(event["event"]["type"])
>>> _ = app.trigger("stream", "presence::on-change", {"stream_name": "presence"})

``iii-stream local --app app.py`` serves every declared function on the local Lambda endpoint,
registers it and its triggers, and uses the auth function for ``$connect``. On AWS each function is
an ordinary Lambda handler (``Handler: app.on_change``), registered with the custom resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class DeclaredTrigger:
    type: str
    function_id: str
    config: dict[str, Any]
    id: str


@dataclass
class App:
    functions: dict[str, Handler] = field(default_factory=dict)
    triggers: list[DeclaredTrigger] = field(default_factory=list)
    auth_function_id: str | None = None

    def function(self, function_id: str) -> Callable[[Handler], Handler]:
        """Declare a function (a Lambda handler ``(event, context)``) under a function id."""

        def register(handler: Handler) -> Handler:
            self.functions[function_id] = handler
            return handler

        return register

    def trigger(
        self,
        type: str,
        function_id: str,
        config: dict[str, Any] | None = None,  # noqa: A002
        id: str | None = None,
    ) -> DeclaredTrigger:  # noqa: A002
        """Bind a declared function to ``stream``, ``stream:join`` or ``stream:leave``."""
        declared = DeclaredTrigger(
            type, function_id, dict(config or {}), id or f"{type}/{function_id}/{len(self.triggers)}"
        )
        self.triggers.append(declared)
        return declared

    def auth(self, function_id: str) -> Callable[[Handler], Handler]:
        """Declare the ``$connect`` auth function (input ``{headers, path, query_params, addr}``)."""

        def register(handler: Handler) -> Handler:
            self.functions[function_id] = handler
            self.auth_function_id = function_id
            return handler

        return register


def lambda_name(function_id: str) -> str:
    """A Lambda-safe name for a function id (``presence::on-change`` -> ``presence--on-change``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", function_id)[:64]
