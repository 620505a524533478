"""The lean ``@connections`` poster over real sockets, on loopback only.

Against the local gateway and its ``@connections`` endpoint (the fixture of ``test_connections_endpoint``, with a
real ``websockets`` client): frames arrive byte for byte and in order, a closed connection is gone, 128 KB is the
limit, and ids that need percent-encoding round-trip. Against a small aiohttp server started here: throttling and
5xx retries, the signature recomputed from what arrived with botocore's ``SigV4Auth``, and keep-alive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from iii_stream.adapters.signed_poster import Backoff, SignedConnectionsPoster, Urllib3Transport
from iii_stream.adapters.sigv4 import CachedKeySigner, host_header
from iii_stream.core.errors import ConnectionGoneError, PostError
from iii_stream.core.limits import MAX_MESSAGE_BYTES

from tests.integration import test_connections_endpoint
from tests.integration.test_connections_endpoint import Local

pytestmark = pytest.mark.integration

local = test_connections_endpoint.local  # its fixture: the gateway and its endpoint on loopback, started and stopped

CREDENTIALS = Credentials("AKIDFAKEFORTESTS", "fake/secret+key=")
TINY = Backoff(attempts=5, base_seconds=0.001, cap_seconds=0.004)


# --- the local gateway and its @connections endpoint ----------------------------------------------------------------
@pytest.fixture
def poster(local: Local) -> Iterator[SignedConnectionsPoster]:
    lean = SignedConnectionsPoster.from_endpoint(
        local.client.meta.endpoint_url, max_connections=8, credentials=CREDENTIALS
    )
    try:
        yield lean
    finally:
        lean.close()


def _gone(local: Local, connection_id: str) -> None:
    deadline = time.monotonic() + 5
    while local.gateway.lookup(connection_id) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert local.gateway.lookup(connection_id) is None


def test_frames_arrive_byte_for_byte(local: Local, poster: SignedConnectionsPoster) -> None:
    frames = [
        b'{"type":"stream","event":{"type":"update","data":{"name":"w\xc3\xb6rld \xe2\x9c\x93"}}}',
        b"  spaces\tand\nnewlines  ",
        b"\x00\xff\xfe not UTF-8",  # the endpoint sends it as a binary frame
        b"{}",
    ]
    with local.open() as (ws, connection_id):
        for data in frames:
            poster.post(connection_id, data)
            assert ws.recv(timeout=5, decode=False) == data


def test_fifty_frames_arrive_in_order(local: Local, poster: SignedConnectionsPoster) -> None:
    with local.open() as (ws, connection_id):
        for n in range(50):
            poster.post(connection_id, f'{{"n":{n}}}'.encode())
        assert [ws.recv(timeout=5) for _ in range(50)] == [f'{{"n":{n}}}' for n in range(50)]


def test_alive_is_true_for_an_open_connection(local: Local, poster: SignedConnectionsPoster) -> None:
    with local.open() as (_, connection_id):
        assert poster.alive(connection_id) is True


def test_a_closed_connection_is_gone(local: Local, poster: SignedConnectionsPoster) -> None:
    with local.open() as (_, connection_id):
        pass
    _gone(local, connection_id)

    with pytest.raises(ConnectionGoneError) as raised:
        poster.post(connection_id, b'{"late":true}')
    assert raised.value.connection_id == connection_id
    assert poster.alive(connection_id) is False
    with pytest.raises(ConnectionGoneError):
        poster.post("never-was=", b"x")
    assert poster.throttled == 0


def test_over_128_kb_is_a_post_error_and_exactly_128_kb_is_delivered(
    local: Local, poster: SignedConnectionsPoster
) -> None:
    with local.open() as (ws, connection_id):
        with pytest.raises(PostError, match="PayloadTooLargeException") as raised:
            poster.post(connection_id, b"x" * (MAX_MESSAGE_BYTES + 1))
        assert not isinstance(raised.value, ConnectionGoneError)

        poster.post(connection_id, b"y" * MAX_MESSAGE_BYTES)
        assert ws.recv(timeout=5, decode=False) == b"y" * MAX_MESSAGE_BYTES


ODD_IDS = ["a/b+c=", "=/+", "R1km/xc2+VNjMC==", "+x", "/y/"]


def test_ids_with_equals_slash_and_plus_round_trip(
    local: Local, poster: SignedConnectionsPoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = iter(ODD_IDS)
    monkeypatch.setattr("iii_stream.infra.local.gateway.new_id", lambda: next(issued))
    with ExitStack() as stack:
        opened = [stack.enter_context(local.open()) for _ in ODD_IDS]
        assert [connection_id for _, connection_id in opened] == ODD_IDS

        for ws, connection_id in opened:
            assert poster.alive(connection_id) is True
            poster.post(connection_id, f'{{"to":"{connection_id}"}}'.encode())
            assert ws.recv(timeout=5) == f'{{"to":"{connection_id}"}}'


# --- a scripted aiohttp server ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Received], Awaitable[web.Response] | web.Response]


@dataclass
class Scripted:
    """An aiohttp server on 127.0.0.1 (port 0) in its own thread; ``answer`` decides each reply."""

    answer: Answer
    received: list[Received] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)  # one per TCP connection accepted
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer is not None:
            self.peers.add((str(peer[0]), int(peer[1])))
        got = Received(request.method, request.raw_path, dict(request.headers), await request.read())
        self.received.append(got)
        reply = self.answer(got)
        return await reply if not isinstance(reply, web.Response) else reply

    async def _start(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/prod"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Scripted]]:
    started: list[Scripted] = []

    def start(answer: Answer) -> Scripted:
        server = Scripted(answer)
        server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _lean(
    url: str,
    credentials: Credentials = CREDENTIALS,
    backoff: Backoff = TINY,
    on_throttle: Callable[[], None] | None = None,
) -> SignedConnectionsPoster:
    signer = CachedKeySigner(credentials, "us-east-1", host_header(url))
    return SignedConnectionsPoster(url, signer, Urllib3Transport(url, 8), backoff, on_throttle=on_throttle)


def _ok(_: Received) -> web.Response:
    return web.Response(status=200)


def test_throttled_answers_are_retried_counted_and_reported(serve: Callable[[Answer], Scripted]) -> None:
    throttles = 3

    def answer(got: Received) -> web.Response:
        if len(server.received) <= throttles:
            headers = {"x-amzn-ErrorType": "LimitExceededException"}
            return web.Response(status=429, headers=headers, body=b'{"message":"Limit Exceeded"}')
        return _ok(got)

    server = serve(answer)
    calls: list[None] = []
    poster = _lean(server.url, on_throttle=lambda: calls.append(None))
    try:
        started = time.monotonic()
        poster.post("R1kmxc2VNjMCFIA=", b'{"hello":"world"}')
    finally:
        poster.close()

    assert len(server.received) == throttles + 1
    assert all(got.body == b'{"hello":"world"}' for got in server.received)
    assert poster.throttled == len(calls) == throttles
    assert time.monotonic() - started < 1


def test_a_lasting_5xx_is_a_post_error_after_every_attempt(serve: Callable[[Answer], Scripted]) -> None:
    server = serve(lambda _: web.Response(status=500, body=b'{"message":"Internal server error"}'))
    poster = _lean(server.url)
    try:
        with pytest.raises(PostError, match="500 posting to conn-1=") as raised:
            poster.post("conn-1=", b"x")
    finally:
        poster.close()

    assert not isinstance(raised.value, ConnectionGoneError)
    assert len(server.received) == TINY.attempts
    assert poster.throttled == 0


def _recomputed(got: Received, credentials: Credentials, region: str) -> str:
    """The Authorization header botocore's SigV4Auth computes for the request as it arrived.

    As AWS checks it: the headers named in the received ``SignedHeaders``, the path as sent, the body as received,
    at the request's own ``X-Amz-Date``.
    """
    named = got.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {name: value for name, value in got.headers.items() if name.lower() in named}
    request = AWSRequest(method=got.method, url=f"http://{got.headers['Host']}{got.raw_path}", data=got.body)
    for name, value in headers.items():
        request.headers[name] = value
    request.context["timestamp"] = got.headers["X-Amz-Date"]
    auth = SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    return f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed}, Signature={signature}"


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//fake+session/token=="])
def test_the_server_recomputes_the_same_signature_from_what_arrived(
    serve: Callable[[Answer], Scripted], token: str | None
) -> None:
    credentials = Credentials("AKIDFAKEFORTESTS", "fake/secret+key=", token)
    checked: list[tuple[str, str]] = []

    def answer(got: Received) -> web.Response:
        checked.append((got.headers["Authorization"], _recomputed(got, credentials, "us-east-1")))
        if checked[-1][0] != checked[-1][1]:
            return web.Response(status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
        return _ok(got)

    server = serve(answer)
    poster = _lean(server.url, credentials)
    sent: list[tuple[str, bytes]] = [
        ("R1kmxc2VNjMCFIA=", b'{"type":"stream","event":{"data":"w\xc3\xb6rld"}}'),
        ("a/b+c=", b"x" * 1000),
        ("sp ace~\xfc", b""),
        ("-_.", b"\x00\xff"),
    ]
    try:
        for connection_id, data in sent:
            poster.post(connection_id, data)
            assert poster.alive(connection_id) is True
    finally:
        poster.close()

    assert len(checked) == 2 * len(sent)
    for received, recomputed in checked:
        assert received == recomputed
    assert [got.method for got in server.received] == ["POST", "GET"] * len(sent)
    assert [got.body for got in server.received[::2]] == [data for _, data in sent]
    assert server.received[2].raw_path == "/prod/@connections/a%2Fb%2Bc%3D"
    assert all(("X-Amz-Security-Token" in got.headers) == (token is not None) for got in server.received)


def test_keep_alive_one_connection_serves_a_hundred_sequential_posts(serve: Callable[[Answer], Scripted]) -> None:
    server = serve(_ok)
    poster = SignedConnectionsPoster.from_endpoint(server.url, max_connections=8, credentials=CREDENTIALS)
    try:
        for n in range(100):
            poster.post(f"conn-{n}=", b'{"n":%d}' % n)
    finally:
        poster.close()

    assert len(server.received) == 100
    assert len(server.peers) == 1


def test_the_request_carries_what_boto3_s_carries_and_no_content_type(serve: Callable[[Answer], Scripted]) -> None:
    server = serve(_ok)
    poster = _lean(server.url)
    try:
        poster.post("R1kmxc2VNjMCFIA=", b"{}")
    finally:
        poster.close()

    [got] = server.received
    names = {name.lower() for name in got.headers}
    assert {"host", "x-amz-date", "authorization", "content-length"} <= names
    assert "content-type" not in names
    assert got.headers["Host"] == host_header(server.url)
    assert got.headers["Content-Length"] == "2"
