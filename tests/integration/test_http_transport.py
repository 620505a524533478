"""The hand-rolled HTTP/1.1 transport over real sockets, on loopback only.

Against a raw asyncio server started here on 127.0.0.1 (port 0), whose every answer is scripted byte for byte:
keep-alive, the pool's bound under 64 threads, a server closing an idle keep-alive connection (the request goes
out once more, once), a server closing without an answer and one never answering (an OSError, promptly), chunked
answers, and TLS with a CA made here: verification passes for the certificate's name and fails for another.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from iii_stream.adapters.http_transport import KeepAliveTransport, NoResponse
from iii_stream.adapters.signed_poster import Reply

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class Request:
    connection: int  # which accepted connection it came on (1, 2, ...)
    nth: int  # its place on that connection (0 first)
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Act:
    """What the server does with a request: wait, write ``answer`` (if any), then close or read the next one."""

    answer: bytes | None = OK
    close: bool = False
    wait: float = 0.0
    pieces: tuple[bytes, ...] = ()  # written one by one, a little apart, before ``answer``


Script = Callable[[Request], Act]


@dataclass
class RawServer:
    """An asyncio TCP (or TLS) server in its own thread that reads HTTP/1.1 requests and plays ``script``."""

    script: Script
    tls: ssl.SSLContext | None = None
    received: list[Request] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    open_peak: int = 0
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection = self.connections
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        try:
            nth = 0
            while (request := await _read_request(reader, connection, nth)) is not None:
                self.received.append(request)
                act = self.script(request)
                nth += 1
                if act.wait:
                    await asyncio.sleep(act.wait)
                for piece in act.pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                if act.answer is not None:
                    writer.write(act.answer)
                    await writer.drain()
                if act.close:
                    break
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            self.open_now -= 1
            writer.close()
            self._tasks.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0.01)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/prod"

    def start(self) -> RawServer:
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda _loop, _context: None)  # a refused TLS handshake is expected
        self._thread = threading.Thread(target=self._loop.run_forever, name="raw-http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _read_request(reader: asyncio.StreamReader, connection: int, nth: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    line, *fields = head[:-4].decode("latin-1").split("\r\n")
    method, path, _ = line.split(" ")
    headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(connection, nth, method, path, headers, body)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> RawServer:
        started.append(RawServer(script, tls).start())
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def transports() -> Iterator[Callable[..., KeepAliveTransport]]:
    built: list[KeepAliveTransport] = []

    def build(*args: object, **kwargs: object) -> KeepAliveTransport:
        built.append(KeepAliveTransport(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    try:
        yield build
    finally:
        for transport in built:
            transport.close()


def _echo(request: Request) -> Act:
    body = b'{"n":%d}' % len(request.body)
    return Act(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


# --- keep-alive and the pool ------------------------------------------------------------------------------------------
def test_one_connection_serves_a_hundred_sequential_requests(serve: Callable[..., RawServer], transports: Any) -> None:
    server = serve(_echo)
    transport = transports(server.url(), 8)

    for n in range(100):
        reply = transport.send("POST", f"/prod/@connections/c{n}%3D", b"x" * n, {"X-Amz-Date": "20261202T000000Z"})
        assert reply == Reply(200, None, b'{"n":%d}' % n)

    assert len(server.received) == 100
    assert server.connections == 1
    assert [got.path for got in server.received[:2]] == ["/prod/@connections/c0%3D", "/prod/@connections/c1%3D"]
    assert server.received[5].headers["host"] == f"127.0.0.1:{server.port}"
    assert server.received[5].headers["content-length"] == "5"
    assert "content-type" not in server.received[5].headers
    assert transport.resent == 0


def test_sixty_four_threads_share_at_most_maxsize_connections(serve: Callable[..., RawServer], transports: Any) -> None:
    server = serve(lambda _: Act(OK, wait=0.002))
    transport = transports(server.url(), 8)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def post(thread: int) -> None:
        try:
            for n in range(10):
                statuses.append(transport.send("POST", f"/prod/@connections/t{thread}-{n}", b"{}", {}).status)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert statuses == [200] * 640
    assert len(server.received) == 640
    assert server.connections <= 8
    assert server.open_peak <= 8
    assert transport.resent == 0


# --- closed and silent servers ----------------------------------------------------------------------------------------
def test_a_server_closing_an_idle_keep_alive_connection_costs_one_re_send(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    server = serve(lambda _: Act(OK, close=True))  # answers as keep-alive, then closes (an idle timeout)
    transport = transports(server.url(), 4)

    assert transport.send("POST", "/prod/@connections/a", b"1", {}).status == 200
    time.sleep(0.2)  # the server's FIN arrives
    assert transport.send("POST", "/prod/@connections/b", b"2", {}).status == 200

    assert transport.resent == 1
    assert server.connections == 2
    assert [(got.connection, got.body) for got in server.received] == [(1, b"1"), (2, b"2")]


def test_a_server_that_closes_without_answering_is_an_os_error_and_nothing_hangs(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    server = serve(lambda _: Act(None, close=True))
    transport = transports(server.url(), 4, read_timeout=5.0)

    started = time.monotonic()
    with pytest.raises(NoResponse) as raised:
        transport.send("POST", "/prod/@connections/a", b"x", {})

    assert time.monotonic() - started < 1
    assert isinstance(raised.value, OSError)
    assert len(server.received) == 1  # a new socket: not sent again
    assert transport.resent == 0


def test_a_pooled_connection_closed_without_an_answer_is_sent_once_more_then_fails(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    server = serve(lambda got: Act(OK) if got.connection == 1 and got.nth == 0 else Act(None, close=True))
    transport = transports(server.url(), 4, read_timeout=5.0)
    transport.send("POST", "/prod/@connections/a", b"first", {})

    started = time.monotonic()
    with pytest.raises(NoResponse):
        transport.send("POST", "/prod/@connections/a", b"second", {})

    assert time.monotonic() - started < 1
    assert transport.resent == 1
    # the server read "second" and closed without a byte: the one case where a re-send may repeat a request
    assert [got.body for got in server.received] == [b"first", b"second", b"second"]


def test_a_read_timeout_is_an_os_error_within_about_the_timeout(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    server = serve(lambda _: Act(OK, wait=5.0))
    transport = transports(server.url(), 2, read_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        transport.send("POST", "/prod/@connections/a", b"x", {})
    elapsed = time.monotonic() - started

    assert isinstance(raised.value, OSError)
    assert 0.25 <= elapsed < 1.5
    assert transport.resent == 0


def test_a_refused_connection_is_an_os_error(transports: Any) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    transport = transports(f"http://127.0.0.1:{port}/prod", 2)

    with pytest.raises(ConnectionRefusedError):
        transport.send("GET", "/prod/@connections/a", b"", {})


# --- framing over the wire --------------------------------------------------------------------------------------------
def test_a_chunked_answer_in_pieces_and_then_the_next_request_on_the_same_connection(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    pieces = (
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'a;ext=1\r\n{"messa',
        b'ge"\r\n1A\r\n:"The connection is gone"}\r\n',
        b"0\r\nX-Trailer: done\r\n",
    )
    server = serve(lambda got: Act(b"\r\n", pieces=pieces) if got.nth == 0 else Act(OK))
    transport = transports(server.url(), 2)

    reply = transport.send("POST", "/prod/@connections/a", b"x", {})

    assert reply == Reply(410, "GoneException", b'{"message":"The connection is gone"}')
    assert reply.code() == "GoneException"
    assert transport.send("POST", "/prod/@connections/a", b"x", {}).status == 200
    assert server.connections == 1


def test_a_close_delimited_answer_and_connection_close_open_a_new_connection_next(
    serve: Callable[..., RawServer], transports: Any
) -> None:
    answers = {
        1: Act(b"HTTP/1.1 200 OK\r\n\r\nuntil close", close=True),
        2: Act(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", close=True),
        3: Act(OK),
    }
    server = serve(lambda got: answers[got.connection])
    transport = transports(server.url(), 2)

    assert transport.send("GET", "/prod/@connections/a", b"", {}).body == b"until close"
    assert transport.send("GET", "/prod/@connections/a", b"", {}).body == b"ok"
    assert transport.send("GET", "/prod/@connections/a", b"", {}).status == 200

    assert server.connections == 3
    assert transport.resent == 0


# --- TLS --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, and a server certificate it issued for ``localhost`` (and not for 127.0.0.1)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iii-stream test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    found = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return found


def _server_tls(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    return context


def test_tls_with_the_certificates_name_is_verified_and_kept_alive(
    serve: Callable[..., RawServer], transports: Any, certificates: Certificates
) -> None:
    server = serve(_echo, _server_tls(certificates))
    transport = transports(server.url("localhost"), 2, ca_file=str(certificates.ca_file))

    for n in range(5):
        assert transport.send("POST", "/prod/@connections/a", b"x" * n, {}).body == b'{"n":%d}' % n

    assert server.connections == 1
    assert server.received[0].headers["host"] == f"localhost:{server.port}"


def test_tls_to_a_name_the_certificate_does_not_hold_fails_verification(
    serve: Callable[..., RawServer], transports: Any, certificates: Certificates
) -> None:
    server = serve(_echo, _server_tls(certificates))
    transport = transports(server.url("127.0.0.1"), 2, ca_file=str(certificates.ca_file))

    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch|hostname") as raised:
        transport.send("POST", "/prod/@connections/a", b"x", {})

    assert isinstance(raised.value, OSError)
    assert server.received == []


def test_tls_with_botocores_bundle_does_not_trust_a_ca_made_here(
    serve: Callable[..., RawServer], transports: Any, certificates: Certificates
) -> None:
    server = serve(_echo, _server_tls(certificates))
    transport = transports(server.url("localhost"), 2)

    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer|self.signed"):
        transport.send("POST", "/prod/@connections/a", b"x", {})

    assert server.received == []


def test_an_early_answer_to_a_body_the_server_will_not_read_is_returned(transports: Any) -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def refuse_the_body() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
            time.sleep(0.1)  # then close with the body unread: a reset

    server = threading.Thread(target=refuse_the_body, daemon=True)
    server.start()
    transport = transports(f"http://127.0.0.1:{port}/prod", 1)
    try:
        reply = transport.send("POST", "/prod/@connections/a", b"x" * (16 * 1024 * 1024), {})
    finally:
        server.join(10)
        listener.close()

    assert reply == Reply(413, None, b"{}")
    assert transport.resent == 0
