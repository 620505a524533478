"""Property: any ``$connect`` (odd headers, odd query strings, any auth answer) is accepted or refused by the rules.

The rules (README, Realtime delivery): without an auth function every socket is accepted; ``{"unauthorized":
true}`` refuses with 401; a failing auth function or a result that is not an object refuses, unless failing
open; otherwise the socket is accepted with the result's ``context``. An accepted socket that offered
``Sec-WebSocket-Protocol`` gets ``Authorization`` back if offered, else the first offered value. The auth
function always gets ``{headers, path, query_params, addr}``: lower-case header names, query values as lists.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.common import CaseInsensitiveDict
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.adapters.lambda_invoker import LambdaInvoker
from iii_stream.core.connect import AuthPolicy, ConnectRequest, ConnectService
from iii_stream.core.errors import FunctionFailedError
from iii_stream.core.ports import Connection

from tests.fakes import FakeInvoker, FixedClock, MemoryConnectionStore

BUDGET = settings(max_examples=500, deadline=None, derandomize=True)
AUTH = "auth-fn"
IP = "203.0.113.7"
PROTOCOL = "sec-websocket-protocol"

any_text = st.text(st.characters(exclude_categories=()), max_size=20)
huge_text = st.integers(1_000, 20_000).map(lambda n: "x" * n)
subprotocols = st.lists(
    st.one_of(
        st.sampled_from(["Authorization", "authorization", "Authorization ", " tok", "", " ", "chat", "a b", "é", ";"]),
        any_text,
    ),
    max_size=5,
).flatmap(lambda parts: st.sampled_from([",".join(parts), ", ".join(parts), " , ".join(parts)]))
header_names = st.one_of(
    st.sampled_from(
        ["Sec-WebSocket-Protocol", PROTOCOL, "SEC-WEBSOCKET-PROTOCOL", "Host", "host", "User-Agent", "X-Ünïcode", ""]
    ),
    any_text,
)
header_values = st.one_of(subprotocols, any_text, huge_text, st.just(""))
headers = st.one_of(
    st.dictionaries(header_names, header_values, max_size=6),
    st.dictionaries(header_names, header_values, max_size=6).map(CaseInsensitiveDict),
)
query = st.dictionaries(
    st.one_of(st.sampled_from(["token", "", "a", "é", "a[]", "%00"]), any_text, huge_text),
    st.lists(st.one_of(st.just(""), any_text, huge_text), max_size=4),
    max_size=5,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
# What the auth function does: None (no auth function), or one of these.
answers = st.one_of(
    st.none(),
    st.builds(lambda context: ("object", {"context": context}), json_values),
    st.builds(lambda value: ("object", {"unauthorized": value}), st.sampled_from([True, False, "true", 1, None])),
    st.builds(lambda result: ("object", result), st.dictionaries(any_text, json_values, max_size=3)),
    st.builds(
        lambda result: ("not-object", result), st.one_of(st.none(), st.lists(json_values), any_text, st.integers())
    ),
    st.just(("raises", None)),
)


def _offered(headers: Mapping[str, str]) -> list[str]:
    value = next((v for k, v in headers.items() if k.lower() == PROTOCOL), "")
    return [part.strip() for part in value.split(",") if part.strip()]


def _expected_echo(headers: Mapping[str, str]) -> dict[str, str]:
    offered = _offered(headers)
    if not offered:
        return {}
    return {"Sec-WebSocket-Protocol": "Authorization" if "Authorization" in offered else offered[0]}


def _expected_outcome(answer: tuple[str, Any] | None, fail_open: bool) -> tuple[int, Any]:
    """(status, stored context) by the documented rules."""
    if answer is None:
        return 200, None
    kind, result = answer
    if kind != "object":
        return (200, None) if fail_open else (401, None)
    if result.get("unauthorized") is True:
        return 401, None
    return 200, result.get("context")


def _auth(answer: tuple[str, Any], seen: list[Any]) -> Callable[[Any], Any]:
    def auth(payload: Any) -> Any:
        seen.append(payload)
        json.dumps(payload)  # what the Lambda invoker sends: it must be JSON
        if answer[0] == "raises":
            raise RuntimeError("auth is down")
        return answer[1]

    return auth


@BUDGET
@given(
    headers=headers,
    query=query,
    answer=answers,
    fail_open=st.booleans(),
    connected_at=st.one_of(st.none(), st.integers(1, 2**53)),
)
def test_every_connect_is_accepted_or_refused_by_the_documented_rules(
    headers: Mapping[str, str],
    query: dict[str, list[str]],
    answer: tuple[str, Any] | None,
    fail_open: bool,
    connected_at: int | None,
) -> None:
    store, seen = MemoryConnectionStore(), []
    invoker = FakeInvoker({AUTH: _auth(answer, seen)}) if answer else None
    service = ConnectService(store, invoker, FixedClock(), AuthPolicy(AUTH if answer else None, fail_open))
    request = ConnectRequest("conn-1", headers, query, IP, connected_at=connected_at)

    response = service.connect(request)

    status, context = _expected_outcome(answer, fail_open)
    assert response.status_code == status
    if status == 200:
        assert response.headers == _expected_echo(headers)
        assert response.to_lambda() == {
            "statusCode": 200,
            **({"headers": response.headers} if response.headers else {}),
        }
        assert store.connections == {"conn-1": Connection("conn-1", connected_at or FixedClock().now_ms(), context)}
    else:
        assert response.to_lambda() == {"statusCode": 401}
        assert store.connections == {}
    if answer is not None:
        [payload] = seen
        assert payload == {
            "headers": {name.lower(): value for name, value in headers.items()},
            "path": "/",
            "query_params": {key: list(values) for key, values in query.items() if key},
            "addr": f"{IP}:0",
        }
        assert all(isinstance(values, list) for values in payload["query_params"].values())


@BUDGET
@given(headers=headers)
def test_the_echo_is_always_one_of_the_offered_values(headers: Mapping[str, str]) -> None:
    response = ConnectService(MemoryConnectionStore(), None, FixedClock(), AuthPolicy()).connect(
        ConnectRequest("conn-1", headers, {}, IP)
    )

    echoed = response.headers.get("Sec-WebSocket-Protocol")
    assert (echoed is None) == (not _offered(headers))
    assert echoed is None or echoed in _offered(headers)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param({}, {}, id="nothing"),
        pytest.param({"Sec-WebSocket-Protocol": ""}, {"": [""]}, id="empty-values-and-key"),
        pytest.param({"Sec-WebSocket-Protocol": ",,, ,"}, {"a": []}, id="only-commas"),
        pytest.param({"Sec-WebSocket-Protocol": "x" * 100_000}, {"token": ["t" * 100_000]}, id="huge"),
        pytest.param({"SEC-websocket-PROTOCOL": "tok, Authorization"}, {"a": ["1", "1", ""]}, id="odd-case"),
    ],
)
def test_fixed_odd_connects(headers: dict[str, str], query: dict[str, list[str]]) -> None:
    seen: list[Any] = []
    service = ConnectService(
        MemoryConnectionStore(), FakeInvoker({AUTH: _auth(("object", {}), seen)}), FixedClock(), AuthPolicy(AUTH)
    )

    response = service.connect(ConnectRequest("conn-1", headers, query, IP))

    assert response.status_code == 200
    assert response.headers == _expected_echo(headers)
    assert set(seen[0]) == {"headers", "path", "query_params", "addr"}


class _AnswerClient:
    """A Lambda client that answers every invoke with these bytes."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def invoke(self, **_: Any) -> dict[str, Any]:
        return {"StatusCode": 200, "Payload": io.BytesIO(self._body)}


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b"not json", b'{"context": ' + b"9" * 5_000 + b"}"],
    ids=["100000-deep", "not-json", "5000-digits"],
)
def test_an_auth_answer_python_cannot_read_is_a_failed_function(body: bytes) -> None:
    # Regression: an answer nested deeper than Python's recursion limit raised RecursionError, not
    # FunctionFailedError, so $connect failed (a 502 to the client) instead of refusing with 401.
    with pytest.raises(FunctionFailedError):
        LambdaInvoker(_AnswerClient(body)).invoke(AUTH, {})
    service = ConnectService(
        MemoryConnectionStore(), LambdaInvoker(_AnswerClient(body)), FixedClock(), AuthPolicy(AUTH)
    )
    assert service.connect(ConnectRequest("conn-1", {}, {}, IP)).status_code == 401
