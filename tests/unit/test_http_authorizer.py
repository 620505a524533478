"""The HTTP API Lambda authorizer of ``iii-stream package`` (functions/iii_stream/http_authorizer.py): the auth
function gets from an authorizer event what it gets from the local HTTP server for the same request, and its answer
means the same (infra/local/http_events.py: ``auth_input``, ``authorizer_context``)."""

from __future__ import annotations

import doctest
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from iii_stream import http_authorizer
from iii_stream.app import App
from iii_stream.http_authorizer import auth_input, authorizer, authorizer_for, simple_response
from iii_stream.infra.local.http_events import HttpRequest, authorizer_context
from iii_stream.infra.local.http_events import auth_input as local_auth_input


def aws_event(request: HttpRequest, extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The authorizer event HTTP API sends for a request (payload 2.0, REQUEST), written from AWS's documentation
    rather than from the local server's code: header names lower-cased, repeats joined with commas, cookies apart,
    the path decoded, repeated query keys joined with commas in queryStringParameters."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        name = name.lower()
        if name == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        else:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    headers.update(extra_headers or {})
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    path = unquote(request.raw_path) or "/"
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:abcdef123/$default/{request.method}{path}",
        "identitySource": None,
        "routeKey": f"{request.method} {path}",
        "rawPath": path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef123",
            "domainName": "abcdef123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef123",
            "http": {
                "method": request.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": "id",
            "routeKey": f"{request.method} {path}",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    return event


REQUESTS = [
    HttpRequest("GET", "/me", "", [], b"", "10.0.0.1"),
    HttpRequest(
        "GET",
        "/me/caf%C3%A9",
        "token=alice&tag=a&tag=b&=dropped&blank=",
        [("Authorization", "Bearer x"), ("Cookie", "session=abc; theme=dark"), ("X-Multi", "1"), ("X-Multi", "2")],
        b"",
        "10.1.2.3",
    ),
    HttpRequest("POST", "/files/a%2Fb/c", "q=1%2C2&q=3", [("Cookie", "a=1"), ("Cookie", "b=2")], b"x", "2001:db8::1"),
    HttpRequest("DELETE", "/", "only", [("X-Empty", ""), ("Sec-WebSocket-Protocol", "Authorization, bob")]),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_the_auth_input_is_the_local_servers(request_: HttpRequest) -> None:
    assert auth_input(aws_event(request_)) == local_auth_input(request_)


def test_a_documented_event_maps_field_by_field() -> None:
    event = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request",
        "identitySource": ["user1", "123"],
        "routeKey": "$default",
        "rawPath": "/my/path",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
        "cookies": ["cookie1", "cookie2"],
        "headers": {"header1": "value1", "Header2": "value2"},
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
        "requestContext": {"http": {"method": "POST", "path": "/my/path", "sourceIp": "198.51.100.7"}},
        "pathParameters": {"parameter1": "value1"},
        "stageVariables": {"stageVariable1": "value1"},
    }
    assert auth_input(event) == {
        "headers": {"header1": "value1", "header2": "value2", "cookie": "cookie1; cookie2"},
        "path": "/my/path",
        "query_params": {"parameter1": ["value1", "value2"], "parameter2": ["value"]},
        "addr": "198.51.100.7:0",
    }


def test_the_headers_api_gateway_adds_reach_the_auth_function() -> None:
    request = REQUESTS[1]
    forwarded = {"x-forwarded-for": "10.1.2.3", "x-forwarded-proto": "https", "x-amzn-trace-id": "Root=1-abc"}
    mapped = auth_input(aws_event(request, forwarded))
    assert mapped["headers"] == {**local_auth_input(request)["headers"], **forwarded}


def test_without_raw_fields_it_falls_back() -> None:
    event = {"queryStringParameters": {"a": "1,2"}, "requestContext": {"http": {"path": "/p", "sourceIp": "1.2.3.4"}}}
    assert auth_input(event) == {"headers": {}, "path": "/p", "query_params": {"a": ["1,2"]}, "addr": "1.2.3.4:0"}
    assert auth_input({}) == {"headers": {}, "path": "/", "query_params": {}, "addr": ":0"}


@pytest.mark.parametrize(
    "answer",
    [
        {"context": {"user": "alice", "roles": ["a"], "n": 1}},
        {"context": None},
        {},
        {"unauthorized": False, "context": {"a": 1}},
        {"unauthorized": "yes", "context": {"a": 1}},
        {"unauthorized": True},
        {"unauthorized": True, "context": {"a": 1}},
        {"context": "alice"},
        {"context": ["alice"]},
        None,
        "yes",
        [{"context": {}}],
        True,
    ],
)
def test_the_answer_means_what_it_means_locally(answer: Any) -> None:
    try:
        local: Any = authorizer_context(answer)
    except ValueError as exc:
        with pytest.raises(ValueError) as aws:  # API Gateway answers 500, as the local server does
            simple_response(answer)
        assert str(aws.value) == str(exc)
        return
    expected = {"isAuthorized": False} if local is None else {"isAuthorized": True, "context": local}
    assert simple_response(answer) == expected


def test_the_handler_calls_the_auth_function_with_the_lambda_context() -> None:
    seen: list[tuple[Any, Any]] = []

    def auth(event: Any, context: Any) -> Any:
        seen.append((event, context))
        return {"context": {"user": event["query_params"]["token"][0]}}

    event = aws_event(HttpRequest("GET", "/me", "token=alice", [], b"", "10.0.0.9"))
    assert authorizer(auth)(event, "ctx") == {"isAuthorized": True, "context": {"user": "alice"}}
    assert seen == [(auth_input(event), "ctx")]


def test_a_failing_auth_function_fails_the_authorizer() -> None:
    def auth(event: Any, context: Any) -> Any:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError, match="down"):
        authorizer(auth)(aws_event(REQUESTS[0]), None)


def test_the_apps_auth_function_is_the_authorizer() -> None:
    app = App()

    @app.auth("a::auth")
    def auth(event: Any, context: Any) -> Any:
        return {"unauthorized": True}

    assert authorizer_for(app)(aws_event(REQUESTS[0]), None) == {"isAuthorized": False}
    with pytest.raises(ValueError, match="no auth function"):
        authorizer_for(App())


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(http_authorizer).failed == 0
