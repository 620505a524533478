"""The local ``@connections`` endpoint, reached by an unmodified boto3 client, over the local gateway's sockets.

Real components only: the gateway on a loopback port, a ``websockets`` client, boto3's
``apigatewaymanagementapi`` client pointed at the endpoint through ``endpoint_url``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from iii_stream.core.limits import MAX_MESSAGE_BYTES
from iii_stream.infra.local.connections_endpoint import ConnectionsEndpoint
from iii_stream.infra.local.gateway import RouteHandlers, WebSocketGateway
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.integration


@dataclass
class Local:
    gateway: WebSocketGateway
    client: Any
    connected: list[str]

    @contextmanager
    def open(self) -> Iterator[tuple[ClientConnection, str]]:
        before = len(self.connected)
        with connect(self.gateway.url, open_timeout=5) as ws:
            deadline = time.monotonic() + 5
            while len(self.connected) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            yield ws, self.connected[-1]


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    credentials = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    connected: list[str] = []
    lock = threading.Lock()

    def on_connect(event: dict[str, Any], _: Any) -> dict[str, Any]:
        with lock:
            connected.append(event["requestContext"]["connectionId"])
        return {"statusCode": 200}

    def ok(event: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"statusCode": 200}

    gateway = WebSocketGateway(RouteHandlers(on_connect, ok, ok), port=0)
    gateway.start()
    endpoint = ConnectionsEndpoint(gateway)
    url = endpoint.start()
    client = boto3.client("apigatewaymanagementapi", endpoint_url=url, config=Config(retries={"max_attempts": 1}))
    try:
        yield Local(gateway, client, connected)
    finally:
        gateway.stop()
        endpoint.stop()


def _status(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def test_a_post_arrives_as_a_text_frame(local: Local) -> None:
    with local.open() as (ws, connection_id):
        response = local.client.post_to_connection(ConnectionId=connection_id, Data=b'{"hello":"w\xc3\xb6rld"}')
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert ws.recv(timeout=5) == '{"hello":"wörld"}'


def test_frames_arrive_in_the_order_they_were_posted(local: Local) -> None:
    with local.open() as (ws, connection_id):
        for n in range(50):
            local.client.post_to_connection(ConnectionId=connection_id, Data=str(n).encode())
        assert [ws.recv(timeout=5) for _ in range(50)] == [str(n) for n in range(50)]


def test_a_gone_connection_answers_410_gone_exception(local: Local) -> None:
    with local.open() as (_, connection_id):
        pass
    deadline = time.monotonic() + 5
    while local.gateway.lookup(connection_id) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    calls = [
        (local.client.post_to_connection, {"ConnectionId": connection_id, "Data": b"x"}),
        (local.client.get_connection, {"ConnectionId": connection_id}),
        (local.client.delete_connection, {"ConnectionId": connection_id}),
    ]
    for call, kwargs in calls:
        with pytest.raises(ClientError) as raised:
            call(**kwargs)
        assert _status(raised.value) == (410, "GoneException")
    with pytest.raises(ClientError) as raised:
        local.client.post_to_connection(ConnectionId="never-was=", Data=b"x")
    assert _status(raised.value) == (410, "GoneException")


def test_get_connection_describes_the_socket(local: Local) -> None:
    with local.open() as (ws, connection_id):
        found = local.client.get_connection(ConnectionId=connection_id)
    assert found["Identity"]["SourceIp"] == "127.0.0.1"
    assert found["Identity"]["UserAgent"].startswith("Python/")  # the websockets client's
    assert found["ConnectedAt"] <= found["LastActiveAt"]  # parsed by boto3 from ISO 8601, as AWS sends them


def test_delete_connection_closes_the_socket(local: Local) -> None:
    with local.open() as (ws, connection_id):
        response = local.client.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=5)
        assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1000  # type: ignore[attr-defined]


def test_a_frame_over_128_kb_is_refused_and_the_socket_lives(local: Local) -> None:
    with local.open() as (ws, connection_id):
        with pytest.raises(ClientError) as raised:
            local.client.post_to_connection(ConnectionId=connection_id, Data=b"x" * (MAX_MESSAGE_BYTES + 1))
        assert _status(raised.value) == (413, "PayloadTooLargeException")
        local.client.post_to_connection(ConnectionId=connection_id, Data=b"x" * MAX_MESSAGE_BYTES)
        assert len(ws.recv(timeout=5)) == MAX_MESSAGE_BYTES
