"""An embedded DynamoDB (with Streams) on loopback: moto's server, made safe for concurrent writers.

moto checks a ConditionExpression and then writes, with nothing in between to stop another request
thread; real DynamoDB does both atomically. We serialise moto's write operations behind one lock so
that conditional writes behave as they do on AWS (and the concurrency tests test our code, not moto).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

_WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_write_lock = threading.RLock()
_patched = False
_write_listeners: list[Callable[[], None]] = []


def on_write(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every write to the embedded DynamoDB (the stream pumps wake on it)."""
    _write_listeners.append(listener)


def remove_write_listener(listener: Callable[[], None]) -> None:
    if listener in _write_listeners:
        _write_listeners.remove(listener)


def make_moto_writes_atomic() -> None:
    """Wrap moto's DynamoDB write operations in one lock (idempotent)."""
    global _patched
    if _patched:
        return
    for name in _WRITE_OPERATIONS:
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            try:
                with _write_lock:
                    return __original(self, *args, **kwargs)
            finally:
                for listener in list(_write_listeners):
                    listener()

        setattr(DynamoDBBackend, name, locked)
    _patched = True


class _DynamoDBDispatcher:
    """Route by ``X-Amz-Target`` straight to moto's DynamoDB or DynamoDB Streams app.

    moto's own dispatcher works out the service from the Host header first, which walks its list of
    modules on disk for every request (about 1 ms); every request here names its service in the target.
    Anything else (moto's own API) still goes through moto's dispatcher.
    """

    _PREFIXES = (("DynamoDBStreams_20120810.", "dynamodbstreams"), ("DynamoDB_20120810.", "dynamodb"))

    def __init__(self) -> None:
        self._fallback = DomainDispatcherApplication(create_backend_app)
        self._apps = {service: create_backend_app(service) for _, service in self._PREFIXES}  # type: ignore[arg-type]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        for prefix, service in self._PREFIXES:
            if target.startswith(prefix):
                return self._apps[service](environ, start_response)
        return self._fallback(environ, start_response)


class _NoNagleRequestHandler(MotoRequestHandler):
    # Send each response at once: with Nagle's algorithm on, a response written as headers then body waits
    # for the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True


class EmbeddedDynamoDB:
    """A moto server on 127.0.0.1 (port 0 picks a free one); ``endpoint_url`` once started."""

    def __init__(self, port: int = 0) -> None:
        make_moto_writes_atomic()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._port = port
        self._server: BaseWSGIServer | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        self._server = make_server(
            "127.0.0.1", self._port, _DynamoDBDispatcher(), threaded=True, request_handler=_NoNagleRequestHandler
        )
        threading.Thread(target=self._server.serve_forever, name="embedded-dynamodb", daemon=True).start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
