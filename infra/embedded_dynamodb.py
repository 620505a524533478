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
from moto.server import ThreadedMotoServer

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


def _no_nagle() -> None:
    """Send each response at once: with Nagle's algorithm on, a response written as headers then body waits
    for the client's delayed ACK (~40 ms) on a kept-alive connection."""
    from moto.moto_server import threaded_moto_server

    threaded_moto_server.MotoRequestHandler.disable_nagle_algorithm = True  # type: ignore[attr-defined]


class EmbeddedDynamoDB:
    """A moto server on 127.0.0.1 (port 0 picks a free one); ``endpoint_url`` once started."""

    def __init__(self, port: int = 0) -> None:
        make_moto_writes_atomic()
        _no_nagle()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()
