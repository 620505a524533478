"""A lean HTTP/1.1 client for the one host the poster talks to: persistent sockets, one write, a small parser.

``KeepAliveTransport`` is the ``Transport`` of ``SignedConnectionsPoster`` without urllib3 and http.client: the
request is one ``sendall`` of bytes built with one format, and the response is read with ``recv`` into a buffer
and parsed for what a ``Reply`` needs (the status and ``x-amzn-ErrorType``) and what framing needs
(``Content-Length``, ``Transfer-Encoding``, ``Connection``); every other header is skipped unparsed. The library
path spends most of a post's CPU in ``email.feedparser`` and request building; this one does not
(``bench/post_cost.py`` measures both in the same run).

Semantics kept from ``Urllib3Transport`` (``block=True``, ``retries=False``):

- at most ``maxsize`` sockets to the host; a thread takes an idle one (the most recently used), opens one while
  under the bound, else waits until one is returned;
- 5 s to connect (and, for https, to finish the handshake), 10 s for each ``recv``;
- https verifies the certificate chain against botocore's CA bundle and the host name (TLS 1.2 or later);
- the path goes out exactly as given (the poster has percent-encoded it), with the given headers, plus
  ``Content-Length`` for POST and PUT and any body, ``Host`` when not given and ``Accept-Encoding: identity`` (as
  http.client adds it); no ``Content-Type``;
- any failure to get an answer is an ``OSError`` (``ConnectionError``, ``TimeoutError``, ``ssl.SSLError``, or
  ``BadResponse`` for an answer that is malformed, truncated or too large), and its socket is closed.

A reset or broken pipe while sending is not an error by itself: an answer the server sent before closing (a 413
to a body it would not read) is read and returned, as urllib3 does.

One difference, on purpose: a pooled socket the server has already closed (its idle timeout racing our request:
EOF or a reset while sending, or before the first byte of the answer) is not an error. The request is sent once
more, on a new socket. urllib3 looks for a closed idle socket with a ``poll`` before each request and, with
``retries=False``, fails the (rarer) race it cannot see; http.client fails it. A POST is re-sent only when not
one byte of an answer was read, so the server did not answer it; the one case that can deliver a frame twice is
a server that read the request, acted on it and then closed without a byte of answer, which the poster's own
retry of a failed attempt would re-send too (``@connections`` delivery is at least once either way).

Responses are capped: 64 KB of status line and headers (1xx answers and chunked trailers included) and 1 MB of
body; a larger answer is ``ResponseTooLarge``.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    error_type: str | None  # the x-amzn-ErrorType header
    body: bytes

    def code(self) -> str:
        """The error code as botocore reads it: the header, else the body's code, else the status."""
        code = self.error_type
        if not code and self.body:
            code = _body_code(self.body)
        return (code or str(self.status)).split(":")[0].rsplit("#", 1)[-1]


def _body_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    code = parsed.get("code") or parsed.get("Code") or parsed.get("__type")
    return code if isinstance(code, str) else None


MAX_HEADER_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 1024 * 1024
_RECV_BYTES: Final = 65536
_MAX_CHUNK_LINE: Final = 4096  # a chunk-size line, extensions included
_KEPT: Final = frozenset({b"content-length", b"transfer-encoding", b"connection", b"x-amzn-errortype"})
_HEX: Final = b"0123456789abcdefABCDEF"
_NO_BODY: Final = frozenset({204, 304})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SENT_BEFORE_ANY_ANSWER: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class BadResponse(OSError):
    """The server's answer could not be read as HTTP/1.x: malformed or cut short. No answer came."""


class ResponseTooLarge(BadResponse):
    """The answer's headers or body were over the caps (``MAX_HEADER_BYTES``, ``MAX_BODY_BYTES``)."""


class NoResponse(ConnectionError):
    """The connection ended (EOF or reset) before a byte of the answer: the server did not answer the request."""


class TransportClosed(ConnectionError):
    """``send`` on a transport that was closed."""


class Readable(Protocol):
    """What ``read_response`` needs of a socket."""

    def recv(self, bufsize: int, /) -> bytes: ...


class Connectable(Readable, Protocol):
    """What the pool needs of a socket."""

    def sendall(self, data: bytes, /) -> None: ...

    def close(self) -> None: ...


