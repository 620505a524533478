"""The hand-rolled HTTP/1.1 transport, with no network: the parser on byte strings, the pool on fake sockets.

``read_response`` reads from anything with ``recv``; ``FakeSocket`` plays a script of byte chunks (then EOF) and
exceptions. Each framing case is read whole, one byte at a time, and in 7-byte pieces, so no answer depends on
how the kernel happens to split it. The pool and the re-send of a request on a stale socket are driven through
``KeepAliveTransport`` with its ``connect`` replaced by a factory of fake sockets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials
from iii_stream.adapters.http_transport import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    BadResponse,
    KeepAliveTransport,
    NoResponse,
    ResponseTooLarge,
    TransportClosed,
    read_response,
)
from iii_stream.adapters.signed_poster import Backoff, Reply, SignedConnectionsPoster, Urllib3Transport
from iii_stream.adapters.sigv4 import CachedKeySigner, host_header

Step = bytes | BaseException


class FakeSocket:
    """Answers ``recv`` from a script (bytes, or an exception to raise), then EOF; records what was sent."""

    def __init__(self, *script: Step, send_error: BaseException | None = None, delay: float = 0.0) -> None:
        self.script = list(script)
        self.send_error = send_error
        self.delay = delay
        self.sent: list[bytes] = []
        self.closed = False
        self.recv_sizes: list[int] = []

    def recv(self, bufsize: int, /) -> bytes:
        self.recv_sizes.append(bufsize)
        if self.delay:
            time.sleep(self.delay)
        if not self.script:
            return b""
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if len(step) > bufsize:
            self.script.insert(0, step[bufsize:])
            step = step[:bufsize]
        return step

    def sendall(self, data: bytes, /) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def _whole(raw: bytes) -> list[bytes]:
    return [raw]


def _bytewise(raw: bytes) -> list[bytes]:
    return [raw[n : n + 1] for n in range(len(raw))]


def _sevens(raw: bytes) -> list[bytes]:
    return [raw[n : n + 7] for n in range(0, len(raw), 7)]


SPLITS = pytest.mark.parametrize("split", [_whole, _bytewise, _sevens], ids=["whole", "bytewise", "sevens"])
Split = Callable[[bytes], list[bytes]]


def _read(raw: bytes, split: Split = _whole, method: str = "POST") -> tuple[Reply, bool]:
    return read_response(FakeSocket(*split(raw)), method)


# --- framing ---------------------------------------------------------------------------------------------------------
@SPLITS
def test_a_content_length_body(split: Split) -> None:
    raw = b"HTTP/1.1 200 OK\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello"

    assert _read(raw, split) == (Reply(200, None, b"hello"), True)


@SPLITS
def test_an_empty_body_of_content_length_zero(split: Split) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\napigw-requestid: x=\r\n\r\n"

    assert _read(raw, split) == (Reply(200, None, b""), True)


@SPLITS
def test_a_chunked_body_with_extensions_and_trailers(split: Split) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'A ; quoted="a;b"\r\n world, 10\r\n'
        b"0;last\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n"
    )

    assert _read(raw, split) == (Reply(200, None, b"hello world, 10"), True)


@SPLITS
def test_a_chunked_body_without_trailers(split: Split) -> None:
    raw = b"HTTP/1.1 410 Gone\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"

    assert _read(raw, split) == (Reply(410, None, b"{}"), True)


@SPLITS
def test_a_close_delimited_body_runs_until_eof_and_the_socket_is_not_reused(split: Split) -> None:
    raw = b"HTTP/1.1 200 OK\r\nServer: old\r\n\r\nall of\r\nthis"

    assert _read(raw, split) == (Reply(200, None, b"all of\r\nthis"), False)


@SPLITS
def test_a_transfer_coding_other_than_chunked_is_close_delimited(split: Split) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nabc"

    assert _read(raw, split) == (Reply(200, None, b"abc"), False)


@SPLITS
def test_100_continue_and_other_1xx_are_skipped(split: Split) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )

    assert _read(raw, split) == (Reply(200, None, b"ok"), True)


@SPLITS
@pytest.mark.parametrize("connection", [b"close", b"Close", b"keep-alive, close", b"CLOSE , upgrade"])
def test_connection_close_is_honoured(split: Split, connection: bytes) -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: " + connection + b"\r\nContent-Length: 2\r\n\r\nok"

    assert _read(raw, split) == (Reply(200, None, b"ok"), False)


@pytest.mark.parametrize(
    ("raw", "reusable"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\nok", False),  # no length: it ends with the connection
        (b"HTTP/1.0 200 OK\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
    ],
)
def test_http_1_0_is_reused_only_with_keep_alive_and_a_length(raw: bytes, reusable: bool) -> None:
    assert _read(raw) == (Reply(200, None, b"ok"), reusable)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_whatever_their_headers_say(status: int) -> None:
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status

    assert _read(raw) == (Reply(status, None, b""), True)


def test_a_head_answer_has_no_body() -> None:
    assert _read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method="HEAD") == (Reply(200, None, b""), True)


def test_a_status_line_with_no_reason_phrase() -> None:
    assert _read(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") == (Reply(200, None, b""), True)


@SPLITS
def test_header_names_in_any_case(split: Split) -> None:
    raw = (
        b"HTTP/1.1 410 Gone\r\n"
        b"X-AMZN-ERRORTYPE: GoneException:http://internal.amazon.com/coral/com.amazonaws.gatewayservice/\r\n"
        b"content-LENGTH:   2  \r\n"
        b"CONNECTION: Keep-Alive\r\n\r\n{}"
    )

    reply, reusable = _read(raw, split)

    assert reply == Reply(410, "GoneException:http://internal.amazon.com/coral/com.amazonaws.gatewayservice/", b"{}")
    assert reply.code() == "GoneException"
    assert reusable


def test_transfer_encoding_in_any_case_wins_over_content_length() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTRANSFER-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"

    assert _read(raw) == (Reply(200, None, b"abc"), True)


def test_the_error_type_is_what_reply_code_reads() -> None:
    raw = b"HTTP/1.1 429 Too Many Requests\r\nx-amzn-ErrorType: LimitExceededException\r\nContent-Length: 0\r\n\r\n"

    reply, _ = _read(raw)

    assert reply.error_type == "LimitExceededException"
    assert reply.code() == "LimitExceededException"


def test_a_folded_header_line_goes_on_the_previous_field() -> None:
    raw = b"HTTP/1.1 400 Bad\r\nx-amzn-ErrorType: Bad\r\n Request\r\nX-Other: a\r\n\tb\r\nContent-Length: 0\r\n\r\n"

    assert _read(raw) == (Reply(400, "Bad Request", b""), True)


def test_repeated_equal_content_lengths_are_one() -> None:
    assert _read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok") == (
        Reply(200, None, b"ok"),
        True,
    )


def test_bytes_after_the_answer_leave_the_socket_out_of_step_so_it_is_not_reused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"

    assert _read(raw) == (Reply(200, None, b"ok"), False)


def test_the_read_asks_for_large_pieces() -> None:
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    read_response(sock, "POST")

    assert sock.recv_sizes == [65536]  # one recv for a small answer


# --- caps ------------------------------------------------------------------------------------------------------------
def test_headers_over_the_cap_are_too_large() -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\nContent-Length: 0\r\n\r\n"

    with pytest.raises(ResponseTooLarge):
        _read(raw)


def test_headers_that_never_end_are_too_large_without_reading_them_all() -> None:
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\n", *([b"X-Filler: " + b"a" * 1000 + b"\r\n"] * 1000))

    with pytest.raises(ResponseTooLarge):
        read_response(sock, "POST")
    assert len(sock.script) > 900


def test_headers_just_under_the_cap_are_read() -> None:
    filler = b"X-Big: " + b"a" * (MAX_HEADER_BYTES - 200) + b"\r\n"
    raw = b"HTTP/1.1 200 OK\r\n" + filler + b"Content-Length: 0\r\n\r\n"

    assert _read(raw, _sevens)[0].status == 200


def test_too_many_1xx_answers_count_towards_the_header_cap() -> None:
    raw = b"HTTP/1.1 100 Continue\r\nX: " + b"a" * 1000 + b"\r\n\r\n"

    with pytest.raises(ResponseTooLarge):
        _read(raw * 100 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_a_declared_body_over_the_cap_is_too_large_before_it_is_read() -> None:
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), b"x" * 100)

    with pytest.raises(ResponseTooLarge):
        read_response(sock, "POST")
    assert sock.script == [b"x" * 100]


def test_a_body_of_exactly_the_cap_is_read() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MAX_BODY_BYTES + b"x" * MAX_BODY_BYTES

    assert _read(raw)[0].body == b"x" * MAX_BODY_BYTES


def test_a_chunked_body_over_the_cap_is_too_large() -> None:
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 17 + b"0\r\n\r\n"

    with pytest.raises(ResponseTooLarge):
        _read(raw)


def test_a_close_delimited_body_over_the_cap_is_too_large() -> None:
    raw = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_BODY_BYTES + 1)

    with pytest.raises(ResponseTooLarge):
        _read(raw)


def test_trailers_over_the_cap_are_too_large() -> None:
    trailers = b"".join(b"T%d: " % n + b"a" * 1000 + b"\r\n" for n in range(80))
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers + b"\r\n"

    with pytest.raises(ResponseTooLarge):
        _read(raw)


# --- cut short, or not HTTP ------------------------------------------------------------------------------------------
def test_eof_before_a_byte_is_no_response() -> None:
    with pytest.raises(NoResponse):
        read_response(FakeSocket(), "POST")


@pytest.mark.parametrize("reset", [ConnectionResetError(104, "reset"), ConnectionAbortedError(103, "aborted")])
def test_a_reset_before_a_byte_is_no_response(reset: OSError) -> None:
    with pytest.raises(NoResponse) as raised:
        read_response(FakeSocket(reset), "POST")
    assert raised.value.__cause__ is reset


@pytest.mark.parametrize(
    "raw",
    [
        b"H",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: 1\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ],
)
def test_a_truncated_answer_is_a_bad_response_not_a_silent_one(raw: bytes) -> None:
    with pytest.raises(BadResponse) as raised:
        _read(raw, _sevens)
    assert not isinstance(raised.value, NoResponse)
    assert isinstance(raised.value, OSError)


def test_a_reset_in_the_middle_of_the_answer_is_not_no_response() -> None:
    with pytest.raises(ConnectionResetError) as raised:
        read_response(FakeSocket(b"HTTP/1.1 200 OK\r\nContent-", ConnectionResetError(104, "reset")), "POST")
    assert not isinstance(raised.value, NoResponse)


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    ],
)
def test_what_is_not_http_1_x_is_a_bad_response(raw: bytes) -> None:
    with pytest.raises(BadResponse):
        _read(raw)


# --- the request -----------------------------------------------------------------------------------------------------
class Sockets:
    """A ``connect`` that hands out scripted fake sockets in turn (and counts them)."""

    def __init__(self, *sockets: FakeSocket | BaseException) -> None:
        self.queue = list(sockets)
        self.made: list[FakeSocket] = []
        self.lock = threading.Lock()

    def __call__(self) -> FakeSocket:
        with self.lock:
            step = self.queue.pop(0)
        if isinstance(step, BaseException):
            raise step
        with self.lock:
            self.made.append(step)
        return step


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _transport(sockets: Callable[[], Any], url: str = "http://127.0.0.1:3112/local", maxsize: int = 4) -> Any:
    transport = KeepAliveTransport(url, maxsize)
    transport.pool.connect = sockets
    return transport


def test_a_post_is_one_write_of_the_request_line_headers_and_body() -> None:
    sock = FakeSocket(OK)
    transport = _transport(Sockets(sock))
    headers = {"Host": "abc.example.com", "X-Amz-Date": "20261202T000000Z", "Authorization": "AWS4-HMAC-SHA256 x"}

    assert transport.send("POST", "/prod/@connections/a%2Fb%2Bc%3D", b'{"a":1}', headers) == Reply(200, None, b"")

    assert sock.sent == [
        b"POST /prod/@connections/a%2Fb%2Bc%3D HTTP/1.1\r\n"
        b"Accept-Encoding: identity\r\n"
        b"Host: abc.example.com\r\n"
        b"X-Amz-Date: 20261202T000000Z\r\n"
        b"Authorization: AWS4-HMAC-SHA256 x\r\n"
        b"Content-Length: 7\r\n"
        b"\r\n"
        b'{"a":1}'
    ]


@pytest.mark.parametrize(
    ("method", "body", "length"),
    [
        ("POST", b"", b"0"),
        ("PUT", b"", b"0"),
        ("GET", b"", None),
        ("DELETE", b"xy", b"2"),
        ("POST", b"x" * 1000, b"1000"),
    ],
)
def test_content_length_for_post_and_put_and_any_body_and_never_a_content_type(
    method: str, body: bytes, length: bytes | None
) -> None:
    sock = FakeSocket(OK)
    _transport(Sockets(sock)).send(method, "/p", body, {"Host": "h"})

    [sent] = sock.sent
    head, _, sent_body = sent.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == method.encode() + b" /p HTTP/1.1"
    assert (
        (b"Content-Length: " + length in lines)
        if length is not None
        else not any(b"Content-Length" in x for x in lines)
    )
    assert not any(line.lower().startswith(b"content-type") for line in lines)
    assert sent_body == body


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:3112/local", b"127.0.0.1:3112"),
        ("https://abc.execute-api.eu-west-1.amazonaws.com/prod", b"abc.execute-api.eu-west-1.amazonaws.com"),
        ("http://[::1]:8080/x", b"[::1]:8080"),
        ("http://ws.example.com:80/", b"ws.example.com"),
    ],
)
def test_a_host_header_is_added_when_not_given(url: str, host: bytes) -> None:
    sock = FakeSocket(OK)
    _transport(Sockets(sock), url).send("GET", "/x", b"", {})

    assert b"\r\nHost: " + host + b"\r\n" in sock.sent[0]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/a b", {}),
        ("/a\r\nX-Evil: 1", {}),
        ("/\u00fc", {}),
        ("/a", {"X-Evil": "1\r\nHost: evil"}),
        ("/a", {"X-Evil\nA": "1"}),
    ],
)
def test_a_path_or_header_that_would_split_the_request_is_refused_before_a_socket(
    path: str, headers: dict[str, str]
) -> None:
    sockets = Sockets(FakeSocket(OK))

    with pytest.raises(ValueError):
        _transport(sockets).send("GET", path, b"", headers)

    assert sockets.made == []


# --- the pool and the stale socket -----------------------------------------------------------------------------------
def test_one_socket_serves_requests_in_turn() -> None:
    sock = FakeSocket(*[OK] * 5)
    sockets = Sockets(sock)
    transport = _transport(sockets)

    for _ in range(5):
        assert transport.send("POST", "/p", b"x", {}).status == 200

    assert sockets.made == [sock]
    assert len(sock.sent) == 5
    assert transport.resent == 0


@pytest.mark.parametrize(
    "stale",
    [
        FakeSocket(OK),  # EOF before a byte of the second answer
        FakeSocket(OK, ConnectionResetError(104, "reset")),  # a reset before a byte
        FakeSocket(OK, ConnectionAbortedError(103, "aborted")),
    ],
    ids=["eof", "reset", "aborted"],
)
def test_a_pooled_socket_the_server_closed_is_replaced_and_the_request_sent_once_more(stale: FakeSocket) -> None:
    fresh = FakeSocket(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi")
    transport = _transport(Sockets(stale, fresh))
    transport.send("POST", "/p", b"first", {})

    assert transport.send("POST", "/p", b"second", {}) == Reply(201, None, b"hi")

    assert transport.resent == 1
    assert stale.closed and not fresh.closed
    assert stale.sent[1] == fresh.sent[0]  # the same bytes, once more
    assert b"second" in fresh.sent[0]


@pytest.mark.parametrize("error", [BrokenPipeError(32, "pipe"), ConnectionResetError(104, "reset")])
def test_a_pooled_socket_that_fails_on_send_is_replaced(error: OSError) -> None:
    stale = FakeSocket(OK)
    fresh = FakeSocket(OK)
    transport = _transport(Sockets(stale, fresh))
    transport.send("GET", "/p", b"", {})
    stale.send_error = error

    assert transport.send("POST", "/p", b"x", {}).status == 200
    assert transport.resent == 1


@pytest.mark.parametrize("error", [BrokenPipeError(32, "pipe"), ConnectionResetError(104, "reset")])
@pytest.mark.parametrize("reused", [False, True])
def test_an_answer_sent_before_the_server_stopped_reading_is_read_despite_the_failed_send(
    error: OSError, reused: bool
) -> None:
    early = b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    sock = FakeSocket(*([OK] if reused else []), early)
    sockets = Sockets(sock, FakeSocket(OK))
    transport = _transport(sockets, maxsize=1)
    if reused:
        transport.send("GET", "/p", b"", {})
    sock.send_error = error

    assert transport.send("POST", "/p", b"x" * 200_000, {}) == Reply(413, None, b"{}")

    assert transport.resent == 0
    assert sockets.made == [sock] and sock.closed


def test_a_failed_send_with_no_answer_on_a_new_socket_is_no_response() -> None:
    sock = FakeSocket(send_error=BrokenPipeError(32, "pipe"))
    transport = _transport(Sockets(sock))

    with pytest.raises(NoResponse, match="before the request went out") as raised:
        transport.send("POST", "/p", b"x", {})

    assert isinstance(raised.value.__cause__, BrokenPipeError)
    assert transport.resent == 0


def test_a_new_socket_closed_without_an_answer_fails_at_once() -> None:
    sock = FakeSocket()
    sockets = Sockets(sock, FakeSocket(OK))
    transport = _transport(sockets, maxsize=1)

    with pytest.raises(NoResponse):
        transport.send("POST", "/p", b"x", {})

    assert sockets.made == [sock] and sock.closed
    assert transport.resent == 0
    assert transport.send("POST", "/p", b"x", {}).status == 200  # the slot came back


def test_the_request_is_sent_once_more_at_most() -> None:
    first = FakeSocket(OK)
    sockets = Sockets(first, FakeSocket(), FakeSocket(OK))
    transport = _transport(sockets, maxsize=1)
    transport.send("POST", "/p", b"x", {})

    with pytest.raises(NoResponse):
        transport.send("POST", "/p", b"x", {})

    assert len(sockets.made) == 2 and all(sock.closed for sock in sockets.made)
    assert transport.resent == 1
    assert transport.send("POST", "/p", b"x", {}).status == 200


@pytest.mark.parametrize(
    "failure",
    [
        TimeoutError("timed out"),
        b"HTTP/1.1 200 OK\r\nContent-Len",  # part of an answer, then EOF
        b"garbage\r\n\r\n",
    ],
)
def test_a_pooled_socket_that_failed_otherwise_is_not_sent_to_again_and_the_error_raised(
    failure: bytes | BaseException,
) -> None:
    sock = FakeSocket(OK, failure)
    sockets = Sockets(sock, FakeSocket(OK))
    transport = _transport(sockets, maxsize=1)
    transport.send("POST", "/p", b"x", {})

    with pytest.raises(OSError) as raised:
        transport.send("POST", "/p", b"x", {})

    assert not isinstance(raised.value, NoResponse)
    assert transport.resent == 0
    assert sock.closed and len(sock.sent) == 2
    assert transport.send("POST", "/p", b"x", {}).status == 200
    assert len(sockets.made) == 2


def test_an_answer_that_closes_the_connection_returns_no_socket_to_the_pool() -> None:
    closing = FakeSocket(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    after = FakeSocket(OK)
    sockets = Sockets(closing, after)
    transport = _transport(sockets)

    transport.send("POST", "/p", b"x", {})
    assert closing.closed
    transport.send("POST", "/p", b"x", {})

    assert sockets.made == [closing, after]
    assert transport.resent == 0


def test_a_failed_connect_frees_its_slot() -> None:
    sockets = Sockets(ConnectionRefusedError(111, "refused"), FakeSocket(OK))
    transport = _transport(sockets, maxsize=1)

    with pytest.raises(ConnectionRefusedError):
        transport.send("POST", "/p", b"x", {})
    assert transport.send("POST", "/p", b"x", {}).status == 200


def test_threads_share_at_most_maxsize_sockets_and_wait_for_one() -> None:
    in_flight, peak, lock = 0, 0, threading.Lock()

    class Slow(FakeSocket):
        def sendall(self, data: bytes, /) -> None:
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            super().sendall(data)

        def recv(self, bufsize: int, /) -> bytes:
            nonlocal in_flight
            time.sleep(0.002)
            with lock:
                in_flight -= 1
            return OK

    made: list[Slow] = []

    def connect() -> Slow:
        with lock:
            made.append(Slow())
            return made[-1]

    transport = _transport(connect, maxsize=3)
    statuses: list[int] = []

    def post() -> None:
        for _ in range(10):
            statuses.append(transport.send("POST", "/p", b"x", {}).status)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert statuses == [200] * 160
    assert len(made) <= 3
    assert peak <= 3
    assert sum(len(sock.sent) for sock in made) == 160


def test_close_closes_idle_sockets_then_send_fails_and_a_socket_in_use_is_closed_when_done() -> None:
    busy = FakeSocket(OK, delay=0.3)
    idle = FakeSocket(OK)
    transport = _transport(Sockets(busy, idle), maxsize=2)
    holder = threading.Thread(target=transport.send, args=("POST", "/p", b"x", {}))
    holder.start()
    time.sleep(0.1)
    transport.send("POST", "/p", b"x", {})  # busy is in use: a second socket, then pooled

    transport.close()

    assert idle.closed and not busy.closed
    holder.join(5)
    assert busy.closed  # given back after close: closed, not pooled
    with pytest.raises(TransportClosed):
        transport.send("POST", "/p", b"x", {})
    assert issubclass(TransportClosed, OSError)


def test_a_waiting_thread_wakes_and_fails_when_the_transport_is_closed() -> None:
    slow = FakeSocket(OK, delay=0.3)
    transport = _transport(Sockets(slow), maxsize=1)
    results: list[BaseException | int] = []

    def send() -> None:
        try:
            results.append(transport.send("POST", "/p", b"x", {}).status)
        except OSError as exc:
            results.append(exc)

    first = threading.Thread(target=send)
    first.start()
    time.sleep(0.05)
    second = threading.Thread(target=send)  # waits: the one socket is in use
    second.start()
    time.sleep(0.05)
    transport.close()
    first.join(5)
    second.join(5)

    assert not first.is_alive() and not second.is_alive()
    assert 200 in results
    assert any(isinstance(result, TransportClosed) for result in results)
    assert slow.closed  # given back after close: closed, not pooled


# --- in the poster ---------------------------------------------------------------------------------------------------
ENDPOINT = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"


@pytest.mark.parametrize(
    "failure",
    [
        FakeSocket(b"not http\r\n\r\n"),
        FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"),
        FakeSocket(),
        FakeSocket(TimeoutError("timed out")),
        FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)),
    ],
    ids=["malformed", "truncated", "no-answer", "timeout", "too-large"],
)
def test_the_poster_retries_what_the_transport_raises_as_a_failed_attempt(failure: FakeSocket) -> None:
    sleeps: list[float] = []
    signer = CachedKeySigner(Credentials("AK", "SK"), "eu-west-1", host_header(ENDPOINT))
    transport = _transport(Sockets(failure, FakeSocket(OK)), ENDPOINT)
    poster = SignedConnectionsPoster(ENDPOINT, signer, transport, Backoff(attempts=3), sleeps.append, lambda: 0.5)

    poster.post("R1kmxc2VNjMCFIA=", b"{}")

    assert len(sleeps) == 1
    assert failure.closed


def test_from_endpoint_builds_the_keep_alive_transport_by_default_and_urllib3_on_request() -> None:
    default = SignedConnectionsPoster.from_endpoint(ENDPOINT, max_connections=64)
    library = SignedConnectionsPoster.from_endpoint(ENDPOINT, max_connections=16, transport="urllib3")
    try:
        assert isinstance(default.transport, KeepAliveTransport)
        assert default.transport.pool.maxsize == 64
        assert isinstance(library.transport, Urllib3Transport)
        assert library.transport.pool.pool.maxsize == 16  # type: ignore[union-attr]
    finally:
        default.close()
        library.close()
    with pytest.raises(ValueError, match="transport"):
        SignedConnectionsPoster.from_endpoint(ENDPOINT, transport="requests")  # type: ignore[arg-type]


def test_https_verifies_the_chain_and_the_host_name_on_tls_1_2_or_later() -> None:
    import ssl

    transport = KeepAliveTransport(ENDPOINT, 2)
    plain = KeepAliveTransport("http://127.0.0.1:3112/local", 2)

    assert transport.tls is not None
    assert transport.tls.verify_mode == ssl.CERT_REQUIRED
    assert transport.tls.check_hostname is True
    assert transport.tls.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert transport.tls.cert_store_stats()["x509_ca"] > 50  # botocore's bundle
    assert (transport.host, transport.port) == ("abc123.execute-api.eu-west-1.amazonaws.com", 443)
    assert plain.tls is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com", "http:///path"])
def test_only_an_http_or_https_url_with_a_host(url: str) -> None:
    with pytest.raises(ValueError):
        KeepAliveTransport(url, 1)


def test_maxsize_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        KeepAliveTransport("http://127.0.0.1:1/", 0)


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(threading.enumerate()) - before
