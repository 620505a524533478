"""Property: nasty frames through the real local gateway and the real route handlers, over a real socket.

The gateway on a loopback port routes every text frame (API Gateway keeps the socket open whatever the
text), the real ``ws_message`` handler ignores what is not a valid join/leave, and a valid join sent
afterwards on the same socket still gets its ``sync``. Handlers run on moto in-process; their posts reach
the socket through the local ``@connections`` endpoint. Binary frames close the socket with 1003, as on
API Gateway; a text frame that is not UTF-8 with 1007 (RFC 6455 8.1), and one over 128 KB with 1009.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream import wiring
from iii_stream.adapters.keys import SUBSCRIPTION_TAG, group_partition
from iii_stream.core.errors import BadFrameError, NameTooLongError
from iii_stream.core.limits import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, MAX_NAME_BYTES
from iii_stream.core.ws_frames import ClientFrame, parse_client_frame
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.apigw_events import select_route
from iii_stream.infra.local.connections_endpoint import ConnectionsEndpoint
from iii_stream.infra.local.gateway import RouteHandlers, WebSocketGateway
from iii_stream.infra.template import create_tables
from moto import mock_aws
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.integration

BUDGET = settings(max_examples=40, deadline=None, derandomize=True)
TABLES = {"ItemsTable": "pg-items", "ConnectionsTable": "pg-connections", "TriggersTable": "pg-triggers"}
Handler = Callable[[Any, Any], Any]


@dataclass
class Gate:
    gateway: WebSocketGateway
    dynamodb: Any
    routes: list[str] = field(default_factory=list)  # the route key of every message event
    connected: list[str] = field(default_factory=list)  # the connection id of every $connect
    failures: list[str] = field(default_factory=list)  # a route that raised, or a frame the handler failed on
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recorded(self, name: str, handler: Handler) -> Handler:
        def run(event: dict[str, Any], context: Any) -> Any:
            with self.lock:
                if name == "message":
                    self.routes.append(event["requestContext"]["routeKey"])
                if name == "connect":
                    self.connected.append(event["requestContext"]["connectionId"])
            try:
                return handler(event, context)
            except Exception as exc:
                with self.lock:
                    self.failures.append(f"{name}: {exc!r}")
                raise

        return run

    def subscriptions(self, connection_id: str) -> set[str]:
        key = {"pk": {"S": "C" + connection_id}, "sk": {"S": "C"}}
        item = self.dynamodb.get_item(TableName=TABLES["ConnectionsTable"], Key=key, ConsistentRead=True)["Item"]
        return set(item["subs"]["M"])


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("ITEMS_TABLE", TABLES["ItemsTable"])
        patch.setenv("CONNECTIONS_TABLE", TABLES["ConnectionsTable"])
        patch.setenv("TRIGGERS_TABLE", TABLES["TriggersTable"])
        patch.setenv("TRIGGER_CACHE_SECONDS", "0")
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, TABLES)
        wiring.reset()
        import ws_message

        gate = Gate(None, dynamodb)  # type: ignore[arg-type]
        # ws_message answers 200 even when handling a frame raised: it logs that here; count it as a failure.
        patch.setattr(ws_message.logger, "exception", lambda message, *a, **k: gate.failures.append(message))
        routes = RouteHandlers(
            gate.recorded("connect", load_handler("ws_connect.handler")),
            gate.recorded("disconnect", load_handler("ws_disconnect.handler")),
            gate.recorded("message", load_handler("ws_message.handler")),
        )
        gate.gateway = WebSocketGateway(routes, port=0)
        gate.gateway.start()
        endpoint = ConnectionsEndpoint(gate.gateway)
        patch.setenv("CONNECTIONS_ENDPOINT", endpoint.start())
        wiring.reset()
        try:
            yield gate
        finally:
            gate.gateway.stop()
            wiring.connections_poster().close()
            wiring.reset()


# --- frames ---------------------------------------------------------------------------------------------------


def _join(subscription_id: str, stream: str = "s", group: str = "g") -> str:
    return json.dumps(
        {"type": "join", "data": {"streamName": stream, "groupId": group, "subscriptionId": subscription_id}}
    )


def _parsed(text: str) -> ClientFrame | None:
    """The frame the handler acts on: a valid join/leave whose names DynamoDB keys can hold, or None (ignored)."""
    try:
        frame = parse_client_frame(text)
        group_partition(SUBSCRIPTION_TAG, frame.data.stream_name, frame.data.group_id)
    except (BadFrameError, NameTooLongError):
        return None
    return frame


def _deep_join(depth: int) -> str:
    return _join("deep")[:-1] + ', "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(st.characters(exclude_categories=())))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)
fields = st.one_of(
    st.sampled_from(["", "\ud800", "\x00" * MAX_NAME_BYTES, '"' * MAX_NAME_BYTES, "\\" * MAX_NAME_BYTES]),
    st.sampled_from(["é" * 256, "😀" * 128, "a" * (MAX_NAME_BYTES + 1)]),
    values,
)


@st.composite
def odd_frames(draw: st.DrawFn) -> str:
    data = {"streamName": "s", "groupId": "g", "subscriptionId": draw(st.sampled_from(["a", "b"]))}
    data[draw(st.sampled_from(["streamName", "groupId", "subscriptionId", "id"]))] = draw(fields)
    frame = {"type": draw(st.sampled_from(["join", "leave", "JOIN", "$default", ""])), "data": data}
    return json.dumps(frame)  # ASCII: a lone surrogate travels as its escape, as it would from any client


nasty = st.one_of(
    odd_frames(),
    st.integers(1, MAX_MESSAGE_BYTES).map(lambda n: "[" * n),
    st.integers(MAX_JSON_DEPTH - 1, 3_000).map(_deep_join),
    st.integers(4_000, 6_000).map(lambda n: '{"type":"join","data":' + "9" * n + "}"),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
    st.sampled_from(["", " ", "\x00", "null", "[]", "{}", '{"type":"\\ud800"}', "NaN", '{"type":"join"}']),
)

# --- one exchange ---------------------------------------------------------------------------------------------


def _open(gate: Gate) -> tuple[ClientConnection, str]:
    """A new socket and its connection id ($connect runs before the handshake completes; one socket at a time)."""
    ws = connect(gate.gateway.url, open_timeout=5, max_size=None)
    with gate.lock:
        return ws, gate.connected[-1]


def _frames_until_sync(ws: ClientConnection, stream: str) -> list[dict[str, Any]]:
    """Every frame up to and including the sync of the join on ``stream`` (its last frame)."""
    received = []
    while True:
        frame = json.loads(ws.recv(timeout=10))
        received.append(frame)
        if frame["event"]["type"] == "sync" and frame["streamName"] == stream:
            return received


def _exchange(gate: Gate, text: str) -> None:
    """Send ``text``, then a valid join: the socket is still open and the join gets its sync."""
    failures = len(gate.failures)
    ws, connection_id = _open(gate)
    with ws:
        with gate.lock:
            routed = len(gate.routes)
        ws.send(text)
        marker = "marker-" + uuid.uuid4().hex
        ws.send(_join(marker, stream="marker"))
        received = _frames_until_sync(ws, "marker")
        with gate.lock:
            routes = gate.routes[routed:]
        expected = _parsed(text)
        assert routes == [select_route(text), "join"]
        assert [f["event"]["type"] for f in received if f["streamName"] != "marker"] == (
            ["sync"] if expected is not None and expected.type == "join" else []
        )
        held = gate.subscriptions(connection_id)
        assert marker in held
        if expected is None or expected.type == "leave":
            assert held == {marker}, "an ignored frame left a subscription behind"
    assert gate.failures[failures:] == []


@BUDGET
@given(text=nasty)
def test_a_nasty_text_frame_leaves_the_socket_open_and_the_next_join_is_answered(gate: Gate, text: str) -> None:
    _exchange(gate, text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 100_000, id="100000-deep"),
        pytest.param("[" * MAX_MESSAGE_BYTES, id="128KB-of-["),
        pytest.param('{"a":' * (MAX_MESSAGE_BYTES // 5), id="deep-objects"),
        pytest.param(_deep_join(MAX_JSON_DEPTH + 1), id="one-level-too-deep"),
        pytest.param(_deep_join(5_000), id="5000-deep-join"),
        pytest.param('{"type":"join","data":{"streamName":"\\ud800","groupId":"g","subscriptionId":"x"}}', id="ud800"),
        pytest.param('{"type":"join\\u0000"}', id="nul-escape"),
        pytest.param("\x00" * 1000, id="nul-bytes"),
        pytest.param('{"type":"join","data":{"subscriptionId":' + "9" * 5_000 + "}}", id="5000-digits"),
        pytest.param(_join("x", stream="\x00" * MAX_NAME_BYTES, group="\x00" * MAX_NAME_BYTES), id="nul-names"),
        pytest.param(_join("x", stream='"' * MAX_NAME_BYTES, group='"' * MAX_NAME_BYTES), id="quote-names"),
        pytest.param(_join("x" * MAX_NAME_BYTES, stream="😀" * 128, group="é" * 256), id="512-byte-names"),
    ],
)
def test_fixed_worst_cases_leave_the_socket_open(gate: Gate, text: str) -> None:
    _exchange(gate, text)


def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    return ws.close_code


@pytest.mark.parametrize(
    ("send", "code"),
    [
        pytest.param(lambda ws: ws.send(b'{"type":"join"}'), 1003, id="binary"),
        pytest.param(lambda ws: ws.send(b"\xff\xfe\x00"), 1003, id="binary-not-utf8"),
        pytest.param(lambda ws: ws.send(b"\xff\xfe{", text=True), 1007, id="text-not-utf8"),
        pytest.param(lambda ws: ws.send(b"\xed\xa0\x80", text=True), 1007, id="text-utf8-surrogate"),
        pytest.param(lambda ws: ws.send("[" * (MAX_MESSAGE_BYTES + 1)), 1009, id="over-128KB"),
    ],
)
def test_frames_that_close_the_socket(gate: Gate, send: Callable[[ClientConnection], None], code: int) -> None:
    failures = len(gate.failures)
    ws, connection_id = _open(gate)
    with ws:
        send(ws)
        assert _closed_with(ws) == code
    # The next socket is served as usual.
    _exchange(gate, "{}")
    assert gate.failures[failures:] == []
