"""``iii-stream local`` (the real service, a subprocess) and clients that go away during the WebSocket handshake.

API Gateway runs ``$disconnect`` for every connection whose ``$connect`` succeeded, however the socket ends; the
local gateway must too, or the connection row stays in the Connections table for ever (bench.soak found 97).
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from iii_stream.infra.local.gateway import RouteHandlers, WebSocketGateway
from iii_stream.infra.offline_env import offline_env
from websockets.sync.client import connect as ws_connect

CLI = Path(sys.executable).parent / "iii-stream"
CONNECTIONS_TABLE = "iii-stream-connections"
ROUTE = re.compile(r"route (\$connect|\$disconnect) +(\S+) .* -> (\S+)$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Local:
    process: subprocess.Popen[str]
    ws_port: int
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: found(self.lines), timeout=timeout)

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def routes(self) -> tuple[set[str], Counter[str]]:
        """The connection ids whose ``$connect`` accepted (2xx), and how many ``$disconnect`` each got."""
        accepted, disconnects = set(), Counter[str]()
        for line in self.output().splitlines():
            found = ROUTE.search(line)
            if found and found.group(1) == "$connect" and found.group(3).startswith("2"):
                accepted.add(found.group(2))
            elif found and found.group(1) == "$disconnect":
                disconnects[found.group(2)] += 1
        return accepted, disconnects


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    ws_port, lambda_port = _free_port(), _free_port()
    cwd = tmp_path_factory.mktemp("local-leaks")
    process = subprocess.Popen(
        [str(CLI), "local", "--port", str(ws_port), "--lambda-port", str(lambda_port), "--connections-port", "0"],
        env=offline_env(PYTHONUNBUFFERED="1"),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    service = Local(process, ws_port)
    reader = threading.Thread(target=service.read, name="local-leaks-stdout", daemon=True)
    reader.start()
    try:
        if not service.wait_for(lambda lines: any("iii-stream local is running" in line for line in lines), 90):
            pytest.fail(f"iii-stream local did not start:\n{service.output()}")
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture(scope="module")
def connections(local: Local) -> Any:
    """A DynamoDB client on the service's embedded DynamoDB (its endpoint is in the banner, read line by line)."""
    line = re.compile(r"DynamoDB \(embedded moto\) +(http://\S+)")
    local.wait_for(lambda lines: any(line.search(text) for text in lines), 30)
    found = line.search(local.output())
    assert found, local.output()
    return boto3.client("dynamodb", endpoint_url=found.group(1))


def rows(client: Any) -> list[str]:
    return [f"{row['pk']['S']} {row['sk']['S']}" for row in client.scan(TableName=CONNECTIONS_TABLE)["Items"]]


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: leak-test\r\n\r\n"
    ).encode()


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client vanishes, nothing more is read or acknowledged."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_at_once(port: int) -> None:
    """The whole upgrade request, then a close: gone before ``$connect`` has answered."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(upgrade_request(port))
    sock.close()


def reset_at_once(port: int) -> None:
    """The whole upgrade request, then a reset."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(upgrade_request(port))
    reset(sock)


def half_close_then_reset(port: int) -> None:
    """The request and a FIN (the server reads the request, then EOF while ``$connect`` runs), then a reset."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(upgrade_request(port))
    sock.shutdown(socket.SHUT_WR)
    time.sleep(0.02)
    reset(sock)


def reset_while_the_101_arrives(port: int) -> None:
    """A receive window of a few bytes, then a reset as soon as the first byte of the 101 is in: the rest of
    the answer is still in flight (or unsent) when the connection is gone."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request(port))
    sock.settimeout(20)
    assert sock.recv(1) == b"H"
    reset(sock)


