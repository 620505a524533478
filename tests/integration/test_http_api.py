"""The local HTTP API over real sockets: ``HttpApi`` on a loopback port, requests with ``http.client``.

The routes are declared with ``App.http`` and served in process (``HttpApi.for_app``), as ``iii-stream local`` does.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from iii_stream.app import App
from iii_stream.infra.local.http_api import HttpApi

pytestmark = pytest.mark.integration

TIMEOUT = 1.0  # the integration timeout of the servers under test (HTTP API's is 30 s)
release_slow = threading.Event()


def auth(event: dict[str, Any], context: Any) -> Any:
    token = event["headers"].get("authorization", "")
    if token == "fail":
        raise RuntimeError("the auth function is broken")
    if token.startswith("user "):
        return {"context": {"user": token[5:], "path": event["path"], "query": event["query_params"]}}
    return {"unauthorized": True}


def create(event: dict[str, Any], context: Any) -> Any:
    todo = json.loads(event["body"])
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "location": f"/todos/{todo['id']}"},
        "body": json.dumps({"created": todo, "routeKey": event["routeKey"], "function": context.function_name}),
    }


def echo(event: dict[str, Any], context: Any) -> Any:
    return event  # a plain object: 200 application/json, the event as the body


def echo_fixed(event: dict[str, Any], context: Any) -> Any:
    return {"route": event["routeKey"], "pathParameters": event["pathParameters"]}


def greeting(event: dict[str, Any], context: Any) -> Any:
    return "Hello from Lambda!"


def cookies(event: dict[str, Any], context: Any) -> Any:
    return {"statusCode": 200, "cookies": ["seen=" + "|".join(event.get("cookies", [])), "b=2; HttpOnly"]}


def blob(event: dict[str, Any], context: Any) -> Any:
    data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "isBase64Encoded": True,
        "body": base64.b64encode(bytes(reversed(data))).decode(),
    }


def boom(event: dict[str, Any], context: Any) -> Any:
    raise ValueError("the function failed")


def own_timeout(event: dict[str, Any], context: Any) -> Any:
    raise TimeoutError("a timeout of the function's own")  # a failure (500), not the gateway's timeout


def malformed(event: dict[str, Any], context: Any) -> Any:
    return {"statusCode": "200", "body": "x"}


def slow(event: dict[str, Any], context: Any) -> Any:
    release_slow.wait(TIMEOUT * 5)
    return {"late": True}


def me(event: dict[str, Any], context: Any) -> Any:
    return event["requestContext"]["authorizer"]


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("POST", "/todos", create, False),
    ("ANY", "/echo/{proxy+}", echo, False),
    ("GET", "/echo/fixed/{id}", echo_fixed, False),
    ("GET", "/greeting", greeting, False),
    ("POST", "/cookies", cookies, False),
    ("PUT", "/blobs/{name}", blob, False),
    ("GET", "/boom", boom, False),
    ("GET", "/own-timeout", own_timeout, False),
    ("GET", "/malformed", malformed, False),
    ("GET", "/slow", slow, False),
    ("GET", "/me", me, True),
]


def build_app(with_auth: bool = True) -> App:
    app = App()
    if with_auth:
        app.auth("auth::token")(auth)
    for method, path, handler, needs_auth in ROUTES:
        app.http(method, path, auth=needs_auth)(handler)
    return app


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    api: HttpApi

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        chunked: bool = False,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.api.port, timeout=10)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers or []:
                connection.putheader(name, value)
            if chunked:
                connection.putheader("Transfer-Encoding", "chunked")
            elif body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            if chunked and body is not None:
                for start in range(0, len(body), 65536):
                    piece = body[start : start + 65536]
                    connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                connection.send(b"0\r\n\r\n")
            elif body is not None:
                connection.send(body)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def api() -> Iterator[HttpApi]:
    release_slow.clear()
    server = HttpApi.for_app(build_app(), port=0, timeout_seconds=TIMEOUT, max_body_bytes=1024 * 1024)
    server.start()
    yield server
    release_slow.set()
    server.stop()


@pytest.fixture
def client(api: HttpApi) -> Client:
    return Client(api)


def test_a_json_post_reaches_its_function_and_the_proxy_response_comes_back(client: Client) -> None:
    reply = client.request("POST", "/todos", b'{"id": "milk", "done": false}', [("Content-Type", "application/json")])
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["location"] == "/todos/milk"
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["apigw-requestid"]
    assert reply.json() == {
        "created": {"id": "milk", "done": False},
        "routeKey": "POST /todos",
        "function": "http--POST--todos",
    }


def test_the_event_a_function_gets(client: Client, api: HttpApi) -> None:
    reply = client.request(
        "PATCH",
        "/echo/a/b%20c?tag=x&tag=y&empty=",
        b'{"x": 1}',
        [("Content-Type", "application/json"), ("X-Repeat", "1"), ("X-Repeat", "2"), ("User-Agent", "tests/1")],
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    event = reply.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{proxy+}"
    assert event["rawPath"] == "/echo/a/b c"
    assert event["rawQueryString"] == "tag=x&tag=y&empty="
    assert event["queryStringParameters"] == {"tag": "x,y", "empty": ""}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False
    headers = event["headers"]
    assert headers["x-repeat"] == "1,2"
    assert headers["host"] == f"127.0.0.1:{api.port}"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert all(name == name.lower() for name in headers)
    assert "cookies" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "PATCH",
        "path": "/echo/a/b c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1",
    }
    assert context["routeKey"] == "ANY /echo/{proxy+}" and context["stage"] == "$default"
    assert context["accountId"] == "000000000000" and context["apiId"] == "local"
    assert context["requestId"] == reply.headers["apigw-requestid"]
    assert abs(context["timeEpoch"] - time.time() * 1000) < 60_000
    assert time.strptime(context["time"], "%d/%b/%Y:%H:%M:%S +0000")
    assert "authorizer" not in context


def test_path_parameters_and_the_most_specific_route(client: Client) -> None:
    assert client.request("GET", "/echo/fixed/42").json() == {
        "route": "GET /echo/fixed/{id}",
        "pathParameters": {"id": "42"},
    }
    encoded = client.request("GET", "/echo/fixed/a%2Fb").json()  # %2F stays in its segment
    assert encoded["pathParameters"] == {"id": "a/b"}
    greedy = client.request("GET", "/echo/fixed/42/more").json()
    assert greedy["routeKey"] == "ANY /echo/{proxy+}"
    assert greedy["pathParameters"] == {"proxy": "fixed/42/more"}


def test_cookies_in_and_out(client: Client) -> None:
    reply = client.request("POST", "/cookies", b"", [("Cookie", "session=abc; theme=dark"), ("Cookie", "x=1")])
    assert reply.status == 200
    assert reply.headers.get_all("set-cookie") == ["seen=session=abc|theme=dark|x=1", "b=2; HttpOnly"]
    event = client.request("GET", "/echo/c", None, [("Cookie", "a=1; b=2")]).json()
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]


def test_a_binary_body_goes_in_as_base64_and_a_base64_answer_comes_out_as_bytes(client: Client) -> None:
    data = bytes(range(256)) * 4
    reply = client.request("PUT", "/blobs/x.bin", data, [("Content-Type", "application/octet-stream")])
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.body == bytes(reversed(data))
    event = client.request("POST", "/echo/form", b"a=1&b=2", [("Content-Type", "application/x-www-form-urlencoded")])
    assert event.json()["isBase64Encoded"] is True
    assert base64.b64decode(event.json()["body"]) == b"a=1&b=2"


def test_a_plain_result_is_a_200_json_answer_and_a_string_is_sent_as_is(client: Client) -> None:
    reply = client.request("GET", "/echo/x")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    reply = client.request("GET", "/greeting")
    assert (reply.status, reply.body) == (200, b"Hello from Lambda!")
    assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/boom", "/own-timeout", "/malformed"])
def test_a_failing_function_or_a_malformed_answer_is_a_500(client: Client, path: str) -> None:
    reply = client.request("GET", path)
    assert reply.status == 500
    assert reply.body == b'{"message":"Internal Server Error"}'
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["access-control-allow-origin"] == "*"


def test_a_function_past_the_timeout_is_a_503_and_the_server_goes_on(client: Client) -> None:
    started = time.monotonic()
    reply = client.request("GET", "/slow")
    elapsed = time.monotonic() - started
    assert reply.status == 503
    assert reply.body == b'{"message":"Service Unavailable"}'
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT * 4
    assert client.request("GET", "/greeting").status == 200


def test_no_route_is_a_404(client: Client) -> None:
    for method, path in [("GET", "/nowhere"), ("DELETE", "/todos"), ("GET", "/todos/"), ("GET", "/")]:
        reply = client.request(method, path)
        assert (reply.status, reply.body) == (404, b'{"message":"Not Found"}'), (method, path)
        assert reply.headers["access-control-allow-origin"] == "*"


def test_a_body_over_the_limit_is_a_413(client: Client, api: HttpApi) -> None:
    limit = 1024 * 1024  # the fixture's max_body_bytes
    too_big = b"x" * (limit + 1)
    reply = client.request("POST", "/todos", too_big, [("Content-Type", "application/json")])
    assert (reply.status, reply.body) == (413, b'{"message":"Request Entity Too Large"}')
    chunked = client.request("PUT", "/blobs/big", too_big, [("Content-Type", "application/octet-stream")], chunked=True)
    assert chunked.status == 413
    fits = client.request("PUT", "/blobs/fits", b"y" * limit, [("Content-Type", "application/octet-stream")])
    assert fits.status == 200 and len(fits.body) == limit


def test_the_default_limit_is_http_apis_10_mb() -> None:
    app = App()
    app.http("POST", "/upload")(lambda event, context: {"size": len(base64.b64decode(event.get("body", "")))})
    server = HttpApi.for_app(app, port=0)
    server.start()
    try:
        client = Client(server)
        limit = 10 * 1024 * 1024
        assert client.request("POST", "/upload", b"z" * (limit + 1)).status == 413
        reply = client.request("POST", "/upload", b"z" * limit)
        assert (reply.status, reply.json()) == (200, {"size": limit})
    finally:
        server.stop()


def test_an_auth_route_lets_an_accepted_request_through_with_its_context(client: Client) -> None:
    reply = client.request("GET", "/me?room=1&room=2", None, [("Authorization", "user alice")])
    assert reply.status == 200
    assert reply.json() == {"lambda": {"user": "alice", "path": "/me", "query": {"room": ["1", "2"]}}}


def test_an_auth_route_refuses_with_403_and_a_failing_auth_function_is_a_500(client: Client) -> None:
    refused = client.request("GET", "/me")
    assert (refused.status, refused.body) == (403, b'{"message":"Forbidden"}')
    failing = client.request("GET", "/me", None, [("Authorization", "fail")])
    assert (failing.status, failing.body) == (500, b'{"message":"Internal Server Error"}')


def test_an_auth_route_without_any_auth_function_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iii_stream.local.http")
    server = HttpApi.for_app(build_app(with_auth=False), port=0)
    server.start()
    try:
        assert "no auth function is declared" in caplog.text  # said once, when it starts
        reply = Client(server).request("GET", "/me", None, [("Authorization", "user alice")])
        assert (reply.status, reply.body) == (500, b'{"message":"Internal Server Error"}')
    finally:
        server.stop()


def test_a_cors_preflight_is_answered_for_any_path(client: Client) -> None:
    for path in ["/todos", "/me", "/not/a/route"]:
        reply = client.request(
            "OPTIONS",
            path,
            None,
            [
                ("Origin", "http://127.0.0.1:8080"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type,authorization"),
            ],
        )
        assert reply.status == 204, path
        assert reply.body == b""
        assert reply.headers["access-control-allow-origin"] == "*"
        assert reply.headers["access-control-allow-methods"] == "POST"
        assert reply.headers["access-control-allow-headers"] == "content-type,authorization"
    # An OPTIONS that is no preflight is routed like any request.
    assert client.request("OPTIONS", "/todos").status == 404
    assert client.request("OPTIONS", "/echo/x").json()["requestContext"]["http"]["method"] == "OPTIONS"


def test_a_head_request_gets_the_headers_without_the_body(client: Client) -> None:
    reply = client.request("HEAD", "/echo/x")
    assert reply.status == 200 and reply.body == b""


def test_garbage_on_the_socket_does_not_stop_the_server(client: Client, api: HttpApi) -> None:
    garbage_requests = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\xff" * 100,
        b"POST /todos HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a part",  # then the client leaves
        b"PUT /blobs/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
        b"GET /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ]
    for garbage in garbage_requests:
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as raw:
            raw.sendall(garbage)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(65536):
                pass
    assert client.request("GET", "/greeting").status == 200


def test_one_log_line_per_request(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iii_stream.local.http")
    client.request("GET", "/echo/fixed/7")
    client.request("GET", "/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "iii_stream.local.http" and "->" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].split()[:6] == ["http", "GET", "/echo/fixed/7", "http::GET", "/echo/fixed/{id}", "->"]
    assert lines[0].split()[6] == "200" and float(lines[0].split()[7]) >= 0 and lines[0].endswith(" ms")
    assert lines[1].split()[:6] == ["http", "GET", "/nowhere", "-", "->", "404"]


def test_a_busy_port_is_a_clear_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpApi.for_app(build_app(), port=port)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            server.start()
        server.stop()  # harmless after a failed start


def test_start_binds_at_once_and_stop_frees_the_port() -> None:
    server = HttpApi.for_app(build_app(), port=0)
    url = server.start()
    assert url == f"http://127.0.0.1:{server.port}" and server.port != 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
