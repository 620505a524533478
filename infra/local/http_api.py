"""A local API Gateway HTTP API: the routes declared with ``App.http``, each request a payload format 2.0 event.

``HttpApi(routes, invoke, authorize)`` serves ``http://127.0.0.1:3000`` (aiohttp, in a thread with its own event
loop). For each request, as HTTP API does (the mapping itself is ``infra.local.http_events``):

- a CORS preflight (OPTIONS with ``Origin`` and ``Access-Control-Request-Method``), on any path, is answered 204 by
  the gateway itself, before routing and without auth: ``access-control-allow-origin: *``, the requested method and
  headers allowed. Every other answer, errors included, carries ``access-control-allow-origin: *`` (a function's
  own ``access-control-*`` headers are dropped). That is an HttpApi ``CorsConfiguration`` with AllowOrigins,
  AllowMethods and AllowHeaders ``['*']``; it lets a page served from another port (the example's) call the API;
- a body over 10 MB: 413 ``{"message":"Request Entity Too Large"}``; no route for the method and path: 404
  ``{"message":"Not Found"}``;
- an ``auth`` route first calls ``authorize`` with ``{headers, path, query_params, addr}`` (as the auth function gets
  at ``$connect``): refused, 403 ``{"message":"Forbidden"}``; failing (raising, or running past the timeout), or no
  auth function declared at all, 500 ``{"message":"Internal Server Error"}``. Accepted, the context is the event's
  ``requestContext.authorizer.lambda``. On AWS this is a Lambda authorizer (payload 2.0, simple responses, no
  identity sources, so no caching) that calls the auth function and answers ``isAuthorized`` and ``context``;
- the route's function gets the event through ``invoke``; its result is mapped as HTTP API maps a format 2.0
  result; a function that raises or gives a malformed answer: 500 ``{"message":"Internal Server Error"}``; one that
  runs past ``timeout_seconds`` (HTTP API's integration timeout, 30 s): 503 ``{"message":"Service Unavailable"}``
  (the function itself runs on to its end in its thread, as a Lambda does after API Gateway gave up).

Every answer carries ``apigw-requestid`` (the event's ``requestContext.requestId``). Nothing a client sends can stop
the server: a body that cannot be read (the client left, broken chunking) is answered 400 ``{"message":"Bad
Request"}``, anything else that goes wrong in a request is logged and answered 500. One log line per request:
method, path as sent, the matched route's function id (``-`` when no route matched), status and duration in ms.
Not emulated: Lambda's 6 MB limit on the event and on the result (AWS fails such an invocation; here it goes
through), identity sources and authorizer caching, stage variables, custom domains, mutual TLS, throttling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from iii_stream.app import App, DeclaredRoute, lambda_name
from iii_stream.infra.local.apigw_events import new_id
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.http_events import (
    CORS_ALLOW_ORIGIN,
    INTEGRATION_TIMEOUT_SECONDS,
    MAX_BODY_BYTES,
    Answer,
    HttpRequest,
    MalformedResponse,
    RouteTable,
    auth_input,
    authorizer_context,
    bad_request,
    build_event,
    forbidden,
    internal_error,
    is_preflight,
    map_response,
    not_found,
    preflight_answer,
    service_unavailable,
    too_large,
)
from iii_stream.infra.local.runtime import LocalRuntime
from multidict import CIMultiDict

log = logging.getLogger("iii_stream.local.http")

Handler = Callable[[Any, Any], Any]
Invoke = Callable[[str, dict[str, Any]], Any]
Authorize = Callable[[dict[str, Any]], dict[str, Any] | None]
T = TypeVar("T")


def invoke_in_process(functions: Mapping[str, Handler], timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS) -> Invoke:
    """An ``invoke`` that calls the handler itself, with a Lambda context (its Lambda-safe name, the timeout)."""

    def invoke(function_id: str, event: dict[str, Any]) -> Any:
        handler = functions.get(function_id)
        if handler is None:
            raise LookupError(f"no function {function_id!r}")
        context = LocalLambdaContext(function_name=lambda_name(function_id), timeout_ms=int(timeout_seconds * 1000))
        return handler(event, context)

    return invoke


def authorize_in_process(auth_handler: Handler | None, function_id: str = "auth") -> Authorize | None:
    """An ``authorize`` that calls the auth function itself and reads its answer with ``authorizer_context``;
    None when there is no auth function."""
    if auth_handler is None:
        return None
    handler = auth_handler

    def authorize(auth: dict[str, Any]) -> dict[str, Any] | None:
        context = LocalLambdaContext(function_name=lambda_name(function_id))
        return authorizer_context(handler(auth, context))

    return authorize


def invoke_through(runtime: LocalRuntime) -> Invoke:
    """An ``invoke`` that runs the function in its worker of the local runtime (named ``lambda_name``)."""

    def invoke(function_id: str, event: dict[str, Any]) -> Any:
        return runtime.invoke(lambda_name(function_id), event)

    return invoke


def authorize_through(runtime: LocalRuntime, function_id: str | None) -> Authorize | None:
    """An ``authorize`` that runs the auth function in the local runtime and reads its answer with
    ``authorizer_context``; None when there is no auth function."""
    if function_id is None:
        return None
    name = lambda_name(function_id)

    def authorize(auth: dict[str, Any]) -> dict[str, Any] | None:
        return authorizer_context(runtime.invoke(name, auth))

    return authorize


_SHUTDOWN_SECONDS = 2.0  # how long stop() lets the requests in flight finish


class _TooLarge(Exception):
    pass


class _Raised(Exception):
    """What a function or the auth function raised (``exception``), as opposed to our own timeout."""

    def __init__(self, exception: BaseException) -> None:
        super().__init__(f"{type(exception).__name__}: {exception}")
        self.exception = exception


class HttpApi:
    """Serves the declared HTTP routes; ``invoke(function_id, event)`` runs a function (raising when it fails),
    ``authorize(auth_input)`` returns the auth context or None when refused (raising when the auth function
    fails); ``authorize=None`` means no auth function is declared (``auth`` routes then answer 500)."""

    def __init__(
        self,
        routes: Sequence[DeclaredRoute],
        invoke: Invoke,
        authorize: Authorize | None,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._table = RouteTable(routes)
        self._invoke = invoke
        self._authorize = authorize
        self._host = host
        self._port = port
        self._timeout = timeout_seconds
        self._max_body = max_body_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def for_app(cls, app: App, host: str = "127.0.0.1", port: int = 3000, **options: Any) -> HttpApi:
        """The routes of an ``App``, their functions and its auth function called in this process."""
        auth = app.functions.get(app.auth_function_id) if app.auth_function_id else None
        timeout = float(options.get("timeout_seconds", INTEGRATION_TIMEOUT_SECONDS))
        invoke = invoke_in_process(app.functions, timeout)
        authorize = authorize_in_process(auth, app.auth_function_id or "auth")
        return cls(app.routes, invoke, authorize, host, port, **options)

    # --- lifecycle -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://host:port`` (the port actually bound once started, when it was 0)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def routes(self) -> Sequence[DeclaredRoute]:
        return self._table.routes

    def start(self) -> str:
        """Bind (at once, in this thread) and serve; returns the URL. Raises OSError naming the address when the
        port cannot be bound (in use, or not allowed)."""
        if self._thread is not None:
            raise RuntimeError("the HTTP API is already started")
        guarded = [r.route_key for r in self._table.routes if r.auth]
        if guarded and self._authorize is None:
            log.warning("routes %s need auth but no auth function is declared: they will answer 500", guarded)
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            listener = socket.create_server((self._host, self._port), family=family, backlog=128)
        except OSError as exc:
            raise OSError(
                exc.errno, f"the HTTP API cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        listener.setblocking(False)
        self._port = int(listener.getsockname()[1])
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(listener,), name="http-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            self.stop()
            listener.close()
            raise RuntimeError(f"the HTTP API did not start: {self._error}")
        log.info("HTTP API on %s (%d routes)", self.url, len(self._table.routes))
        return self.url

    def stop(self) -> None:
        """Stop serving: requests still running get up to 2 s, then are dropped (a function still running finishes
        in its thread, unobserved)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=_SHUTDOWN_SECONDS + 10)
            self._thread = None

    def _run(self, listener: socket.socket) -> None:
        try:
            asyncio.run(self._serve(listener))
        except BaseException as exc:  # noqa: BLE001 - reported to start(), never lost in the thread
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the HTTP API stopped unexpectedly")

    async def _serve(self, listener: socket.socket) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = web.Server(self._handle, access_log=None, auto_decompress=False)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            await web.SockSite(runner, listener).start()
            self._ready.set()
            await self._stopping.wait()
            # Accept nothing more, then let the connections accepted meanwhile finish setting up, so the shutdown
            # below closes them too (on Python 3.11 one still being set up when the listener closes leaks its socket).
            loop.remove_reader(listener.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            await runner.cleanup()

    # --- one request -----------------------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = new_id()
        function_id = "-"
        raw_path, _, raw_query = _target(request)
        try:
            answer, function_id = await self._answer(request, raw_path, raw_query, request_id)
        except Exception:  # noqa: BLE001 - never let a request take the server down
            log.exception("request %s %s failed", request.method, raw_path)
            answer = internal_error()
        elapsed = (time.perf_counter() - started) * 1000
        log.info("http %-7s %s %s -> %d %.1f ms", request.method, raw_path, function_id, answer.status, elapsed)
        return _web_response(answer, request_id)

    async def _answer(
        self, request: web.BaseRequest, raw_path: str, raw_query: str, request_id: str
    ) -> tuple[Answer, str]:
        peer = request.remote or "127.0.0.1"
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        headers = list(request.headers.items())
        incoming = HttpRequest(request.method, raw_path, raw_query, headers, b"", peer, version)
        if is_preflight(incoming):
            return preflight_answer(incoming), "-"
        if (request.content_length or 0) > self._max_body:
            return too_large(), "-"
        match = self._table.match(request.method, raw_path)
        if match is None:
            return not_found(), "-"
        function_id = match.route.function_id
        try:
            body = await self._read_body(request)
        except _TooLarge:
            return too_large(), function_id
        except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:  # the client left, or sent junk
            log.info("request %s %s: the body could not be read (%s)", request.method, raw_path, exc)
            return bad_request(), function_id
        incoming = HttpRequest(request.method, raw_path, raw_query, headers, body, peer, version)
        context: dict[str, Any] | None = None
        if match.route.auth:
            refused = await self._check_auth(incoming, match.route)
            if isinstance(refused, Answer):
                return refused, function_id
            context = refused
        now_ms = int(time.time() * 1000)
        event = build_event(
            incoming,
            match,
            request_id=request_id,
            now_ms=now_ms,
            domain_name=request.host or f"{self._host}:{self._port}",
            server_port=self._port,
            authorizer=context,
        )
        try:
            result = await self._in_thread(self._invoke, function_id, event)
        except TimeoutError:
            log.warning("function %s ran past %.1f s: 503", function_id, self._timeout)
            return service_unavailable(), function_id
        except _Raised as exc:  # a failing function is the client's 500
            log.warning("function %s failed: %s", function_id, exc, exc_info=exc.exception)
            return internal_error(), function_id
        try:
            return map_response(result), function_id
        except MalformedResponse as exc:
            log.warning("function %s gave a malformed answer: %s", function_id, exc)
            return internal_error(), function_id

    async def _check_auth(self, request: HttpRequest, route: DeclaredRoute) -> Answer | dict[str, Any]:
        """The auth context, or the answer that ends the request (403, or 500 when auth cannot be decided)."""
        authorize = self._authorize
        if authorize is None:
            log.error("route %s needs auth but no auth function is declared", route.route_key)
            return internal_error()
        try:
            context = await self._in_thread(authorize, auth_input(request))
        except TimeoutError:
            log.warning("the auth function ran past %.1f s for %s", self._timeout, route.route_key)
            return internal_error()
        except _Raised as exc:  # a failing authorizer is the client's 500
            log.warning("the auth function failed for %s: %s", route.route_key, exc, exc_info=exc.exception)
            return internal_error()
        if context is None:
            return forbidden()
        if not isinstance(context, dict):
            log.warning("authorize returned %s for %s, not a dict or None", type(context).__name__, route.route_key)
            return internal_error()
        return context

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in a thread of its own (as each Lambda invocation has its own sandbox), for at most
        the timeout. Past it, TimeoutError (and the thread runs on, unobserved); whatever the function raises
        comes back wrapped in ``_Raised``, so a TimeoutError of the function's own is not taken for ours."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def run() -> None:
            try:
                result = function(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                raised = _Raised(exc)
                _call_soon(loop, lambda: settle(lambda: future.set_exception(raised)))
            else:
                _call_soon(loop, lambda: settle(lambda: future.set_result(result)))

        threading.Thread(target=run, name="http-api-invoke", daemon=True).start()
        return await asyncio.wait_for(future, self._timeout)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the server stopped while the function ran: nobody waits any more
        loop.call_soon_threadsafe(callback)


def _target(request: web.BaseRequest) -> tuple[str, str, str]:
    """The request target as sent: (path, '?' or '', query), both still percent-encoded."""
    raw = request.raw_path
    if not raw.startswith("/"):  # absolute-form or '*': fall back to the parsed URL
        url = request.rel_url
        raw = url.raw_path + ("?" + url.raw_query_string if url.raw_query_string else "")
    path, mark, query = raw.partition("?")
    return path.split("#", 1)[0] or "/", mark, query.split("#", 1)[0]


def _web_response(answer: Answer, request_id: str) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in answer.headers:
        headers.add(name, value)
    headers["apigw-requestid"] = request_id
    name, value = CORS_ALLOW_ORIGIN
    headers[name] = value
    if answer.status in (204, 304):  # no body, ever
        return web.Response(status=answer.status, headers=headers)
    return web.Response(status=answer.status, headers=headers, body=answer.body)