def reset_racing_the_101(port: int) -> None:
    """The whole request, then a reset some milliseconds later: before, while or just after ``$connect`` answers
    and the 101 is written (spread over the time ``$connect`` takes)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(upgrade_request(port))
    time.sleep(random.uniform(0.0, 0.04))
    reset(sock)


DROPS = [close_at_once, reset_at_once, half_close_then_reset, reset_while_the_101_arrives, reset_racing_the_101]


def wait_until_none_left(local: Local, client: Any, before: set[str], timeout: float = 20.0) -> set[str]:
    """Poll (with a deadline) until every connection accepted since ``before`` had its ``$disconnect`` and left no
    row; then check that each had exactly one. The connections accepted since ``before``."""
    deadline = time.monotonic() + timeout
    while True:
        accepted, disconnects = local.routes()
        new = accepted - before
        left = [row for row in rows(client) if row.split(" ")[0][1:] in new]
        if not left and set(disconnects) >= new:
            break
        if time.monotonic() > deadline:
            missing = sorted(new - set(disconnects))
            pytest.fail(f"{len(left)} row(s) left {left[:5]}; no $disconnect for {missing[:5]} of {len(new)}")
        time.sleep(0.1)
    time.sleep(0.3)  # a second $disconnect would come about now
    accepted, disconnects = local.routes()
    assert set(disconnects) <= accepted, "a $disconnect for a connection $connect did not accept"
    assert all(count == 1 for count in disconnects.values()), [c for c, n in disconnects.items() if n > 1]
    return accepted - before


@pytest.mark.parametrize("drop", DROPS, ids=lambda f: f.__name__)
def test_a_client_gone_during_the_handshake_leaves_no_connection_row(
    local: Local, connections: Any, drop: Callable[[int], None]
) -> None:
    before, _ = local.routes()
    # WHEN clients send the upgrade request and go away during the handshake
    for _ in range(8):
        drop(local.ws_port)
    # THEN $connect accepted some of them (the case under test happened) ...
    assert local.wait_for(lambda _: len(local.routes()[0] - before) > 0, 20), local.output()[-3000:]
    # ... and every one it accepted got exactly one $disconnect, which left no row
    wait_until_none_left(local, connections, before)


def test_many_handshake_drops_at_once_leave_no_row_at_all(local: Local, connections: Any) -> None:
    before, _ = local.routes()
    # WHEN many clients of every kind drop their handshakes at the same time
    threads = [threading.Thread(target=DROPS[n % len(DROPS)], args=(local.ws_port,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # THEN each accepted connection had one $disconnect, and the Connections table is empty
    assert wait_until_none_left(local, connections, before, timeout=30)
    assert rows(connections) == []


# --- the same, deterministic: the gateway alone, with a $connect that waits until the test says ----------------------
class Routes:
    """Route handlers that record every call; ``$connect`` accepts once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connecting = threading.Event()
        self.messaging = threading.Event()
        self.release_messages = threading.Event()
        self.release_messages.set()
        self.order: list[str] = []
        self.connects: list[str] = []
        self.disconnects: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def connect(self, event: dict[str, Any], _: Any) -> dict[str, Any]:
        self.connecting.set()
        assert self.release.wait(20)
        with self.lock:
            self.connects.append(event["requestContext"]["connectionId"])
        return {"statusCode": 200}

    def disconnect(self, event: dict[str, Any], _: Any) -> dict[str, Any]:
        with self.lock:
            self.order.append("$disconnect")
            self.disconnects.append(
                (event["requestContext"]["connectionId"], event["requestContext"]["disconnectStatusCode"])
            )
        return {"statusCode": 200}

    def message(self, event: dict[str, Any], _: Any) -> dict[str, Any]:
        self.order.append("frame")
        self.messaging.set()
        assert self.release_messages.wait(20)
        self.order.append("frame handled")
        return {"statusCode": 200}

    def wait_for_disconnects(self, count: int, timeout: float = 10) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while len(self.disconnects) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # a second one would come about now
        return list(self.disconnects)


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def gateway(routes: Routes) -> Iterator[WebSocketGateway]:
    gateway = WebSocketGateway(RouteHandlers(routes.connect, routes.disconnect, routes.message), port=0)
    gateway.start()
    try:
        yield gateway
    finally:
        routes.release.set()
        gateway.stop()


def _port(gateway: WebSocketGateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1].strip("/"))


@pytest.mark.parametrize("leave", [lambda sock: sock.close(), reset], ids=["close", "reset"])
def test_a_client_gone_while_connect_runs_gets_one_disconnect_once_connect_accepts(
    gateway: WebSocketGateway, routes: Routes, leave: Callable[[socket.socket], None]
) -> None:
    # GIVEN a client whose $connect is running
    sock = socket.create_connection(("127.0.0.1", _port(gateway)))
    sock.sendall(upgrade_request(_port(gateway)))
    assert routes.connecting.wait(10)
    # WHEN it goes away, and only then $connect accepts
    leave(sock)
    time.sleep(0.2)
    routes.release.set()
    # THEN its $disconnect runs, once (1006: no close frame)
    assert routes.wait_for_disconnects(1) == [(routes.connects[0], 1006)]


def test_a_handshake_refused_by_a_stopping_gateway_after_connect_accepted_gets_its_disconnect(
    gateway: WebSocketGateway, routes: Routes
) -> None:
    # GIVEN a client whose $connect is running
    sock = socket.create_connection(("127.0.0.1", _port(gateway)))
    sock.sendall(upgrade_request(_port(gateway)))
    assert routes.connecting.wait(10)
    # WHEN the gateway stops (it answers 503 to the handshakes in progress), then $connect accepts
    stopping = threading.Thread(target=gateway.stop)
    stopping.start()
    time.sleep(0.2)
    routes.release.set()
    # THEN the client is refused ...
    sock.settimeout(5)
    assert sock.recv(64).startswith(b"HTTP/1.1 503")
    sock.close()
    # ... and the $disconnect ran before stop() returned
    stopping.join(timeout=20)
    assert not stopping.is_alive()
    assert routes.disconnects == [(routes.connects[0], 1006)]


def test_an_open_socket_gets_one_disconnect_with_its_close_code(gateway: WebSocketGateway, routes: Routes) -> None:
    routes.release.set()
    # GIVEN an open connection, WHEN the client closes it cleanly
    with ws_connect(gateway.url, open_timeout=5) as ws:
        ws.send('{"type":"ping"}')
    # THEN one $disconnect, with the client's code
    assert routes.wait_for_disconnects(1) == [(routes.connects[0], 1000)]


def test_a_frame_in_hand_when_the_client_vanishes_is_handled_before_its_disconnect(
    gateway: WebSocketGateway, routes: Routes
) -> None:
    routes.release.set()
    routes.release_messages.clear()
    # GIVEN an open connection whose frame (a join, say) is being handled
    with ws_connect(gateway.url, open_timeout=5) as ws:
        ws.send('{"type":"join"}')
        assert routes.messaging.wait(10)
        # WHEN the client vanishes meanwhile
        reset(ws.socket)
        time.sleep(0.3)
        # THEN its $disconnect waits for the frame (or the join would write its row after the leave)
        assert routes.disconnects == []
        routes.release_messages.set()
        assert routes.wait_for_disconnects(1) == [(routes.connects[0], 1006)]
    assert routes.order == ["frame", "frame handled", "$disconnect"]
