"""``$connect``: the auth function decides (fail-closed unless told otherwise), the subprotocol is echoed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from iii_stream.core.connect import AuthPolicy, ConnectRequest, ConnectService
from iii_stream.core.ports import Connection

from tests.fakes import FakeInvoker, FixedClock, MemoryConnectionStore

AUTH = "auth-fn"


def _request(headers: dict[str, str] | None = None, query_params: dict[str, list[str]] | None = None) -> ConnectRequest:
    return ConnectRequest("conn-1", headers or {}, query_params or {}, "203.0.113.7")


def _service(
    store: MemoryConnectionStore, auth: Callable[[Any], Any] | None = None, fail_open: bool = False
) -> ConnectService:
    invoker = FakeInvoker({AUTH: auth}) if auth else None
    return ConnectService(store, invoker, FixedClock(), AuthPolicy(AUTH if auth else None, fail_open))


def _raise(payload: Any) -> Any:
    raise RuntimeError("auth is down")


def _recording(seen: list[Any], result: Any) -> Callable[[Any], Any]:
    def auth(payload: Any) -> Any:
        seen.append(payload)
        return result

    return auth


def test_without_an_auth_function_every_socket_is_accepted_with_no_context() -> None:
    store = MemoryConnectionStore()

    response = _service(store).connect(_request())

    assert response.status_code == 200
    assert response.to_lambda() == {"statusCode": 200}
    assert store.connections == {"conn-1": Connection("conn-1", FixedClock().now_ms(), None)}


def test_the_context_the_auth_function_returns_is_saved() -> None:
    store = MemoryConnectionStore()
    context = {"user": "u1", "roles": ["admin"]}

    response = _service(store, lambda payload: {"context": context}).connect(_request())

    assert response.status_code == 200
    saved = store.get_connection("conn-1")
    assert saved is not None
    assert saved.context == context


def test_an_object_without_context_is_accepted_with_null_context() -> None:
    store = MemoryConnectionStore()

    assert _service(store, lambda payload: {}).connect(_request()).status_code == 200
    saved = store.get_connection("conn-1")
    assert saved is not None
    assert saved.context is None


@pytest.mark.parametrize("fail_open", [False, True])
def test_unauthorized_true_refuses_the_socket_even_when_failing_open(fail_open: bool) -> None:
    store = MemoryConnectionStore()
    service = _service(store, lambda payload: {"unauthorized": True, "context": {"u": 1}}, fail_open)

    response = service.connect(_request())

    assert response.status_code == 401
    assert response.to_lambda() == {"statusCode": 401}
    assert store.connections == {}


@pytest.mark.parametrize("value", [False, "true", 1, None])
def test_only_the_boolean_true_refuses(value: Any) -> None:
    store = MemoryConnectionStore()

    response = _service(store, lambda payload: {"unauthorized": value, "context": "c"}).connect(_request())

    assert response.status_code == 200
    assert store.connections["conn-1"].context == "c"


def test_a_failing_auth_function_refuses_the_socket() -> None:
    store = MemoryConnectionStore()

    response = _service(store, _raise).connect(_request(headers={"Sec-WebSocket-Protocol": "Authorization, tok"}))

    assert response.status_code == 401
    assert response.headers == {}
    assert store.connections == {}


def test_a_failing_auth_function_accepts_with_null_context_when_failing_open() -> None:
    store = MemoryConnectionStore()

    response = _service(store, _raise, fail_open=True).connect(_request())

    assert response.status_code == 200
    assert store.connections == {"conn-1": Connection("conn-1", FixedClock().now_ms(), None)}


@pytest.mark.parametrize("result", [None, [], ["context"], "ok", 42, True])
def test_a_result_that_is_not_an_object_refuses_the_socket(result: Any) -> None:
    store = MemoryConnectionStore()

    assert _service(store, lambda payload: result).connect(_request()).status_code == 401
    assert store.connections == {}


@pytest.mark.parametrize("result", [None, [], "ok", 42])
def test_a_result_that_is_not_an_object_is_accepted_with_null_context_when_failing_open(result: Any) -> None:
    store = MemoryConnectionStore()

    assert _service(store, lambda payload: result, fail_open=True).connect(_request()).status_code == 200
    assert store.connections["conn-1"].context is None


def test_the_auth_function_gets_the_originals_input_shape() -> None:
    store = MemoryConnectionStore()
    seen: list[Any] = []
    service = _service(store, _recording(seen, {"context": None}))
    headers = {"Sec-WebSocket-Protocol": "Authorization, tok", "X-Custom-Header": "v", "host": "example.com"}
    query = {"token": ["abc"], "a": ["1", "2"], "c": [""]}

    service.connect(_request(headers=headers, query_params=query))

    assert len(seen) == 1
    payload = seen[0]
    assert set(payload) == {"headers", "path", "query_params", "addr"}
    assert payload["headers"] == {
        "sec-websocket-protocol": "Authorization, tok",
        "x-custom-header": "v",
        "host": "example.com",
    }
    assert payload["path"] == "/"
    assert payload["query_params"] == {"token": ["abc"], "a": ["1", "2"], "c": [""]}
    assert isinstance(payload["addr"], str)
    assert payload["addr"].startswith("203.0.113.7:")


def test_the_auth_function_gets_empty_maps_when_nothing_is_sent() -> None:
    seen: list[Any] = []
    service = _service(MemoryConnectionStore(), _recording(seen, {}))

    service.connect(_request())

    assert seen[0]["headers"] == {}
    assert seen[0]["query_params"] == {}


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [
        ("Authorization, tok", "Authorization"),
        ("Authorization,tok", "Authorization"),
        ("tok, Authorization", "Authorization"),
        ("chat, v2", "chat"),
        ("chat", "chat"),
    ],
)
def test_an_offered_subprotocol_is_echoed(offered: str, echoed: str) -> None:
    response = _service(MemoryConnectionStore()).connect(_request(headers={"Sec-WebSocket-Protocol": offered}))

    assert response.status_code == 200
    assert response.to_lambda() == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": echoed}}


@pytest.mark.parametrize("name", ["sec-websocket-protocol", "SEC-WEBSOCKET-PROTOCOL", "Sec-Websocket-Protocol"])
def test_the_subprotocol_header_name_is_matched_case_insensitively(name: str) -> None:
    response = _service(MemoryConnectionStore()).connect(_request(headers={name: "Authorization, tok"}))

    assert response.headers == {"Sec-WebSocket-Protocol": "Authorization"}


@pytest.mark.parametrize("headers", [{}, {"Sec-WebSocket-Protocol": ""}, {"Sec-WebSocket-Protocol": " , "}])
def test_no_offered_subprotocol_means_no_response_headers(headers: dict[str, str]) -> None:
    response = _service(MemoryConnectionStore()).connect(_request(headers=headers))

    assert response.headers == {}
    assert response.to_lambda() == {"statusCode": 200}


def test_the_subprotocol_is_echoed_when_the_auth_function_accepts() -> None:
    service = _service(MemoryConnectionStore(), lambda payload: {"context": {"u": 1}})

    response = service.connect(_request(headers={"Sec-WebSocket-Protocol": "Authorization,tok"}))

    assert response.to_lambda() == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "Authorization"}}
