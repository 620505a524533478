"""A local ``@connections`` API (PostToConnection, GetConnection, DeleteConnection) over the gateway's sockets.

The handlers' unmodified boto3 ``apigatewaymanagementapi`` client reaches it through ``endpoint_url``
(``CONNECTIONS_ENDPOINT=http://127.0.0.1:PORT/local``). Gone connections get 410 with
``x-amzn-ErrorType: GoneException`` and an empty body, as AWS answers.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from infra.local.gateway import MAX_MESSAGE_BYTES, WebSocketGateway

log = logging.getLogger("iii_stream.local.connections")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ConnectionsRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    gateway: WebSocketGateway

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug(format, *args)

    def _connection_id(self) -> str | None:
        path = self.path.split("?", 1)[0]
        marker = "/@connections/"
        if marker not in path:
            return None
        return unquote(path.split(marker, 1)[1])

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        connection_id = self._connection_id()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if connection_id is None:
            self._reply(404, {"message": "Not Found"})
        elif len(body) > MAX_MESSAGE_BYTES:
            self._reply(413, {"message": "Request Too Long"}, error="PayloadTooLargeException")
        elif self.gateway.deliver(connection_id, body):
            self._reply(200, None)
        else:
            self._reply(410, None, error="GoneException")

    def do_GET(self) -> None:  # noqa: N802
        connection_id = self._connection_id()
        live = self.gateway.lookup(connection_id) if connection_id else None
        if live is None:
            self._reply(410, None, error="GoneException")
            return
        identity: dict[str, str] = {"sourceIp": live.source_ip}
        if live.user_agent:
            identity["userAgent"] = live.user_agent
        self._reply(
            200,
            {"connectedAt": _iso(live.connected_at), "identity": identity, "lastActiveAt": _iso(live.last_active_at)},
        )

    def do_DELETE(self) -> None:  # noqa: N802
        connection_id = self._connection_id()
        if connection_id and self.gateway.close(connection_id):
            self._reply(204, None)
        else:
            self._reply(410, None, error="GoneException")

    def _reply(self, status: int, body: Any, error: str | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error:
            self.send_header("x-amzn-ErrorType", error)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ConnectionsEndpoint:
    def __init__(self, gateway: WebSocketGateway, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("GatewayConnectionsHandler", (ConnectionsRequestHandler,), {"gateway": gateway})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._stage = gateway.api.stage

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self._stage}"

    def start(self) -> str:
        threading.Thread(target=self._server.serve_forever, name="connections-endpoint", daemon=True).start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
