"""HTTP routes as API Gateway HTTP API (payload format 2.0) serves them: ``App.http`` declarations, route matching,
the Lambda event and the mapping of a function's result (the pure half of the local HTTP API)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import pytest
from iii_stream.app import App, DeclaredRoute, lambda_name
from iii_stream.core.connect import ConnectRequest
from iii_stream.infra.local.http_events import (
    HttpRequest,
    MalformedResponse,
    RouteMatch,
    RouteTable,
    auth_input,
    authorizer_context,
    build_event,
    forbidden,
    internal_error,
    is_preflight,
    is_text,
    map_response,
    not_found,
    preflight_answer,
    request_time,
    service_unavailable,
    too_large,
)


def handler(event: Any, context: Any) -> Any:
    return None


# --- App.http ---------------------------------------------------------------------------------------------------


def test_http_declares_a_route_and_registers_its_function_under_a_derived_id() -> None:
    app = App()

    @app.http("POST", "/todos")
    def create(event: Any, context: Any) -> Any:
        return {}

    assert app.routes == [DeclaredRoute("POST", "/todos", "http::POST /todos", False)]
    assert app.functions["http::POST /todos"] is create
    assert lambda_name("http::POST /todos") == "http--POST--todos"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", lambda_name("http::GET /files/{path+}"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.routes[0].auth = True  # type: ignore[misc]


def test_http_takes_a_method_in_any_case_an_explicit_function_id_and_auth() -> None:
    app = App()
    app.http("any", "/{proxy+}", auth=True, function_id="api::all")(handler)
    assert app.routes == [DeclaredRoute("ANY", "/{proxy+}", "api::all", True)]
    assert app.routes[0].route_key == "ANY /{proxy+}"
    assert app.auth_function_id is None  # auth=True before (or without) @app.auth is allowed


@pytest.mark.parametrize("method", ["FETCH", "", "CONNECT", "TRACE", "$default"])
def test_http_refuses_an_unknown_method(method: str) -> None:
    with pytest.raises(ValueError, match="HTTP method"):
        App().http(method, "/a")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("todos", "must start with '/'"),
        ("", "must start with '/'"),
        ("/todos/", "empty segment"),
        ("//todos", "empty segment"),
        ("/a//b", "empty segment"),
        ("/{rest+}/more", "must be the last segment"),
        ("/file-{id}", "must be literal"),
        ("/{id", "must be literal"),
        ("/{}", "must be literal"),
        ("/{a}/{a}", "twice"),
        ("/a b", "cannot hold"),
        ("/a?b", "cannot hold"),
    ],
)
def test_http_refuses_a_malformed_path_template(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        App().http("GET", path)


def test_http_refuses_a_route_declared_twice_even_with_other_parameter_names() -> None:
    app = App()
    app.http("GET", "/todos/{id}")(handler)
    with pytest.raises(ValueError, match=r"conflicts with GET /todos/\{id\}"):
        app.http("GET", "/todos/{id}")
    with pytest.raises(ValueError, match="conflicts"):
        app.http("get", "/todos/{key}", function_id="other")
    app.http("ANY", "/todos/{id}", function_id="any")(handler)  # another method: another route
    app.http("PUT", "/todos/{id}")(handler)
    app.http("GET", "/todos/{id+}", function_id="greedy")(handler)  # a greedy template is another path
    assert [route.route_key for route in app.routes] == [
        "GET /todos/{id}",
        "ANY /todos/{id}",
        "PUT /todos/{id}",
        "GET /todos/{id+}",
    ]


def test_http_refuses_a_function_id_taken_by_another_handler_but_shares_one_handler() -> None:
    app = App()
    app.function("todos::list")(handler)
    with pytest.raises(ValueError, match="already declared with another handler"):
        app.http("GET", "/todos", function_id="todos::list")(lambda event, context: None)
    # The same handler behind two routes (stacked decorators) is one function.
    app.http("GET", "/todos", function_id="todos::list")(handler)
    app.http("GET", "/lists", function_id="todos::list")(handler)
    assert [route.function_id for route in app.routes] == ["todos::list", "todos::list"]
    assert list(app.functions) == ["todos::list"]


def test_http_refuses_two_functions_with_the_same_lambda_name() -> None:
    app = App()
    app.http("GET", "/a/b")(handler)
    with pytest.raises(ValueError, match="share the Lambda name 'http--GET--a-b'"):
        app.http("GET", "/a-b")(lambda event, context: None)
    app.http("GET", "/a-b", function_id="dash")(lambda event, context: None)


def test_a_failed_declaration_leaves_the_app_unchanged() -> None:
    app = App()
    with pytest.raises(ValueError):
        app.http("GET", "no-slash")
    assert app.routes == [] and app.functions == {}


# --- route matching ---------------------------------------------------------------------------------------------


def table(*keys: str) -> RouteTable:
    routes = []
    for key in keys:
        method, path = key.split(" ", 1)
        routes.append(DeclaredRoute(method, path, key))
    return RouteTable(routes)


def chosen(routes: RouteTable, method: str, path: str) -> str | None:
    match = routes.match(method, path)
    return match.route.function_id if match else None


def test_literal_segments_beat_parameters_which_beat_a_greedy_parameter() -> None:
    routes = table("GET /pets/{id}", "GET /pets/dog", "GET /{proxy+}", "GET /pets/{proxy+}", "GET /pets")
    assert chosen(routes, "GET", "/pets/dog") == "GET /pets/dog"
    assert chosen(routes, "GET", "/pets/cat") == "GET /pets/{id}"
    assert chosen(routes, "GET", "/pets/cat/toys") == "GET /pets/{proxy+}"
    assert chosen(routes, "GET", "/pets") == "GET /pets"
    assert chosen(routes, "GET", "/toys/ball") == "GET /{proxy+}"


def test_specificity_is_decided_from_the_left() -> None:
    routes = table("GET /{a}/b/c", "GET /a/{b}/{c}")
    assert chosen(routes, "GET", "/a/b/c") == "GET /a/{b}/{c}"


def test_the_very_method_beats_any_and_any_matches_every_method() -> None:
    routes = table("ANY /todos", "GET /todos", "ANY /{proxy+}")
    assert chosen(routes, "GET", "/todos") == "GET /todos"
    assert chosen(routes, "DELETE", "/todos") == "ANY /todos"
    assert chosen(routes, "post", "/other") == "ANY /{proxy+}"
    # A more specific path wins over the very method.
    assert chosen(table("GET /{x}", "ANY /todos"), "GET", "/todos") == "ANY /todos"


def test_no_route_for_the_method_or_the_path_is_no_match() -> None:
    routes = table("GET /todos/{id}", "POST /todos")
    assert routes.match("DELETE", "/todos") is None
    assert routes.match("HEAD", "/todos/1") is None  # HEAD is a method of its own
    assert routes.match("GET", "/todos") is None
    assert routes.match("GET", "/todos/1/more") is None
    assert routes.match("GET", "/todos/") is None  # a parameter never matches an empty segment
    assert routes.match("GET", "/Todos/1") is None  # case-sensitive


def test_a_greedy_parameter_takes_one_or_more_segments_never_none() -> None:
    routes = table("GET /files/{path+}")
    assert routes.match("GET", "/files") is None
    assert routes.match("GET", "/files/") is None
    assert routes.match("GET", "/files/a/b/c.txt") == RouteMatch(routes.routes[0], {"path": "a/b/c.txt"})
    assert chosen(table("GET /{proxy+}"), "GET", "/") is None


def test_the_root_route_and_percent_decoded_parameters() -> None:
    routes = table("GET /", "GET /users/{name}/files/{rest+}", "GET /caf\u00e9")
    assert chosen(routes, "GET", "/") == "GET /"
    match = routes.match("GET", "/users/a%20b%2Fc/files/x%2Fy/z%3F")
    assert match is not None
    # %2F stays inside its parameter: the path is split before it is decoded.
    assert match.path_parameters == {"name": "a b/c", "rest": "x/y/z?"}
    assert chosen(routes, "GET", "/caf%C3%A9") == "GET /caf\u00e9"


# --- the event --------------------------------------------------------------------------------------------------


def make_event(request: HttpRequest, key: str = "POST /todos/{id}", **kwargs: Any) -> dict[str, Any]:
    routes = table(key)
    match = routes.match(request.method, request.raw_path)
    assert match is not None
    options: dict[str, Any] = {"request_id": "Rid0Rid0Rid0Rid=", "now_ms": 1583348638390}
    options["domain_name"] = "127.0.0.1:3000"
    options.update(kwargs)
    return build_event(request, match, **options)


def test_the_event_has_the_format_2_0_shape() -> None:
    request = HttpRequest(
        "POST",
        "/todos/milk%20bread",
        "a=1&a=2&b=&c=x%2By",
        [
            ("Content-Type", "application/json"),
            ("User-Agent", "curl/8"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "session=abc; theme=dark"),
            ("Cookie", "late=1"),
            ("Connection", "keep-alive"),
        ],
        b'{"title": "milk"}',
        "10.0.0.7",
    )
    event = make_event(request, server_port=3000)
    assert event == {
        "version": "2.0",
        "routeKey": "POST /todos/{id}",
        "rawPath": "/todos/milk bread",
        "rawQueryString": "a=1&a=2&b=&c=x%2By",
        "cookies": ["session=abc", "theme=dark", "late=1"],
        "headers": {
            "content-type": "application/json",
            "user-agent": "curl/8",
            "x-multi": "one,two",
            "x-forwarded-for": "10.0.0.7",
            "x-forwarded-port": "3000",
            "x-forwarded-proto": "http",
        },
        "queryStringParameters": {"a": "1,2", "b": "", "c": "x+y"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1:3000",
            "domainPrefix": "127",
            "http": {
                "method": "POST",
                "path": "/todos/milk bread",
                "protocol": "HTTP/1.1",
                "sourceIp": "10.0.0.7",
                "userAgent": "curl/8",
            },
            "requestId": "Rid0Rid0Rid0Rid=",
            "routeKey": "POST /todos/{id}",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "body": '{"title": "milk"}',
        "pathParameters": {"id": "milk bread"},
        "isBase64Encoded": False,
    }
    json.dumps(event)  # all of it is JSON, as a Lambda event must be


def test_optional_fields_are_left_out_when_empty() -> None:
    event = make_event(HttpRequest("GET", "/todos", "", [("Host", "localhost:3000")]), key="GET /todos")
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in event
    assert event["isBase64Encoded"] is False
    assert event["rawQueryString"] == ""
    assert event["requestContext"]["http"]["userAgent"] == ""
    assert "authorizer" not in event["requestContext"]


def test_an_existing_x_forwarded_for_gets_the_client_appended() -> None:
    event = make_event(HttpRequest("GET", "/t", "", [("X-Forwarded-For", "1.2.3.4")], b"", "10.0.0.1"), key="GET /t")
    assert event["headers"]["x-forwarded-for"] == "1.2.3.4, 10.0.0.1"


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Text/HTML", True),
        ("text/plain", True),
        ("application/xml", True),
        ("application/javascript", True),
        (None, False),
        ("application/octet-stream", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("image/png", False),
        ("application/vnd.api+json", False),
    ],
)
def test_which_bodies_are_text_and_which_base64(content_type: str | None, text: bool) -> None:
    assert is_text(content_type) is text
    body = b"a=1&b=caf\xc3\xa9"
    headers = [("content-type", content_type)] if content_type else []
    event = make_event(HttpRequest("POST", "/todos/1", "", headers, body))
    assert event["isBase64Encoded"] is not text
    assert event["body"] == (body.decode() if text else base64.b64encode(body).decode())


def test_a_text_type_body_that_is_not_utf8_is_base64() -> None:
    body = b"\xff\xfe\x00binary"
    event = make_event(HttpRequest("POST", "/todos/1", "", [("content-type", "text/plain")], body))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_an_authorized_request_carries_the_context_as_authorizer_lambda() -> None:
    event = make_event(HttpRequest("POST", "/todos/1"), authorizer={"user": "alice", "roles": ["a"]})
    assert event["requestContext"]["authorizer"] == {"lambda": {"user": "alice", "roles": ["a"]}}
    assert make_event(HttpRequest("POST", "/todos/1"), authorizer={})["requestContext"]["authorizer"] == {"lambda": {}}


def test_request_time_is_apache_style_in_utc() -> None:
    assert request_time(1583348638390) == "04/Mar/2020:19:03:58 +0000"
    assert request_time(0) == "01/Jan/1970:00:00:00 +0000"


# --- the answer -------------------------------------------------------------------------------------------------


def test_a_proxy_response_gives_its_status_headers_cookies_and_body() -> None:
    answer = map_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "X-Count": 3, "X-Flag": True, "X-Ratio": 0.5},
            "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
            "body": '{"id": "milk"}',
        }
    )
    assert answer.status == 201
    assert answer.body == b'{"id": "milk"}'
    assert answer.header("content-type") == "application/json"
    assert answer.header("x-count") == "3" and answer.header("x-flag") == "true" and answer.header("x-ratio") == "0.5"
    assert answer.header_values("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_a_base64_proxy_body_is_decoded() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    encoded = base64.b64encode(png).decode()
    answer = map_response(
        {"statusCode": 200, "headers": {"content-type": "image/png"}, "isBase64Encoded": True, "body": encoded}
    )
    assert answer.body == png and answer.header("content-type") == "image/png"


def test_a_proxy_response_without_body_or_content_type() -> None:
    assert map_response({"statusCode": 204}).body == b""
    assert map_response({"statusCode": 204}).header("content-type") is None
    assert map_response({"statusCode": 302, "headers": {"Location": "/x"}, "body": None}).header("location") == "/x"
    # A body and no Content-Type: HTTP API says text/plain.
    assert map_response({"statusCode": 200, "body": "hi"}).header("content-type") == "text/plain; charset=utf-8"


def test_headers_the_server_owns_are_dropped_from_a_proxy_response() -> None:
    answer = map_response(
        {
            "statusCode": 200,
            "headers": {"Content-Length": "999", "Access-Control-Allow-Origin": "https://x", "Connection": "close"},
            "body": "ok",
        }
    )
    assert answer.header("content-length") is None
    assert answer.header("access-control-allow-origin") is None  # the CORS configuration decides
    assert answer.header("connection") is None


@pytest.mark.parametrize(
    "value",
    [
        {"hello": "world"},
        {"message": "no statusCode here", "body": "not a proxy response"},
        [1, "two", None],
        42,
        1.5,
        True,
        None,
        {},
        [],
    ],
)
def test_anything_else_is_a_200_json_answer(value: Any) -> None:
    answer = map_response(value)
    assert answer.status == 200
    assert answer.headers == [("content-type", "application/json")]
    assert json.loads(answer.body) == value


def test_a_bare_string_is_sent_as_it_is() -> None:
    answer = map_response("Hello from Lambda!")
    assert (answer.status, answer.body) == (200, b"Hello from Lambda!")
    assert answer.header("content-type") == "application/json"
    assert map_response("caf\u00e9").body == "caf\u00e9".encode()
    assert map_response('{"already": "json"}').body == b'{"already": "json"}'


def test_the_result_is_taken_as_the_runtime_would_serialize_it() -> None:
    assert json.loads(map_response(("a", 1)).body) == ["a", 1]
    assert map_response({"statusCode": 200, "body": "x", "headers": {"a": "b"}}).status == 200


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ({"statusCode": "200", "body": "x"}, "statusCode"),
        ({"statusCode": 200.0, "body": "x"}, "statusCode"),
        ({"statusCode": True}, "statusCode"),
        ({"statusCode": None}, "statusCode"),
        ({"statusCode": 99}, "statusCode"),
        ({"statusCode": 101}, "statusCode"),
        ({"statusCode": 600}, "statusCode"),
        ({"statusCode": 200, "body": {"a": 1}}, "body is dict"),
        ({"statusCode": 200, "body": 5}, "body is int"),
        ({"statusCode": 200, "headers": ["a"]}, "headers is list"),
        ({"statusCode": 200, "headers": {"a": ["b", "c"]}}, "header 'a'"),
        ({"statusCode": 200, "headers": {"a": None}}, "header 'a'"),
        ({"statusCode": 200, "headers": {"bad name": "x"}}, "header 'bad name'"),
        ({"statusCode": 200, "headers": {"a": "line\r\nbreak"}}, "header 'a'"),
        ({"statusCode": 200, "cookies": "a=1"}, "cookies"),
        ({"statusCode": 200, "cookies": [1]}, "cookies"),
        ({"statusCode": 200, "isBase64Encoded": "yes", "body": "eA=="}, "isBase64Encoded"),
        ({"statusCode": 200, "isBase64Encoded": True, "body": "not base64!"}, "not base64"),
        ({"statusCode": 200, "body": "\ud800"}, "Unicode"),
        ({1, 2}, "not JSON"),
        (float("nan"), "not JSON"),
        (object(), "not JSON"),
        ("\udc80", "Unicode"),
    ],
)
def test_a_malformed_result_is_refused(result: Any, why: str) -> None:
    with pytest.raises(MalformedResponse, match=re.escape(why)):
        map_response(result)


def test_the_gateways_own_answers() -> None:
    assert (not_found().status, not_found().body) == (404, b'{"message":"Not Found"}')
    assert (forbidden().status, forbidden().body) == (403, b'{"message":"Forbidden"}')
    assert (too_large().status, too_large().body) == (413, b'{"message":"Request Entity Too Large"}')
    assert (internal_error().status, internal_error().body) == (500, b'{"message":"Internal Server Error"}')
    assert (service_unavailable().status, service_unavailable().body) == (503, b'{"message":"Service Unavailable"}')
    assert not_found().header("content-type") == "application/json"


# --- auth -------------------------------------------------------------------------------------------------------


def test_the_auth_input_is_built_as_for_connect() -> None:
    request = HttpRequest(
        "GET",
        "/me/caf%C3%A9",
        "token=alice&tag=a&tag=b&=dropped",
        [("Authorization", "Bearer x"), ("Cookie", "session=abc"), ("X-Multi", "1"), ("X-Multi", "2")],
        b"",
        "10.1.2.3",
    )
    expected = ConnectRequest(
        "",
        {"authorization": "Bearer x", "x-multi": "1,2", "cookie": "session=abc"},
        {"token": ["alice"], "tag": ["a", "b"], "": ["dropped"]},
        "10.1.2.3",
        path="/me/caf\u00e9",
    ).auth_input()
    assert auth_input(request) == expected
    assert expected == {
        "headers": {"authorization": "Bearer x", "x-multi": "1,2", "cookie": "session=abc"},
        "path": "/me/caf\u00e9",
        "query_params": {"token": ["alice"], "tag": ["a", "b"]},
        "addr": "10.1.2.3:0",
    }


@pytest.mark.parametrize(
    ("answer", "context"),
    [
        ({"context": {"user": "alice"}}, {"user": "alice"}),
        ({"context": None}, {}),
        ({}, {}),
        ({"unauthorized": False, "context": {"a": 1}}, {"a": 1}),
        ({"unauthorized": True}, None),
        ({"unauthorized": True, "context": {"a": 1}}, None),
    ],
)
def test_the_auth_functions_answer_becomes_the_authorizer_context(answer: Any, context: Any) -> None:
    assert authorizer_context(answer) == context


@pytest.mark.parametrize("answer", [None, "yes", [1], True, {"context": "alice"}, {"context": [1]}])
def test_an_auth_answer_that_is_not_an_object_or_has_a_non_object_context_fails(answer: Any) -> None:
    with pytest.raises(ValueError):
        authorizer_context(answer)


# --- CORS -------------------------------------------------------------------------------------------------------


def test_a_preflight_is_an_options_request_with_origin_and_a_requested_method() -> None:
    preflight = [("Origin", "http://127.0.0.1:8080"), ("Access-Control-Request-Method", "post")]
    assert is_preflight(HttpRequest("OPTIONS", "/any/path", "", preflight))
    assert not is_preflight(HttpRequest("OPTIONS", "/any/path", "", preflight[:1]))
    assert not is_preflight(HttpRequest("OPTIONS", "/any/path", "", preflight[1:]))
    assert not is_preflight(HttpRequest("GET", "/any/path", "", preflight))


def test_the_preflight_answer_allows_any_origin_and_what_was_asked() -> None:
    headers = [
        ("Origin", "http://127.0.0.1:8080"),
        ("Access-Control-Request-Method", "delete"),
        ("Access-Control-Request-Headers", "content-type,authorization"),
    ]
    answer = preflight_answer(HttpRequest("OPTIONS", "/todos/1", "", headers))
    assert answer.status == 204 and answer.body == b""
    assert answer.header("access-control-allow-origin") == "*"
    assert answer.header("access-control-allow-methods") == "DELETE"
    assert answer.header("access-control-allow-headers") == "content-type,authorization"
    bare = preflight_answer(HttpRequest("OPTIONS", "/", "", headers[:2]))
    assert bare.header("access-control-allow-headers") is None
