"""A simulated API Gateway ``@connections`` endpoint, in another process, for the broadcast benchmarks.

Every ``POST {base}/@connections/{id}`` is answered after ``latency_s`` (20 ms: a post's round trip to API
Gateway), on a keep-alive HTTP/1.1 connection: 200, or 410 ``GoneException`` for the ids it was told are
gone. It is a bare asyncio protocol rather than a web framework, so that on this 2-core machine the
stand-in for API Gateway costs as little CPU as possible (each post's cost is the poster's, not the
server's). It records each post (connection id, arrival time, body) and hands the record back when it stops.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_GONE = (
    b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)


@dataclass(frozen=True)
class Post:
    connection_id: str
    arrived_ms: float  # wall clock (time.time), when the request was read
    body: bytes


class _Protocol(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            path = head.split(" ", 2)[1]
            self._server.answer(self._transport, path, body)


class _Server:
    def __init__(self, latency_s: float, gone: set[str]) -> None:
        self.latency_s = latency_s
        self.gone = gone
        self.posts: list[Post] = []
        self.loop = asyncio.new_event_loop()

    def answer(self, transport: asyncio.Transport | None, path: str, body: bytes) -> None:
        connection_id = unquote(path.rsplit("/", 1)[-1])
        self.posts.append(Post(connection_id, time.time() * 1000, body))
        reply = _GONE if connection_id in self.gone else _OK
        if transport is not None:
            self.loop.call_later(self.latency_s, _write, transport, reply)


def _write(transport: asyncio.Transport, reply: bytes) -> None:
    if not transport.is_closing():
        transport.write(reply)


def _serve(sock: socket.socket, latency_s: float, gone: set[str], stop: Any, out: str) -> None:
    server = _Server(latency_s, gone)
    asyncio.set_event_loop(server.loop)

    async def main() -> None:
        listener = await server.loop.create_server(lambda: _Protocol(server), sock=sock, backlog=4096)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        listener.close()

    server.loop.run_until_complete(main())
    Path(out).write_bytes(pickle.dumps(server.posts))


@dataclass
class Simulated:
    endpoint_url: str
    posts: list[Post]


@contextmanager
def simulated_connections(latency_s: float = 0.020, gone: frozenset[str] = frozenset()) -> Iterator[Simulated]:
    """Serve the simulated endpoint from another process; ``posts`` is filled in when the block ends."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    out = tempfile.mkstemp(suffix=".posts")[1]
    process = context.Process(target=_serve, args=(sock, latency_s, set(gone), stop, out), daemon=True)
    process.start()
    sock.close()  # the child holds it
    result = Simulated(f"http://127.0.0.1:{port}/bench", [])
    try:
        yield result
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
        with suppress(OSError, EOFError, pickle.UnpicklingError):
            result.posts.extend(pickle.loads(Path(out).read_bytes()))
        Path(out).unlink(missing_ok=True)
