"""A local ``@connections`` API (PostToConnection, GetConnection, DeleteConnection) over the gateway's sockets.

The handlers' unmodified boto3 ``apigatewaymanagementapi`` client reaches it through ``endpoint_url``
(``CONNECTIONS_ENDPOINT=http://127.0.0.1:PORT/local``). Gone connections get 410 with
``x-amzn-ErrorType: GoneException`` and an empty body, as AWS answers.

It is served (aiohttp) on the gateway's own event loop: a post is parsed and its frame written to the
socket in one thread, with no hand-over between threads per frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from iii_stream.core.limits import MAX_MESSAGE_BYTES
from iii_stream.infra.local.gateway import WebSocketGateway
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("iii_stream.local.connections")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reply(status: int, body: Any = None, error: str | None = None) -> web.Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if error:
        headers["x-amzn-ErrorType"] = error
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, headers=headers, body=json.dumps(body).encode(), content_type="application/json")


class ConnectionsEndpoint:
    def __init__(self, gateway: WebSocketGateway, host: str = "127.0.0.1", port: int = 0) -> None:
        self._gateway = gateway
        self._host = host
        self._port = port
        self._stage = gateway.api.stage
        self._runner: web.AppRunner | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self._port}/{self._stage}"

    def start(self) -> str:
        asyncio.run_coroutine_threadsafe(self._start(), self._gateway.loop).result(10)
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving (the gateway also does this when it stops, on its loop)."""
        if self._runner is not None and self._gateway.running:
            asyncio.run_coroutine_threadsafe(self._cleanup(), self._gateway.loop).result(10)

    async def _cleanup(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _start(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1)
        route = "/{stage}/@connections/{connection_id}"
        app.router.add_post(route, self._post)
        app.router.add_get(route, self._get)
        app.router.add_delete(route, self._delete)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._gateway.on_stop(self._cleanup)

    async def _post(self, request: web.Request) -> web.Response:
        connection_id = request.match_info["connection_id"]
        if (request.content_length or 0) > MAX_MESSAGE_BYTES:
            return _reply(413, {"message": "Request Too Long"}, error="PayloadTooLargeException")
        data = await request.read()
        live = self._gateway.lookup(connection_id)
        if live is None:
            return _reply(410, error="GoneException")
        try:
            frame: str | bytes = data.decode("utf-8")  # text when it is UTF-8, as API Gateway does for JSON
        except UnicodeDecodeError:
            frame = data
        try:
            await live.socket.send(frame)
        except ConnectionClosed:
            return _reply(410, error="GoneException")
        log.info("post   %s %d bytes", connection_id, len(data))
        return _reply(200)

    async def _get(self, request: web.Request) -> web.Response:
        live = self._gateway.lookup(request.match_info["connection_id"])
        if live is None:
            return _reply(410, error="GoneException")
        identity: dict[str, str] = {"sourceIp": live.source_ip}
        if live.user_agent:
            identity["userAgent"] = live.user_agent
        body = {"connectedAt": _iso(live.connected_at), "identity": identity, "lastActiveAt": _iso(live.last_active_at)}
        return _reply(200, body)

    async def _delete(self, request: web.Request) -> web.Response:
        live = self._gateway.lookup(request.match_info["connection_id"])
        if live is None:
            return _reply(410, error="GoneException")
        # Answer at once, as AWS does; the close handshake finishes on its own.
        task = asyncio.ensure_future(live.socket.close(1000, "Connection Closed Normally"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return _reply(204)
