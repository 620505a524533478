"""A local API Gateway WebSocket API: each connect, frame and close becomes the exact Lambda event.

Behaviour kept from API Gateway: ``$connect`` runs before the upgrade and its ``statusCode`` decides
it (a non-2xx refuses the handshake with that status; only ``Sec-WebSocket-Protocol`` is passed on);
text frames are routed on ``$request.body.type``, whatever the text (``$default`` when it is not a JSON
object with a route key as ``type``, however deep, long or odd it is); a binary frame closes the socket with
1003; a message over 128 KB closes it with 1009; a text frame that is not UTF-8 closes it with 1007 (RFC 6455
8.1, done by ``websockets``; what API Gateway does there is not documented); ``$disconnect`` runs after the
socket is gone (posts to it answer 410 by then). Handlers run in worker threads; one connection's frames are
handled in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from iii_stream.core.limits import MAX_MESSAGE_BYTES
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from infra.local.apigw_events import ApiContext, connect_event, disconnect_event, message_event, new_id
from infra.local.context import LocalLambdaContext

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
        self._pending: dict[int, tuple[str, dict[str, Any], int]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="ws-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket gateway did not start")
        return self.url

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self._port}/"

    def _run(self) -> None:
        asyncio.run(self._serve())

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
            await asyncio.sleep(0)
            for cleanup in self._on_stop:
                await cleanup()
        await asyncio.to_thread(lambda: None)

    def stop(self) -> None:
        """Close every open connection (their ``$disconnect`` runs) and stop serving."""
        if self._loop is not None:
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
        event = connect_event(self.api, connection_id, connected_at, headers, query, source_ip)
        response = await self._call("$connect", connection_id, self._handlers.connect, event)
        status = response.get("statusCode") if isinstance(response, dict) else None
        if not isinstance(status, int) or not 200 <= status < 300:
            # A non-2xx refuses the handshake with that status; a failed or malformed integration gives 502.
            code = status if isinstance(status, int) and 300 <= status < 600 else 502
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            return socket.respond(code, phrase + "\n")
        self._pending[id(socket)] = (connection_id, response, connected_at)
        return None

    def _echo_subprotocol(self, socket: ServerConnection, request: Request, response: Response) -> Response:
        _, connect_response, _ = self._pending.get(id(socket), ("", {}, 0))
        chosen = (connect_response.get("headers") or {}).get("Sec-WebSocket-Protocol")
        if chosen:
            response.headers["Sec-WebSocket-Protocol"] = chosen
        return response

    # --- one connection ------------------------------------------------------------------------------------
    async def _session(self, socket: ServerConnection) -> None:
        connection_id, _, connected_at = self._pending.pop(id(socket))
        user_agent = socket.request.headers.get("User-Agent") if socket.request else None
        source_ip = str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1"
        live = LiveConnection(connection_id, socket, connected_at, source_ip, user_agent, connected_at)
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
            code = socket.close_code if socket.close_code is not None else 1006
            reason = socket.close_reason or ""
            event = disconnect_event(self.api, connection_id, connected_at, code, reason, source_ip, user_agent)
            await self._call("$disconnect", connection_id, self._handlers.disconnect, event)

    async def _call(self, route: str, connection_id: str, handler: Handler, event: dict[str, Any]) -> Any:
        started = time.perf_counter()
        context = LocalLambdaContext(function_name=f"route-{route.strip('$')}")
        try:
            result = await asyncio.to_thread(handler, event, context)
        except Exception:  # noqa: BLE001 - a failing integration: logged, the socket lives on (as on AWS)
            log.exception("route %s for %s failed", route, connection_id)
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
