"""Declare your functions, HTTP routes, triggers and auth function once; run them locally or deploy them as Lambdas.

Examples
--------
>>> from iii_stream.app import App
>>> app = App()
>>> @app.function("presence::on-change")
... def on_change(event, context):
...     print(event["event"]["type"])
>>> _ = app.trigger("stream", "presence::on-change", {"stream_name": "presence"})

An HTTP route (API Gateway HTTP API, payload format 2.0) is a function too:

>>> @app.http("POST", "/todos/{id}")
... def put_todo(event, context):
...     return {"statusCode": 201, "body": event["pathParameters"]["id"]}
>>> app.routes[0]
DeclaredRoute(method='POST', path='/todos/{id}', function_id='http::POST /todos/{id}', auth=False)
>>> lambda_name(app.routes[0].function_id)
'http--POST--todos--id-'

``iii-stream local --app app.py`` serves every declared function on the local Lambda endpoint,
registers it and its triggers, uses the auth function for ``$connect``, and serves the routes over HTTP.
On AWS each function is an ordinary Lambda handler (``Handler: app.on_change``), registered with the
custom resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any, Any], Any]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
_PARAMETER = re.compile(r"^\{([A-Za-z0-9_-]+)(\+?)\}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DeclaredTrigger:
    type: str
    function_id: str
    config: dict[str, Any]
    id: str


@dataclass(frozen=True)
class DeclaredRoute:
    """One HTTP API route: ``method`` (or ``ANY``) and path template, the function behind it, whether it needs auth."""

    method: str
    path: str
    function_id: str
    auth: bool = False

    @property
    def route_key(self) -> str:
        """API Gateway's route key, ``"POST /todos/{id}"``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSettings:
    """A function's own Lambda settings: ``timeout`` in seconds (1 to 900), ``memory_size`` in MB (128 to 10240),
    and its ``environment`` variables. None (or empty) takes the stack's (``Globals.Function``)."""

    timeout: int | None = None
    memory_size: int | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_range("timeout", self.timeout, 1, 900)
        _check_range("memory_size", self.memory_size, 128, 10240)
        if not isinstance(self.environment, dict) or not all(
            isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) for k, v in self.environment.items()
        ):
            raise ValueError(
                "environment must map names of letters, digits and _ (not starting with a digit) to strings"
            )
        reserved = sorted(k for k in self.environment if k.startswith("AWS_"))
        if reserved:
            raise ValueError(f"environment cannot set {', '.join(reserved)}: Lambda reserves the AWS_ names")


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")


