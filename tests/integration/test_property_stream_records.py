"""Property: bad DynamoDB Streams records never kill a batch in the real broadcast and dispatch handlers (moto).

A batch mixes good records (changes of items ``good-<n>`` in a group a connection has joined, and that a
``stream`` trigger watches) with records malformed anywhere (the strategy of the unit property). Whatever
the mix, each handler answers (it never raises, which would fail and retry the whole batch), and:

- broadcast reports a suffix of the batch as failed (the first record it could not read or deliver and every
  later one, so Lambda retries them in order, then sets them aside); the good records before that suffix
  reach the connection, in order, once; a good record is never the first failure.
- dispatch reports only records it could not read; every good record runs its trigger, once.

Also here: an item exactly MAX_JSON_DEPTH deep is stored, broadcast, synced and dispatched; and the local
Lambda endpoint answers 1,000- and 100,000-deep ``stream::set`` requests, then keeps serving.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream import wiring
from iii_stream.core.limits import MAX_JSON_DEPTH
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint
from moto import mock_aws

from tests.integration.realtime import Realtime
from tests.integration.test_triggers import UserFunctions
from tests.unit.test_property_stream_records import records as bad_records

pytestmark = pytest.mark.integration

BATCHES = settings(max_examples=60, deadline=None, derandomize=True, report_multiple_bugs=False)
DISPATCHES = settings(max_examples=30, deadline=None, derandomize=True)  # each waits for its async invocations
NOW_MS = 1_800_000_000_000
_groups = itertools.count()


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Realtime, UserFunctions, str]]:
    """One moto world for the module (every test uses groups of its own): the harness, the user function
    ``on_change`` (a ``stream`` trigger on stream ``s``) and StreamFunction, both behind one local Lambda endpoint."""
    users = UserFunctions()
    endpoint = LambdaEndpoint({"on_change": users.handler("on_change")}, port=0)
    endpoint.start()
    with mock_aws(), pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
        harness = Realtime(monkeypatch)
        endpoint.functions["StreamFunction"] = load_handler("stream_functions.handler")
        endpoint.functions["DeepAnswer"] = lambda event, context: _nest(5_000)
        endpoint.functions["SurrogateAnswer"] = lambda event, context: {"text": "\ud800"}
        function = {"function_id": "app::on_change", "target": "on_change"}
        assert "result" in harness.register("registry::register_function", **function)
        trigger = {"type": "stream", "function_id": "app::on_change", "config": {"stream_name": "s"}}
        assert "result" in harness.register("registry::register_trigger", **trigger)
        yield harness, users, endpoint.endpoint_url
        endpoint.stop()
    wiring.reset()


@pytest.fixture(scope="module")
def rt(world: tuple[Realtime, UserFunctions, str]) -> Realtime:
    return world[0]


@pytest.fixture(scope="module")
def users(world: tuple[Realtime, UserFunctions, str]) -> UserFunctions:
    return world[1]


# Data that json.loads reads but no frame can carry, and partition keys naming a stream with a lone surrogate.
POISON_DATA = ['"\\ud800"', '{"\\udfff":1}', '["a\\udc00"]', "1e999", "NaN", "[" * 129 + "]" * 129]
POISON_NAMES = ['["\\ud800","g"]', '["s","\\udbff"]']
POISONS = [("data", text) for text in POISON_DATA] + [("names", names) for names in POISON_NAMES]


def _good(group: str, n: int, data: str | None = None, names: str | None = None) -> dict[str, Any]:
    """The INSERT record of item ``good-<n>`` (as the items table writes it), data ``{"n": n}``."""
    pk = "I" + (names or json.dumps(["s", group], separators=(",", ":")))
    keys = {"pk": {"S": pk}, "sk": {"S": f"#{'poison' if data or names else 'good'}-{n}"}}
    image = {**keys, "data": {"S": data or json.dumps({"n": n})}, "version": {"N": "1"}, "ts": {"N": str(NOW_MS + n)}}
    return {
        "eventID": f"good-{group}-{n}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"Keys": keys, "NewImage": image, "SequenceNumber": "0", "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


@st.composite
def batches(draw: st.DrawFn, poison: bool) -> tuple[str, list[dict[str, Any]], set[int]]:
    """(group, records, indices of the good ones): good and bad records in any order, sequence numbers rising."""
    group = f"g{next(_groups)}"
    kinds = draw(
        st.lists(st.sampled_from(["good", "bad", "poison"] if poison else ["good", "bad"]), min_size=1, max_size=8)
    )
    batch: list[dict[str, Any]] = []
    for index, kind in enumerate(kinds):
        if kind == "good":
            record = _good(group, index)
        elif kind == "poison":
            field, odd = draw(st.sampled_from(POISONS))
            record = _good(group, index, **{field: odd})
        else:
            record = draw(bad_records().filter(_shaped))
            if draw(st.booleans()):  # aim the bad record at the watched group
                _retarget(record, group)
        record["dynamodb"]["SequenceNumber"] = str(10**20 + index)
        batch.append(record)
    return group, batch, {index for index, kind in enumerate(kinds) if kind == "good"}


def _shaped(record: Any) -> bool:
    """Lambda always sends a record object with a ``dynamodb`` object (those shapes: see the tests below)."""
    return isinstance(record, dict) and isinstance(record.get("dynamodb"), dict)


def _retarget(record: dict[str, Any], group: str) -> None:
    keys = record["dynamodb"].get("Keys")
    if isinstance(keys, dict) and isinstance(keys.get("pk"), dict):
        keys["pk"]["S"] = "I" + json.dumps(["s", group], separators=(",", ":"))


def _sequence_numbers(records: list[dict[str, Any]]) -> list[str]:
    return [record["dynamodb"]["SequenceNumber"] for record in records]


def _failed(response: Any) -> list[str]:
    assert isinstance(response, dict), response
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


@pytest.mark.parametrize("poison", [False, True])
@BATCHES
@given(data=st.data())
def test_broadcast_fails_a_suffix_from_the_first_bad_record_and_delivers_the_good_ones_before_it(
    rt: Realtime, poison: bool, data: st.DataObject
) -> None:
    group, records, good = data.draw(batches(poison))
    connection_id, _ = rt.connect()
    rt.join(connection_id, "s", group)
    handler = load_handler("broadcast.handler")

    failed = _failed(handler({"Records": records}, LocalLambdaContext("broadcast")))

    first_failed = len(records) - len(failed)
    assert failed == _sequence_numbers(records)[first_failed:]
    assert first_failed not in good, "a good record was the first failure"
    delivered = [f["id"] for f in rt.frames(connection_id)[1:] if str(f["id"]).startswith("good-")]
    assert delivered == [f"good-{index}" for index in sorted(good) if index < first_failed]


@DISPATCHES
@given(batch=batches(poison=True))
def test_dispatch_fails_only_bad_records_and_runs_every_good_ones_trigger_once(
    rt: Realtime, users: UserFunctions, batch: tuple[str, list[dict[str, Any]], set[int]]
) -> None:
    group, records, good = batch
    failed = set(_failed(rt.dispatch_handler({"Records": records}, LocalLambdaContext("dispatch"))))

    assert failed.isdisjoint(_sequence_numbers([records[index] for index in good]))
    expected = sorted(f"good-{index}" for index in good)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _triggered(users, group) != expected:
        time.sleep(0.01)
    assert _triggered(users, group) == expected


def _triggered(users: UserFunctions, group: str) -> list[str]:
    calls = list(users.calls["on_change"])
    return sorted(c["id"] for c in calls if c.get("groupId") == group and str(c.get("id")).startswith("good-"))


# --- records of a shape Lambda never sends ----------------------------------------------------------------------


NOT_RECORDS = [None, "x", 7, [], {"dynamodb": "x"}]  # what broadcast and dispatch both raise on
ODD_SHAPES = [
    *NOT_RECORDS,
    {"dynamodb": None},
    {"dynamodb": []},
]


def _with_odd_record(odd: Any) -> list[Any]:
    records: list[Any] = [_good("odd", 0), odd, _good("odd", 2)]
    records[0]["dynamodb"]["SequenceNumber"] = "1"
    records[2]["dynamodb"]["SequenceNumber"] = "3"
    return records


@pytest.mark.parametrize("odd", ODD_SHAPES)
def test_broadcast_answers_a_batch_holding_a_record_of_a_shape_lambda_never_sends(rt: Realtime, odd: Any) -> None:
    connection_id, _ = rt.connect()
    rt.join(connection_id, "s", "odd")
    response = load_handler("broadcast.handler")({"Records": _with_odd_record(odd)}, LocalLambdaContext("broadcast"))
    # The odd record has no sequence number: "" (Lambda then retries the whole batch), and the next one's.
    assert response["batchItemFailures"] == [{"itemIdentifier": ""}, {"itemIdentifier": "3"}]
    assert [f["id"] for f in rt.frames(connection_id)[1:]] == ["good-0"]


@pytest.mark.parametrize("odd", [*NOT_RECORDS, {"dynamodb": None}, {"dynamodb": []}])
def test_dispatch_answers_a_batch_holding_a_record_of_a_shape_lambda_never_sends(rt: Realtime, odd: Any) -> None:
    response = rt.dispatch_handler({"Records": _with_odd_record(odd)}, LocalLambdaContext("dispatch"))
    # No sequence number to name it by: an empty identifier, which makes Lambda retry the whole batch.
    assert {"itemIdentifier": ""} in response["batchItemFailures"]


def test_dispatch_answers_an_empty_batch(rt: Realtime) -> None:
    assert rt.dispatch_handler({"Records": []}, LocalLambdaContext("dispatch")) == {"batchItemFailures": []}


@pytest.mark.parametrize(("field", "odd"), POISONS)
def test_broadcast_delivers_the_records_before_one_no_frame_can_carry(rt: Realtime, field: str, odd: str) -> None:
    # Was: the poison record's frame raised while the batch was planned, so the whole batch failed from record 0.
    connection_id, _ = rt.connect()
    rt.join(connection_id, "s", "poison")
    records = [_good("poison", 0), _good("poison", 1, **{field: odd}), _good("poison", 2)]
    for number, record in enumerate(records, start=1):
        record["dynamodb"]["SequenceNumber"] = str(number)
    response = load_handler("broadcast.handler")({"Records": records}, LocalLambdaContext("broadcast"))
    assert response["batchItemFailures"] == [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]
    assert [f["id"] for f in rt.frames(connection_id)[1:]] == ["good-0"]


# --- exactly MAX_JSON_DEPTH deep: stored, broadcast, synced, dispatched -----------------------------------------


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def test_an_item_exactly_max_json_depth_deep_is_stored_broadcast_synced_and_dispatched(
    rt: Realtime, users: UserFunctions
) -> None:
    value = _nest(MAX_JSON_DEPTH)
    watcher, _ = rt.connect()
    rt.join(watcher, "s", "deep")
    assert rt.call("stream::set", stream_name="s", group_id="deep", item_id="a", data=value)["new_value"] == value
    update = rt.call(
        "stream::update",
        stream_name="s",
        group_id="deep",
        item_id="b",
        ops=[{"type": "set", "path": "a", "value": _nest(MAX_JSON_DEPTH - 1)}],
    )
    rt.call("stream::send", stream_name="s", group_id="deep", type="t", data=value)
    assert rt.call("stream::get", stream_name="s", group_id="deep", item_id="a") == value
    rt.pump.drain()
    rt.dispatch.drain()
    assert rt.pump.dropped == [] and rt.dispatch.dropped == []
    frames = rt.frames(watcher)
    assert [f["event"]["type"] for f in frames] == ["sync", "create", "create", "event"]
    assert frames[1]["event"]["data"] == value
    assert frames[2]["event"]["data"] == update["new_value"]
    assert frames[3]["event"]["event"]["data"] == value
    late, _ = rt.connect()
    rt.join(late, "s", "deep")
    assert rt.frames(late)[0]["event"]["data"] == [value, update["new_value"]]  # the sync: three levels more
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_calls(users, "deep")) < 3:
        time.sleep(0.01)
    assert [c["event"].get("data", c["event"].get("event", {}).get("data")) for c in _calls(users, "deep")] == [
        value,
        update["new_value"],
        value,
    ]


def _calls(users: UserFunctions, group: str) -> list[Any]:
    return sorted((c for c in users.calls["on_change"] if c.get("groupId") == group), key=lambda c: c["timestamp"])


# --- the local Lambda endpoint: too deep to parse, too deep to store, and then the next request ----------------


@pytest.fixture
def stream_function(world: tuple[Realtime, UserFunctions, str]) -> Any:
    config = Config(signature_version=UNSIGNED, region_name="us-east-1", retries={"mode": "standard"})
    return boto3.client("lambda", endpoint_url=world[2], config=config)


def _set_body(depth: int, item_id: str) -> bytes:
    key = f'"stream_name":"s","group_id":"endpoint","item_id":"{item_id}"'
    return f'{{"function_id":"stream::set","payload":{{{key},"data":{"[" * depth + "]" * depth}}}}}'.encode()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 1_000, 100_000])
def test_the_local_endpoint_answers_a_too_deep_set_and_keeps_serving(stream_function: Any, depth: int) -> None:
    response = stream_function.invoke(FunctionName="StreamFunction", Payload=_set_body(depth, f"i{depth}"))
    answer = json.loads(response["Payload"].read())
    assert response["StatusCode"] == 200
    if "FunctionError" in response:  # Python's json gave up (about 1,000 levels): the runtime's own error
        assert answer["errorType"] == "Runtime.UnmarshalError"
        assert answer["errorMessage"].startswith("Unable to unmarshal input: maximum recursion depth exceeded")
        assert depth >= 990
    else:
        assert answer == {
            "error": {
                "code": "deserialization_error",
                "message": "Failed to deserialize input for stream::set: nesting deeper than 128 levels at `data`",
            }
        }
    get = {
        "function_id": "stream::get",
        "payload": {"stream_name": "s", "group_id": "endpoint", "item_id": f"i{depth}"},
    }
    assert json.loads(
        stream_function.invoke(FunctionName="StreamFunction", Payload=json.dumps(get))["Payload"].read()
    ) == {"result": None}
    ok = _set_body(MAX_JSON_DEPTH, f"i{depth}")
    assert "result" in json.loads(stream_function.invoke(FunctionName="StreamFunction", Payload=ok)["Payload"].read())


def test_the_local_endpoint_answers_a_body_it_cannot_parse_or_read(stream_function: Any) -> None:
    with pytest.raises(stream_function.exceptions.InvalidRequestContentException):
        stream_function.invoke(FunctionName="StreamFunction", Payload=b'{"function_id": "stream::set", "payload": [')
    digits = b'{"function_id":"stream::get","payload":{"n":' + b"9" * 5_000 + b"}}"
    response = stream_function.invoke(FunctionName="StreamFunction", Payload=digits)
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "Runtime.UnmarshalError"
    surrogate = b'{"function_id":"stream::get","payload":{"stream_name":"\\ud800","group_id":"g","item_id":"i"}}'
    answer = json.loads(stream_function.invoke(FunctionName="StreamFunction", Payload=surrogate)["Payload"].read())
    assert answer["error"]["code"] == "deserialization_error"
    listed = stream_function.invoke(FunctionName="StreamFunction", Payload=b'{"function_id":"stream::list_all"}')
    assert "result" in json.loads(listed["Payload"].read())


@pytest.mark.parametrize(
    ("function", "words"), [("DeepAnswer", "maximum recursion depth exceeded"), ("SurrogateAnswer", "surrogates")]
)
def test_the_local_endpoint_answers_a_result_the_runtime_could_not_send(
    stream_function: Any, function: str, words: str
) -> None:
    response = stream_function.invoke(FunctionName=function, Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    answer = json.loads(response["Payload"].read())
    assert answer["errorType"] == "Runtime.MarshalError"
    assert words in answer["errorMessage"]


def test_the_local_endpoint_answers_a_request_it_cannot_read_and_keeps_serving(
    world: tuple[Realtime, UserFunctions, str],
) -> None:
    host, port = world[2].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/2015-03-31/functions/StreamFunction/invocations")
    connection.putheader("Content-Length", "lots")
    connection.endheaders()
    reply = connection.getresponse()
    assert (reply.status, reply.getheader("x-amzn-ErrorType")) == (500, "ServiceException")
    assert "Message" in json.loads(reply.read())
    connection.close()
    again = http.client.HTTPConnection(host, int(port), timeout=10)
    again.request(
        "POST", "/2015-03-31/functions/StreamFunction/invocations", body=b'{"function_id":"stream::list_all"}'
    )
    assert "result" in json.loads(again.getresponse().read())
    again.close()
