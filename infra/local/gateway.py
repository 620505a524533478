"""A local API Gateway WebSocket API: each connect, frame and close becomes the exact Lambda event.

Behaviour kept from API Gateway: ``$connect`` runs before the upgrade and its ``statusCode`` decides
it (a non-2xx refuses the handshake with that status; only ``Sec-WebSocket-Protocol`` is passed on);
text frames are routed on ``$request.body.type``, whatever the text (``$default`` when it is not a JSON
object with a route key as ``type``, however deep, long or odd it is); a binary frame closes the socket with
1003; a message over 128 KB closes it with 1009; a text frame that is not UTF-8 closes it with 1007 (RFC 6455
8.1, done by ``websockets``; what API Gateway does there is not documented); ``$disconnect`` runs after the
socket is gone (posts to it answer 410 by then), exactly once for every connection whose ``$connect`` said yes,
however the socket ends: a client that aborts during the handshake, while the 101 is in flight or after it, a
handshake that times out or is refused by a closing server (as API Gateway runs ``$disconnect`` for every
connection whose ``$connect`` succeeded). Handlers run in worker threads; one connection's frames are handled in
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from iii_stream.core.limits import MAX_MESSAGE_BYTES
from iii_stream.infra.local.apigw_events import ApiContext, connect_event, disconnect_event, message_event, new_id
from iii_stream.infra.local.context import LocalLambdaContext
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger("iii_stream.local.gateway")

Handler = Callable[[Any, Any], Any]


@dataclass
class LiveConnection:
    connection_id: str
    socket: ServerConnection
    connected_at: int
    source_ip: str
    user_agent: str | None
    last_active_at: int = field(default=0)


@dataclass
class _Accepted:
    """A connection whose ``$connect`` said yes: what its 101, its session and its ``$disconnect`` need."""

    connection_id: str
    connect_response: dict[str, Any]
    connected_at: int
    source_ip: str
    user_agent: str | None
    session_over: asyncio.Future[None] | None = None  # set once its session (if it opened) handled its last frame


@dataclass
class RouteHandlers:
    connect: Handler
    disconnect: Handler
    message: Handler


class WebSocketGateway:
    """Serves ``ws://host:port/`` and delivers ``@connections`` posts to the open sockets."""

    def __init__(
        self, handlers: RouteHandlers, host: str = "127.0.0.1", port: int = 3112, api: ApiContext | None = None
    ) -> None:
        self._handlers = handlers
        self._host = host
        self._port = port
        self.api = api or ApiContext(domain_name=f"{host}:{port}")
        self._live: dict[str, LiveConnection] = {}
        self._accepted: dict[ServerConnection, _Accepted] = {}  # until the socket is gone
        self._lifetimes: set[asyncio.Task[None]] = set()  # one per handshake: $connect, then $disconnect
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None  # why it could not start serving
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Serve; returns the URL. Raises the OSError at once when the port cannot be bound (in use, not allowed)."""
        self._error = None
        self._thread = threading.Thread(target=self._run, name="ws-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket gateway did not start")
        if self._error is not None:
            self._thread.join(timeout=5)
            raise self._error
        return self.url

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self._port}/"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - before it serves (the port taken): reported to start()
            if self._ready.is_set():
                raise
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(
            self._session,
            self._host,
            self._port,
            process_request=self._handshake,
            process_response=self._echo_subprotocol,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            compression=None,
            server_header=None,
        ) as server:
            self._server = server
            self._port = server.sockets[0].getsockname()[1]
            self.api = ApiContext(self.api.api_id, self.api.stage, f"{self._host}:{self._port}")
            self._ready.set()
            await self._stopping.wait()
            for live in list(self._live.values()):
                await live.socket.close(1001, "Going away")
            # Refuse the handshakes in progress (503 once their $connect is done), close what opened meanwhile.
            server.close(code=1001, reason="Going away")
            await server.wait_closed()
            await self._every_disconnect(timeout=10)
            for cleanup in self._on_stop:
                await cleanup()
        await asyncio.to_thread(lambda: None)

    async def _every_disconnect(self, timeout: float) -> None:
        """Wait for every connection's ``$disconnect`` (the sockets are all closed by now)."""
        if self._lifetimes:
            _, pending = await asyncio.wait(set(self._lifetimes), timeout=timeout)
            if pending:
                log.warning("%d connection(s) still in $connect or $disconnect at shutdown", len(pending))

    def stop(self) -> None:
        """Close every open connection (their ``$disconnect`` runs) and stop serving."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # stopped already: its loop is closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=15)

    # --- the handshake: $connect decides --------------------------------------------------------------------
    async def _handshake(self, socket: ServerConnection, request: Request) -> Response | None:
        connection_id = new_id()
        connected_at = int(time.time() * 1000)
        headers = {name: value for name, value in request.headers.raw_items()}
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(urlsplit(request.path).query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        source_ip = str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1"
        accepted = _Accepted(connection_id, {}, connected_at, source_ip, request.headers.get("User-Agent"))
        event = connect_event(self.api, connection_id, connected_at, headers, query, source_ip)
        # $connect and $disconnect run in a task of their own, which outlives this handshake: websockets may
        # give up on it (open_timeout, a closing server) or the client may vanish at any point from here on,
        # and the $disconnect of an accepted connection must run all the same (the row would stay for ever).
        decided: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lifetime = asyncio.create_task(self._lifetime(socket, accepted, event, decided))
        self._lifetimes.add(lifetime)
        lifetime.add_done_callback(self._lifetimes.discard)
        response = await asyncio.shield(decided)
        if not _accepts(response):
            # A non-2xx refuses the handshake with that status; a failed or malformed integration gives 502.
            status = response.get("statusCode") if isinstance(response, dict) else None
            code = status if isinstance(status, int) and 300 <= status < 600 else 502
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            return socket.respond(code, phrase + "\n")
        return None

    async def _lifetime(
        self, socket: ServerConnection, accepted: _Accepted, event: dict[str, Any], decided: asyncio.Future[Any]
    ) -> None:
        """Run ``$connect``; when it accepts, wait until the socket is gone (however it goes: after a session,
        or in the handshake, when no session ever starts), then run ``$disconnect``, exactly once."""
        connection_id = accepted.connection_id
        try:
            response = await self._call("$connect", connection_id, self._handlers.connect, event)
        except BaseException:  # cancelled at shutdown: nothing was accepted
            if not decided.done():
                decided.set_result({"statusCode": 500})
            raise
        if _accepts(response):
            accepted.connect_response = response
            self._accepted[socket] = accepted
        if not decided.done():
            decided.set_result(response)
        if not _accepts(response):
            return
        try:
            await socket.wait_closed()
            # A session starts (in the handshake's task, as the 101 is sent) before the socket can be gone; its
            # frames in hand are handled first, as they were sent first (a join must not write after the leave).
            if accepted.session_over is not None:
                await asyncio.shield(accepted.session_over)
        finally:
            self._accepted.pop(socket, None)
            with self._lock:
                self._live.pop(connection_id, None)
            code = socket.close_code if socket.close_code is not None else 1006
            reason = socket.close_reason or ""
            event = disconnect_event(
                self.api, connection_id, accepted.connected_at, code, reason, accepted.source_ip, accepted.user_agent
            )
            await self._call("$disconnect", connection_id, self._handlers.disconnect, event)

    def _echo_subprotocol(self, socket: ServerConnection, request: Request, response: Response) -> Response:
        accepted = self._accepted.get(socket)
        connect_response = accepted.connect_response if accepted is not None else {}
        chosen = (connect_response.get("headers") or {}).get("Sec-WebSocket-Protocol")
        if chosen:
            response.headers["Sec-WebSocket-Protocol"] = chosen
        return response

    # --- one connection ------------------------------------------------------------------------------------
    async def _session(self, socket: ServerConnection) -> None:
        """The frames of an open connection, in order (its ``$disconnect`` is its lifetime task's)."""
        accepted = self._accepted.get(socket)
        if accepted is None:  # cannot happen: websockets opens only what the handshake accepted
            await socket.close(1011, "Internal error")
            return
        connection_id, connected_at = accepted.connection_id, accepted.connected_at
        source_ip, user_agent = accepted.source_ip, accepted.user_agent
        live = LiveConnection(connection_id, socket, connected_at, source_ip, user_agent, connected_at)
        accepted.session_over = asyncio.get_running_loop().create_future()
        with self._lock:
            self._live[connection_id] = live
        log.info("connected %s from %s", connection_id, source_ip)
        try:
            async for message in socket:
                live.last_active_at = int(time.time() * 1000)
                if isinstance(message, bytes):
                    await socket.close(1003, "Binary frames are not supported")  # as API Gateway does
                    break
                event = message_event(self.api, connection_id, connected_at, message, source_ip, user_agent)
                await self._call(event["requestContext"]["routeKey"], connection_id, self._handlers.message, event)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._live.pop(connection_id, None)
            accepted.session_over.set_result(None)

    async def _call(self, route: str, connection_id: str, handler: Handler, event: dict[str, Any]) -> Any:
        started = time.perf_counter()
        context = LocalLambdaContext(function_name=f"route-{route.strip('$')}")
        try:
            result = await asyncio.to_thread(handler, event, context)
        except Exception as exc:  # noqa: BLE001 - a failing integration: logged, the socket lives on (as on AWS)
            log.error("route %s for %s failed: %s: %s", route, connection_id, type(exc).__name__, exc, exc_info=exc)
            return {"statusCode": 500}
        status = result.get("statusCode") if isinstance(result, dict) else None
        log.info("route %-11s %s %5.1f ms -> %s", route, connection_id, (time.perf_counter() - started) * 1000, status)
        return result

    # --- for the @connections endpoint (served on this loop) ------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the WebSocket gateway is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.is_running()

    def on_stop(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Await ``cleanup`` on this loop once the sockets are closed, before the loop ends."""
        self._on_stop.append(cleanup)

    def lookup(self, connection_id: str) -> LiveConnection | None:
        with self._lock:
            return self._live.get(connection_id)


def _accepts(response: Any) -> bool:
    """Whether a ``$connect`` answer opens the socket: a 2xx ``statusCode``."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    return isinstance(status, int) and 200 <= status < 300