class _Reader:
    """A buffer over ``recv``: what was received and not yet consumed is ``_buf[_pos:]``."""

    __slots__ = ("_sock", "_buf", "_pos", "started")

    def __init__(self, sock: Readable) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self.started = False  # a byte of the answer was received

    def _recv(self) -> bytes:
        try:
            more = self._sock.recv(_RECV_BYTES)
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            if not self.started:
                raise NoResponse(f"the connection was reset before an answer: {exc}") from exc
            raise
        if more:
            self.started = True
        return more

    def _fill(self) -> bool:
        """Append one ``recv`` to the unconsumed bytes; False at EOF."""
        more = self._recv()
        if not more:
            return False
        self._buf = self._buf[self._pos :] + more
        self._pos = 0
        return True

    def _need(self, what: str) -> None:
        if not self._fill():
            if not self.started:
                raise NoResponse("the server closed the connection without an answer")
            raise BadResponse(f"the connection closed in the middle of the {what}")

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def head(self, budget: int) -> bytes:
        """The bytes up to the next empty line (not included); over ``budget`` is ResponseTooLarge."""
        searched = self._pos
        while True:
            end = self._buf.find(b"\r\n\r\n", searched)
            if end >= 0:
                if end - self._pos > budget:
                    break
                block = self._buf[self._pos : end]
                self._pos = end + 4
                return block
            pending = self.pending()
            if pending > budget:
                break
            self._need("headers")
            searched = max(0, pending - 3)
        raise ResponseTooLarge(f"the answer's headers are over {MAX_HEADER_BYTES} bytes")

    def line(self, limit: int, what: str) -> bytes:
        """The bytes up to the next CRLF (not included)."""
        searched = self._pos
        while True:
            end = self._buf.find(b"\r\n", searched)
            if end >= 0 and end - self._pos <= limit:
                text = self._buf[self._pos : end]
                self._pos = end + 2
                return text
            pending = self.pending()
            if end >= 0 or pending > limit:
                raise ResponseTooLarge(f"a {what} line over {limit} bytes")
            self._need(what)
            searched = max(0, pending - 1)

    def exact(self, size: int, what: str) -> bytes:
        if self.pending() >= size:
            data = self._buf[self._pos : self._pos + size]
            self._pos += size
            return data
        parts = [self._buf[self._pos :]]
        got = len(parts[0])
        while got < size:
            more = self._recv()
            if not more:
                raise BadResponse(f"the connection closed in the middle of the {what} ({got} of {size} bytes)")
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
        self._buf, self._pos = data[size:], 0
        return data[:size]

    def rest(self, limit: int) -> bytes:
        """Everything until the server closes the connection."""
        parts = [self._buf[self._pos :]]
        got = len(parts[0])
        self._buf, self._pos = b"", 0
        while got <= limit:
            more = self._recv()
            if not more:
                return b"".join(parts)
            parts.append(more)
            got += len(more)
        raise ResponseTooLarge(f"the answer's body is over {limit} bytes")

    def chunked(self, limit: int, trailer_budget: int) -> bytes:
        """A chunked body (RFC 9112 7.1): chunk extensions ignored, trailers read and dropped."""
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self.line(_MAX_CHUNK_LINE, "chunk size").partition(b";")[0].strip()
            if not size_text or size_text.strip(_HEX):
                raise BadResponse(f"a chunk size that is not hexadecimal: {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise ResponseTooLarge(f"the answer's body is over {limit} bytes")
            parts.append(self.exact(size, "chunked body"))
            if self.exact(2, "chunked body") != b"\r\n":
                raise BadResponse("a chunk not followed by CRLF")
        while trailer := self.line(trailer_budget, "trailer"):
            trailer_budget -= len(trailer) + 2
            if trailer_budget < 0:
                raise ResponseTooLarge(f"the answer's headers and trailers are over {MAX_HEADER_BYTES} bytes")
        return b"".join(parts)


def _fields(lines: list[bytes]) -> dict[bytes, bytes]:
    """The kept header fields by lower-case name; repeated fields joined with ", " (one Content-Length only)."""
    fields: dict[bytes, bytes] = {}
    key = b""
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # obs-fold: the previous field goes on
            if key in fields:
                fields[key] += b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadResponse(f"a header line with no colon: {line[:40]!r}")
        key = name.strip().lower()
        if key not in _KEPT:
            continue
        value = value.strip()
        if key not in fields:
            fields[key] = value
        elif key != b"content-length":
            fields[key] += b", " + value
        elif fields[key] != value:
            raise BadResponse("conflicting Content-Length headers")
    return fields


def _status(line: bytes) -> tuple[bytes, int]:
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit() or len(code) != 3 or rest[3:4] not in (b"", b" "):
        raise BadResponse(f"not an HTTP/1.x status line: {line[:40]!r}")
    return version, int(code)


def read_response(sock: Readable, method: str) -> tuple[Reply, bool]:
    """One answer from ``sock``: the Reply, and whether the socket may carry another request.

    1xx answers (``100 Continue``) are skipped. The body is framed by chunked transfer-coding, else by
    Content-Length, else by the server closing the connection. Raises NoResponse when the connection ended before
    a byte of the answer, else BadResponse (ResponseTooLarge over the caps) or the socket's own OSError.
    """
    reader = _Reader(sock)
    budget = MAX_HEADER_BYTES
    while True:
        block = reader.head(budget)
        budget -= len(block) + 4
        lines = block.split(b"\r\n")
        version, status = _status(lines[0])
        if status >= 200:
            break
        if status == 101:
            raise BadResponse("101 Switching Protocols to a request that asked for no upgrade")
    fields = _fields(lines[1:])
    reusable = version == b"HTTP/1.1"
    if b"connection" in fields:
        tokens = {token.strip() for token in fields[b"connection"].lower().split(b",")}
        reusable = b"close" not in tokens and (reusable or b"keep-alive" in tokens)
    if method == "HEAD" or status in _NO_BODY:
        body, delimited = b"", True
    else:
        body, delimited = _body(reader, fields, budget)
    if reader.pending():
        reusable = False  # bytes nobody asked for: the connection is out of step
    error_type = fields.get(b"x-amzn-errortype")
    reply = Reply(status, None if error_type is None else error_type.decode("latin-1"), body)
    return reply, reusable and delimited


def _body(reader: _Reader, fields: dict[bytes, bytes], budget: int) -> tuple[bytes, bool]:
    """The body, and False when it ran until the server closed the connection (RFC 9112 6.3)."""
    if b"transfer-encoding" in fields:
        codings = [coding.strip() for coding in fields[b"transfer-encoding"].lower().split(b",")]
        if codings == [b"chunked"]:
            return reader.chunked(MAX_BODY_BYTES, budget), True
        if b"chunked" in codings:
            raise BadResponse(f"a transfer-coding we did not ask for: {fields[b'transfer-encoding'][:40]!r}")
        return reader.rest(MAX_BODY_BYTES), False  # no chunked last: the body runs until the connection closes
    if b"content-length" in fields:
        length = fields[b"content-length"]
        if not length.isdigit():
            raise BadResponse(f"a Content-Length that is not a number: {length[:40]!r}")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise ResponseTooLarge(f"the answer's body is {size} bytes, over {MAX_BODY_BYTES}")
        return reader.exact(size, "body"), True
    return reader.rest(MAX_BODY_BYTES), False


class SocketPool:
    """At most ``maxsize`` sockets to one host, shared between threads: urllib3's ``block=True`` pool.

    ``pool`` is a LIFO queue of ``maxsize`` items, each an idle socket or None (a free slot). ``take`` gets the most
    recently used idle socket, or a free slot and opens a socket in it with ``connect``, or waits until a request
    gives one back; ``give_back`` returns the socket, or closes it and returns its slot.
    """

    def __init__(self, maxsize: int, connect: Callable[[], Connectable]) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.connect = connect
        self.pool: queue.LifoQueue[Connectable | None] = queue.LifoQueue(maxsize)
        for _ in range(maxsize):
            self.pool.put(None)
        self.closed = False

    def take(self) -> tuple[Connectable, bool]:
        """A socket, and True when it served an earlier request."""
        sock = self.pool.get()
        if self.closed:
            if sock is not None:
                sock.close()
            self.pool.put(None)
            raise TransportClosed("the transport is closed")
        if sock is not None:
            return sock, True
        try:
            return self.connect(), False
        except BaseException:
            self.pool.put(None)
            raise

    def give_back(self, sock: Connectable, reusable: bool) -> None:
        if reusable and not self.closed:
            self.pool.put(sock)
            if self.closed:  # close() ran in between
                self._drain()
        else:
            sock.close()
            self.pool.put(None)

    def close(self) -> None:
        """Close the idle sockets; those in use are closed when given back. ``take`` then fails."""
        self.closed = True
        self._drain()

    def _drain(self) -> None:
        taken: list[Connectable | None] = []
        while True:
            try:
                taken.append(self.pool.get_nowait())
            except queue.Empty:
                break
        for sock in taken:
            if sock is not None:
                sock.close()
        for _ in taken:
            self.pool.put(None)  # a waiting thread wakes, sees the pool closed, and raises


class KeepAliveTransport:
    """HTTP/1.1 over a ``SocketPool`` of persistent sockets to one host, safe to share between threads.

    ``ca_file`` overrides the CA bundle (botocore's) that https verifies with. ``resent`` counts the requests sent
    a second time because their pooled socket had been closed by the server.
    """

    def __init__(
        self,
        endpoint_url: str,
        maxsize: int,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint_url!r}")
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != _DEFAULT_PORTS[parts.scheme]:
            host = f"{host}:{self.port}"
        self._host_line = f"Host: {host}\r\n"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls: ssl.SSLContext | None = None
        self._stale: tuple[type[OSError], ...] = _SENT_BEFORE_ANY_ANSWER
        if parts.scheme == "https":
            self.tls, tls_errors = _tls_context(ca_file)
            self._stale += tls_errors
        self.pool = SocketPool(maxsize, self._connect)
        self.resent = 0
        self._lock = threading.Lock()

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        request = self._request(method, path, body, headers)
        sock, reused = self.pool.take()
        reusable = False
        try:
            try:
                reply, reusable = self._exchange(sock, request, method)
            except NoResponse:
                if not reused:
                    raise
                sock.close()  # the server closed it while it was idle: once more on a new socket, same slot
                with self._lock:
                    self.resent += 1
                sock = self.pool.connect()
                reply, reusable = self._exchange(sock, request, method)
        finally:
            self.pool.give_back(sock, reusable)
        return reply

    def close(self) -> None:
        """Close the idle sockets; those in use are closed when their request ends. ``send`` then fails."""
        self.pool.close()

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        if not (path.isascii() and path.isprintable()) or " " in path:
            raise ValueError(f"a request path must be percent-encoded ASCII: {path!r}")
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("a header name or value holds a line break")
        if "Host" not in headers and "host" not in headers:
            fields = self._host_line + fields
        if body or method in ("POST", "PUT"):
            fields += f"Content-Length: {len(body)}\r\n"
        head = f"{method} {path} HTTP/1.1\r\nAccept-Encoding: identity\r\n{fields}\r\n".encode("latin-1")
        return head + body if body else head

    def _exchange(self, sock: Connectable, request: bytes, method: str) -> tuple[Reply, bool]:
        """Send, then read the answer. A reset or broken pipe while sending is not the end: the server may have
        answered before closing (a 413 to a body it would not read), so the answer is read all the same, as
        urllib3 does; with no byte of one, it is NoResponse."""
        try:
            sock.sendall(request)
        except self._stale as exc:
            try:
                return read_response(sock, method)
            except NoResponse:
                raise NoResponse(f"the connection was closed before the request went out: {exc}") from exc
        return read_response(sock, method)

    def _connect(self) -> Connectable:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:  # the handshake runs under the connect timeout
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return sock


def _tls_context(ca_file: str | None) -> tuple[ssl.SSLContext, tuple[type[OSError], ...]]:
    """Verification on (chain and host name), TLS 1.2 or later, HTTP/1.1 by ALPN; and the TLS errors of a closed
    connection (``ssl`` is imported here, not on the module's import: plain http never needs it)."""
    import ssl

    if ca_file is None:
        from botocore.httpsession import where  # the CA bundle botocore verifies with

        ca_file = where()
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context, (ssl.SSLEOFError, ssl.SSLZeroReturnError)