@dataclass
class App:
    functions: dict[str, Handler] = field(default_factory=dict)
    triggers: list[DeclaredTrigger] = field(default_factory=list)
    auth_function_id: str | None = None
    routes: list[DeclaredRoute] = field(default_factory=list)
    settings: dict[str, FunctionSettings] = field(default_factory=dict)

    def function(
        self,
        function_id: str,
        *,
        timeout: int | None = None,
        memory_size: int | None = None,
        environment: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare a function (a Lambda handler ``(event, context)``) under a function id, with its own Lambda
        settings when it needs them (see ``FunctionSettings``; ValueError, at declaration, for a bad one).

        >>> app = App()
        >>> @app.function("report::nightly", timeout=300, environment={"REPORT_BUCKET": "reports"})
        ... def nightly(event, context):
        ...     return None
        >>> app.settings_of("report::nightly").timeout
        300
        """
        settings = FunctionSettings(timeout, memory_size, dict(environment or {}))

        def register(handler: Handler) -> Handler:
            self.functions[function_id] = handler
            if settings != FunctionSettings():
                self.settings[function_id] = settings
            return handler

        return register

    def settings_of(self, function_id: str) -> FunctionSettings:
        """The function's own settings (all None or empty when it declared none)."""
        return self.settings.get(function_id, FunctionSettings())

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
        """Declare the ``$connect`` auth function (input ``{headers, path, query_params, addr}``).

        It also guards the HTTP routes declared with ``auth=True``."""

        def register(handler: Handler) -> Handler:
            self.functions[function_id] = handler
            self.auth_function_id = function_id
            return handler

        return register

    def http(
        self, method: str, path: str, auth: bool = False, function_id: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Declare an HTTP route served by the decorated handler, as an API Gateway HTTP API route (payload 2.0).

        ``method`` is GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY (any case); ``path`` starts with
        ``/`` and its segments are literal, ``{name}`` (one segment) or, last only, ``{name+}`` (the rest of the
        path). The handler is registered as a function under ``function_id`` (default ``http::<METHOD> <path>``).
        With ``auth=True`` every request first goes to the auth function (``{headers, path, query_params,
        addr}``, as for ``$connect``): ``{"unauthorized": true}`` answers 403, ``{"context": {...}}`` lets it
        through with ``requestContext.authorizer.lambda`` set to the context. An ``auth=True`` route may be
        declared before ``@app.auth``; if no auth function is declared at all, the local server logs a warning
        when it starts and answers that route's requests 500, as a misconfigured authorizer would on AWS.

        Raises ValueError, at declaration, for an unknown method, a malformed path template, a route whose
        method and path (whatever its parameter names) are declared already, or a function id that is taken by
        another handler or whose Lambda-safe name (``lambda_name``) another function already has.

        >>> app = App()
        >>> @app.http("get", "/files/{path+}", auth=True, function_id="files::read")
        ... def read(event, context):
        ...     return {"path": event["pathParameters"]["path"]}
        >>> app.routes
        [DeclaredRoute(method='GET', path='/files/{path+}', function_id='files::read', auth=True)]
        >>> app.http("GET", "/files/{name+}")
        Traceback (most recent call last):
        ...
        ValueError: route GET /files/{name+} conflicts with GET /files/{path+}, declared already
        """
        method = method.upper() if isinstance(method, str) else method
        if method not in HTTP_METHODS:
            raise ValueError(f"HTTP method {method!r} is not one of {', '.join(HTTP_METHODS)}")
        self._refuse_conflict(method, path)
        chosen_id = function_id if function_id is not None else f"http::{method} {path}"
        if not isinstance(chosen_id, str) or not chosen_id:
            raise ValueError("function_id must be a non-empty string")

        def register(handler: Handler) -> Handler:
            if not callable(handler):
                raise ValueError(f"route {method} {path}: the handler must be callable (event, context)")
            self._refuse_conflict(method, path)
            existing = self.functions.get(chosen_id)
            if existing is not None and existing is not handler:
                raise ValueError(f"function id {chosen_id!r} is already declared with another handler")
            name = lambda_name(chosen_id)
            clash = next((fid for fid in self.functions if fid != chosen_id and lambda_name(fid) == name), None)
            if clash is not None:
                raise ValueError(
                    f"route {method} {path}: function id {chosen_id!r} and {clash!r} share the Lambda name "
                    f"{name!r}; pass function_id= to tell them apart"
                )
            self.functions[chosen_id] = handler
            self.routes.append(DeclaredRoute(method, path, chosen_id, bool(auth)))
            return handler

        return register

    def _refuse_conflict(self, method: str, path: str) -> None:
        shape = _path_shape(path)
        for declared in self.routes:
            if declared.method == method and _path_shape(declared.path) == shape:
                raise ValueError(f"route {method} {path} conflicts with {declared.route_key}, declared already")


def _path_shape(path: str) -> tuple[str, ...]:
    """Validate a route path template; return it with parameter names erased (``/a/{x}`` -> ``('a', '{}')``)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    if path == "/":
        return ()
    segments = path[1:].split("/")
    shape: list[str] = []
    names: set[str] = set()
    for index, segment in enumerate(segments):
        if not segment:
            raise ValueError(f"route path {path!r} has an empty segment (a doubled or trailing '/')")
        match = _PARAMETER.match(segment)
        if match is None:
            if "{" in segment or "}" in segment:
                raise ValueError(
                    f"route path {path!r}: segment {segment!r} must be literal, {{name}} or a final {{name+}}"
                )
            if any(c in segment for c in "?#") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in segment):
                raise ValueError(f"route path {path!r}: segment {segment!r} holds a character paths cannot hold")
            shape.append(segment)
            continue
        name, greedy = match.groups()
        if name in names:
            raise ValueError(f"route path {path!r} uses the parameter {{{name}}} twice")
        names.add(name)
        if greedy and index != len(segments) - 1:
            raise ValueError(f"route path {path!r}: the greedy {{{name}+}} must be the last segment")
        shape.append("{+}" if greedy else "{}")
    return tuple(shape)


def lambda_name(function_id: str) -> str:
    """A Lambda-safe name for a function id (``presence::on-change`` -> ``presence--on-change``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", function_id)[:64]
