"""Faults moto cannot produce, injected at the client boundary of the real handlers (aws-local-tooling.md 3, 12).

Where each fault is injected:
- DynamoDB (throttling, a 5xx, a missing table): at the handlers' own client, ``wiring.dynamodb_client()``, by
  botocore event hooks (``Faults``): ``before-parameter-build`` picks the calls a rule applies to, ``before-send``
  answers their HTTP attempts with the error AWS sends (built on ``infra.botocore_answers``). botocore parses the
  answer and applies its own retry rules, as to a real response: the first N attempts of a call can fail and the
  call still succeed. The tables are an embedded moto server on loopback (``infra.embedded_dynamodb``), so an
  answered attempt never reaches a table (in-process moto would run every request it is shown).
- Lambda (a throttled or timed-out Invoke, a function that timed out): the same hooks on the handlers' own
  ``wiring.lambda_client()``; user functions that raise do so in the local Lambda endpoint, as on Lambda.
- ``@connections`` (410 GoneException, 429): ``rt.posts``, the recording transport of the handlers' poster.
botocore's waits between retries are recorded instead of slept (``botocore.endpoint.time``).
"""

from __future__ import annotations

import io
import json
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.endpoint
import pytest
from botocore.awsrequest import HeadersDict
from botocore.exceptions import ReadTimeoutError
from iii_stream import wiring
from iii_stream.adapters import keys
from iii_stream.adapters.dynamodb_registry import DynamoTriggerLedger
from iii_stream.adapters.lambda_invoker import LambdaInvoker
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.triggers import LeaveRetry, TriggerLeaveHandlers
from iii_stream.infra import botocore_answers
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint
from iii_stream.infra.local.stream_pump import StreamPump

from tests.integration import realtime
from tests.integration.realtime import CONNECTIONS, ITEMS, TRIGGERS, Realtime

pytestmark = pytest.mark.integration

ALWAYS = -1
FANOUT = "test-fanout"
DYNAMODB_ATTEMPTS = 4  # botocore's standard retry mode: 4 attempts for DynamoDB
LAMBDA_ATTEMPTS = 3

# --- what the services answer ----------------------------------------------------------------------------


def wire_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> botocore_answers.HttpAnswer:
    """An HTTP response for a ``before-send`` hook: botocore parses it (and retries on it) like a real one."""
    answer = botocore_answers.HttpAnswer(status)
    answer.content = json.dumps(body).encode("utf-8")
    answer.raw = io.BytesIO(answer.content)  # a streaming payload (Invoke) is read from it
    answer.headers = HeadersDict({"content-length": str(len(answer.content)), **(headers or {})})
    return answer


def aws_error(status: int, code: str, message: str) -> Callable[[], botocore_answers.HttpAnswer]:
    """The error AWS answers (JSON protocols: the code in ``__type`` and in the x-amzn-ErrorType header)."""
    return lambda: wire_answer(status, {"__type": code, "message": message}, {"x-amzn-ErrorType": code})


THROUGHPUT_EXCEEDED = aws_error(
    400,
    "ProvisionedThroughputExceededException",
    "The level of configured provisioned throughput for the table was exceeded.",
)
THROTTLED = aws_error(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
INTERNAL_ERROR = aws_error(500, "InternalServerError", "Internal server error")
TABLE_NOT_FOUND = aws_error(400, "ResourceNotFoundException", "Requested resource not found")
TOO_MANY_REQUESTS = aws_error(429, "TooManyRequestsException", "Rate Exceeded.")


def function_timed_out() -> botocore_answers.HttpAnswer:
    """Lambda's answer to a RequestResponse Invoke whose function ran out of time."""
    body = {"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: 1 Error: Task timed out after 3.00 seconds"}
    return wire_answer(200, body, {"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"})


def read_timeout() -> botocore_answers.HttpAnswer:
    """No answer within the client's read timeout (raised by the hook, as urllib3 would)."""
    raise ReadTimeoutError(endpoint_url="http://lambda.invalid/")


# --- the fault injector ----------------------------------------------------------------------------------


@dataclass
class Rule:
    """Which calls to answer, and how: ``answers`` (cycled) for the first ``attempts`` HTTP attempts of each of
    the first ``calls`` calls of ``operations`` (None: any) whose parameters ``where`` accepts."""

    answers: list[Callable[[], botocore_answers.HttpAnswer]]
    operations: set[str] | None = None
    where: Callable[[dict[str, Any]], bool] = lambda params: True
    attempts: int = ALWAYS
    calls: int = ALWAYS
    picked: int = 0
    answered: int = 0

    def picks(self, operation: str, params: dict[str, Any]) -> bool:
        if self.operations is not None and operation not in self.operations:
            return False
        if self.calls != ALWAYS and self.picked >= self.calls:
            return False
        return self.where(params)


class Faults:
    """Answers a boto3 client's calls at the client boundary (module docstring): ``before-parameter-build`` starts a
    call and picks the first rule for its parameters; ``before-send`` answers the attempts the rule covers, the
    others go on to the service."""

    def __init__(self, client: Any, service: str) -> None:
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # attempts that went on to the service
        self._local = threading.local()
        self._lock = threading.Lock()
        client.meta.events.register_first(
            f"before-parameter-build.{service}.*", self._call, unique_id=f"faults-call-{service}"
        )
        client.meta.events.register_first(f"before-send.{service}.*", self._send, unique_id=f"faults-send-{service}")

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1
            rule = next((r for r in self.rules if r.picks(model.name, params)), None)
            if rule is not None:
                rule.picked += 1
        self._local.rule, self._local.attempt, self._local.operation = rule, 0, model.name

    def _send(self, request: Any, **_: Any) -> Any:
        rule: Rule | None = getattr(self._local, "rule", None)
        self._local.attempt += 1
        if rule is None or (rule.attempts != ALWAYS and self._local.attempt > rule.attempts):
            with self._lock:
                self.sent[self._local.operation] += 1
            return None
        with self._lock:
            rule.answered += 1
        return rule.answers[(self._local.attempt - 1) % len(rule.answers)]()


def on_table(table: str) -> Callable[[dict[str, Any]], bool]:
    return lambda params: params.get("TableName") == table


def to_function(name: str, invocation_type: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def where(params: dict[str, Any]) -> bool:
        kind = params.get("InvocationType", "RequestResponse")
        return params.get("FunctionName") == name and (invocation_type is None or kind == invocation_type)

    return where


# --- the world: real handlers, user functions behind a Lambda endpoint, tables on a loopback moto ----------


class UserFunctions(realtime.UserFunctions):
    """Python functions served as Lambdas; every call recorded."""

    NAMES = ("on_change", "on_change_2", "cond", "gate", "on_leave", "audit", "boom")

    def settled(self, name: str, count: int, timeout: float = 5.0) -> list[Any]:
        """The calls of ``name`` once ``count`` arrived (or ``timeout`` passed), and a moment more: a call queued
        twice would have arrived by then (the endpoint runs Event invocations at once)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.calls[name]) < count:
            time.sleep(0.01)
        time.sleep(0.2)
        return list(self.calls[name])


@dataclass
class World:
    rt: Realtime
    users: UserFunctions
    dynamodb: Faults
    lambda_: Faults
    waits: list[float]
    chunks: list[Any] = field(default_factory=list)

    def function(self, name: str) -> None:
        assert "result" in self.rt.register("registry::register_function", function_id=f"app::{name}", target=name)

    def trigger(self, type_: str, name: str, config: dict[str, Any] | None = None, trigger_id: str = "") -> None:
        payload: dict[str, Any] = {"type": type_, "function_id": f"app::{name}", "config": config or {}}
        if trigger_id:
            payload["id"] = trigger_id
        response = self.rt.register("registry::register_trigger", **payload)
        assert "result" in response, response

    def leave_ids(self, name: str, count: int, timeout: float = 5.0) -> list[str]:
        return sorted(leave["subscription_id"] for leave in self.users.settled(name, count, timeout))

    def connection_rows(self, connection_id: str) -> list[dict[str, Any]]:
        rows = self.rt.dynamodb.scan(TableName=CONNECTIONS)["Items"]
        return [row for row in rows if connection_id in json.dumps(row)]


@pytest.fixture(scope="module")
def dynamodb_url() -> Iterator[str]:
    server = EmbeddedDynamoDB()
    yield server.start()
    server.stop()


@pytest.fixture
def users() -> UserFunctions:
    return UserFunctions()


@contextmanager
def _world(
    monkeypatch: pytest.MonkeyPatch, dynamodb_url: str, users: UserFunctions, **settings: str
) -> Iterator[World]:
    chunks: list[Any] = []
    fanout = load_handler("fanout.handler")

    def counted_fanout(event: Any, context: Any) -> Any:
        chunks.append(event)
        return fanout(event, context)

    functions = {name: users.handler(name) for name in UserFunctions.NAMES}
    endpoint = LambdaEndpoint({**functions, FANOUT: counted_fanout}, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODBSTREAMS", dynamodb_url)
    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=waits.append))
    try:
        rt = Realtime(monkeypatch, **settings)
        dynamodb, lambda_ = Faults(wiring.dynamodb_client(), "dynamodb"), Faults(wiring.lambda_client(), "lambda")
        world = World(rt, users, dynamodb, lambda_, waits, chunks)
        for name in UserFunctions.NAMES:
            world.function(name)
        yield world
    finally:
        endpoint.stop()


@pytest.fixture
def world(aws: None, monkeypatch: pytest.MonkeyPatch, dynamodb_url: str, users: UserFunctions) -> Iterator[World]:
    # aws: moto's state is reset around each test; the embedded server on loopback serves that same state.
    with _world(monkeypatch, dynamodb_url, users) as world:
        yield world


@pytest.fixture
def fanout_world(
    aws: None, monkeypatch: pytest.MonkeyPatch, dynamodb_url: str, users: UserFunctions
) -> Iterator[World]:
    # more than 6 posts in a batch: FanoutFunction, in chunks of 4 connections
    settings = {"FANOUT_FUNCTION": FANOUT, "FANOUT_THRESHOLD": "6", "FANOUT_CHUNK_SIZE": "4"}
    with _world(monkeypatch, dynamodb_url, users, **settings) as world:
        yield world


def _call(function_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The stream functions' Lambda handler, raw: ``{"result"}`` or ``{"error"}``."""
    response: dict[str, Any] = load_handler("stream_functions.handler")(
        {"function_id": function_id, "payload": payload}, LocalLambdaContext("fn")
    )
    return response


def _items(world: World) -> list[dict[str, Any]]:
    return sorted(world.rt.dynamodb.scan(TableName=ITEMS)["Items"], key=lambda row: (row["pk"]["S"], row["sk"]["S"]))


def _stream_records(world: World) -> list[dict[str, Any]]:
    """Every record of the items table's stream so far, in Lambda's event shape."""
    captured: list[dict[str, Any]] = []

    def capture(event: dict[str, Any], context: Any) -> dict[str, Any]:
        captured.extend(event["Records"])
        return {}

    StreamPump(world.rt.pump._client, world.rt.pump.stream_arn, capture, context_factory=lambda: None).drain()  # noqa: SLF001
    return _with_data(captured)


def _with_data(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of writes (moto also emits a keys-only INSERT before an UpdateItem creates an item; AWS never
    does)."""
    return [record for record in records if "data" in record["dynamodb"].get("NewImage", {})]


def _changes(world: World, connection_id: str) -> list[tuple[str, Any]]:
    return [event for event in world.rt.events(connection_id) if event[0] != "sync"]


# === 1. Throttling on every DynamoDB call ===================================================================

STREAM_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "a", "data": {"id": "a", "n": 1}}),
    (
        "stream::update",
        {"stream_name": "s", "group_id": "g", "item_id": "a", "ops": [{"type": "increment", "path": "n", "by": 1}]},
    ),
    ("stream::get", {"stream_name": "s", "group_id": "g", "item_id": "a"}),
    ("stream::list", {"stream_name": "s", "group_id": "g"}),
    ("stream::list_groups", {"stream_name": "s"}),
    ("stream::list_all", {}),
    ("stream::send", {"stream_name": "s", "group_id": "g", "type": "ping", "data": 1}),
    ("stream::delete", {"stream_name": "s", "group_id": "g", "item_id": "a"}),
]


def test_every_stream_function_succeeds_when_each_dynamodb_attempt_is_throttled_twice_first(world: World) -> None:
    # GIVEN every DynamoDB call of the handlers answered ProvisionedThroughputExceededException, then
    # ThrottlingException, before it goes through (fault: before-send on wiring.dynamodb_client())
    world.dynamodb.calls.clear()
    world.dynamodb.sent.clear()
    world.waits.clear()
    rule = world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED, THROTTLED], attempts=2))
    # WHEN each stream function is called
    results = [_call(function_id, payload) for function_id, payload in STREAM_CALLS]
    # THEN each succeeded, after botocore waited out two throttled attempts of each of its DynamoDB calls
    assert [r.get("result") for r in results] == [
        {"old_value": None, "new_value": {"id": "a", "n": 1}},
        {"old_value": {"id": "a", "n": 1}, "new_value": {"id": "a", "n": 2}},
        {"id": "a", "n": 2},
        [{"id": "a", "n": 2}],
        ["g"],
        {"stream": [{"id": "s", "groups": ["g"]}], "count": 1},
        None,
        {"old_value": {"id": "a", "n": 2}},
    ]
    calls = sum(world.dynamodb.calls.values())
    assert rule.answered == 2 * calls and len(world.waits) == 2 * calls
    assert sum(world.dynamodb.sent.values()) == calls  # one attempt of each call reached the table


@pytest.mark.parametrize(
    ("function_id", "payload", "code", "prefix", "operations"),
    [
        ("stream::set", {**STREAM_CALLS[0][1], "data": 2}, "STREAM_SET_ERROR", "Failed to set value: ", None),
        ("stream::update", STREAM_CALLS[1][1], "STREAM_UPDATE_ERROR", "Failed to update value: ", None),
        # the update's read goes through; its write stays throttled: still nothing written
        ("stream::update", STREAM_CALLS[1][1], "STREAM_UPDATE_ERROR", "Failed to update value: ", {"PutItem"}),
        ("stream::get", STREAM_CALLS[2][1], "STREAM_GET_ERROR", "Failed to get value: ", None),
        ("stream::list", STREAM_CALLS[3][1], "STREAM_GET_GROUP_ERROR", "Failed to get group: ", None),
        ("stream::list_groups", STREAM_CALLS[4][1], "STREAM_LIST_GROUPS_ERROR", "Failed to list groups: ", None),
        ("stream::list_all", {}, "STREAM_LIST_ALL_ERROR", "Failed to list stream: ", None),
        ("stream::send", STREAM_CALLS[6][1], "STREAM_SEND_ERROR", "Failed to send event: ", None),
        ("stream::delete", STREAM_CALLS[7][1], "STREAM_DELETE_ERROR", "Failed to delete value: ", None),
    ],
)
def test_throttling_that_persists_is_the_functions_documented_error_and_writes_nothing(
    world: World, function_id: str, payload: dict[str, Any], code: str, prefix: str, operations: set[str] | None
) -> None:
    # GIVEN an item, then every attempt of the handlers' DynamoDB calls throttled (fault: before-send)
    assert "result" in _call(*STREAM_CALLS[0])
    before = _items(world)
    rule = world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED], operations=operations))
    # WHEN the function is called
    response = _call(function_id, payload)
    # THEN it answers its documented error, naming the throttling, after botocore's attempts; nothing was written
    assert response["error"]["code"] == code
    assert response["error"]["message"].startswith(prefix + "ProvisionedThroughputExceededException: ")
    assert rule.answered == DYNAMODB_ATTEMPTS
    world.dynamodb.clear()
    assert _items(world) == before


def test_a_realtime_session_under_throttling_gets_every_frame_every_trigger_and_every_leave_once(world: World) -> None:
    # GIVEN a stream trigger and a leave trigger, and the first attempt of every DynamoDB call of the handlers
    # throttled (routes, stream functions, broadcast, dispatch, registry: one client)
    world.trigger("stream", "on_change", {"stream_name": "chat"})
    world.trigger("stream:leave", "on_leave")
    calls_before = sum(world.dynamodb.calls.values())
    rule = world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED], attempts=1))
    rt = world.rt
    group, _ = rt.connect()
    item, _ = rt.connect()
    subscriptions = [rt.join(group, "chat", "room"), rt.join(item, "chat", "room", "a")]
    # WHEN items are written, sent and deleted, both consumers drain the stream, and both clients leave
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="b", data={"id": "b"})
    rt.call(
        "stream::update",
        stream_name="chat",
        group_id="room",
        item_id="a",
        ops=[{"type": "set", "path": "x", "value": 1}],
    )
    rt.call("stream::send", stream_name="chat", group_id="room", type="typing", data={})
    rt.call("stream::delete", stream_name="chat", group_id="room", item_id="b")
    rt.pump.drain()
    rt.dispatch.drain()
    rt.disconnect(group)
    rt.disconnect(item)
    # THEN every frame arrived once, in order; each change fired its trigger once; each subscription left once
    assert rt.pump.dropped == [] and rt.dispatch.dropped == []
    assert _changes(world, group) == [
        ("create", "a"),
        ("create", "b"),
        ("update", "a"),
        ("event", None),
        ("delete", "b"),
    ]
    assert _changes(world, item) == [("create", "a"), ("update", "a")]
    fired = world.users.settled("on_change", 5)
    assert [(c["event"]["type"], c["id"]) for c in fired] == _changes(world, group)
    assert world.leave_ids("on_leave", 2) == sorted(subscriptions)
    assert rule.answered == sum(world.dynamodb.calls.values()) - calls_before  # every call met a throttle first


def test_a_broadcast_whose_subscriber_query_stays_throttled_fails_its_records_and_delivers_them_once_in_order(
    world: World,
) -> None:
    # GIVEN a connection on two groups and three changes to them
    rt = world.rt
    connection_id, _ = rt.connect()
    rt.join(connection_id, "chat", "g1")
    rt.join(connection_id, "chat", "g2")
    rt.call("stream::set", stream_name="chat", group_id="g1", item_id="a", data={"id": "a"})
    rt.call("stream::set", stream_name="chat", group_id="g2", item_id="b", data={"id": "b"})
    rt.call("stream::set", stream_name="chat", group_id="g1", item_id="a", data={"id": "a", "v": 2})
    # AND the subscriber Query of g2 (the batch's second group) throttled on every attempt of its first call
    g2 = keys.group_partition(keys.SUBSCRIPTION_TAG, "chat", "g2")
    rule = world.dynamodb.add(
        Rule(
            [THROTTLED],
            operations={"Query"},
            where=lambda p: on_table(CONNECTIONS)(p) and p.get("ExpressionAttributeValues", {}).get(":pk") == {"S": g2},
            calls=1,
        )
    )
    # WHEN the broadcast consumes the batch
    rt.pump.drain()
    # THEN the first attempt failed every record before posting anything, and the retry delivered each once, in order
    assert rule.answered == DYNAMODB_ATTEMPTS and rt.pump.dropped == []
    assert _changes(world, connection_id) == [("create", "a"), ("create", "b"), ("update", "a")]


def test_dispatch_retries_only_what_a_throttled_claim_failed_and_fires_each_handler_once(world: World) -> None:
    # GIVEN a stream trigger, three changes, and the ledger's first claim throttled on every attempt
    world.trigger("stream", "on_change", {"stream_name": "s"})
    for n in range(3):
        world.rt.call("stream::set", stream_name="s", group_id="g", item_id=str(n), data=n)
    world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED], operations={"PutItem"}, where=on_table(TRIGGERS), calls=1))
    # WHEN dispatch consumes the stream
    world.rt.dispatch.drain()
    # THEN the record whose claim failed was retried (with the later ones, which fire nothing again)
    assert world.rt.dispatch.dropped == []
    assert sorted(call["id"] for call in world.users.settled("on_change", 3)) == ["0", "1", "2"]


def test_a_handler_queued_but_not_marked_done_is_not_fired_again(world: World) -> None:
    # GIVEN a stream trigger, and the ledger unable to mark its claim done (UpdateItem throttled on every attempt)
    world.trigger("stream", "on_change", {"stream_name": "s"})
    world.rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data=1)
    rule = world.dynamodb.add(Rule([THROTTLED], operations={"UpdateItem"}, where=on_table(TRIGGERS), calls=1))
    # WHEN dispatch consumes the change
    world.rt.dispatch.drain()
    # THEN the handler fired once: the record was not failed (its retry would have claimed and fired it again)
    assert rule.answered == DYNAMODB_ATTEMPTS and world.rt.dispatch.dropped == []
    assert len(world.users.settled("on_change", 1)) == 1


def test_a_disconnect_that_fails_on_throttling_is_finished_by_the_sweeper_with_one_leave(world: World) -> None:
    # GIVEN a leave trigger and a subscribed connection; every DynamoDB attempt throttled while it disconnects
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    connection_id, _ = rt.connect()
    subscription = rt.join(connection_id, "s", "g")
    world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED]))
    # WHEN $disconnect runs: it fails (API Gateway does not retry it)
    with pytest.raises(Exception, match="ProvisionedThroughputExceededException"):
        rt.disconnect(connection_id)
    # THEN nothing was removed; once DynamoDB answers, the sweeper finds the closed connection and removes it
    world.dynamodb.clear()
    assert world.connection_rows(connection_id) != []
    rt.posts.gone.add(connection_id)
    assert rt.sweeper({}, LocalLambdaContext("sweeper"))["removed"] == [connection_id]
    assert world.leave_ids("on_leave", 1) == [subscription]
    assert world.connection_rows(connection_id) == []


def test_a_disconnect_stopped_half_way_keeps_the_connection_row_for_the_sweeper(world: World) -> None:
    # GIVEN a leave trigger and a connection with two subscriptions; the delete of the second subscription row
    # throttled on every attempt (fault: before-send on wiring.dynamodb_client(), DeleteItem of a "G" row)
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    connection_id, _ = rt.connect()
    first, second = rt.join(connection_id, "s", "g"), rt.join(connection_id, "s", "h")
    rows = {"n": 0}

    def second_subscription_row(params: dict[str, Any]) -> bool:
        if not params["Key"]["pk"]["S"].startswith(keys.SUBSCRIPTION_TAG):
            return False
        rows["n"] += 1
        return rows["n"] == 2

    world.dynamodb.add(Rule([THROUGHPUT_EXCEEDED], operations={"DeleteItem"}, where=second_subscription_row, calls=1))
    # WHEN $disconnect runs: it removes one subscription (its leave fires), then fails
    with pytest.raises(Exception, match="ProvisionedThroughputExceededException"):
        rt.disconnect(connection_id)
    assert len(world.leave_ids("on_leave", 1)) == 1
    # THEN the connection row is still there (the subscription rows go first), so the sweeper finishes it
    world.dynamodb.clear()
    assert any(row["pk"]["S"].startswith(keys.CONNECTION_TAG) for row in world.connection_rows(connection_id))
    rt.posts.gone.add(connection_id)
    assert rt.sweeper({}, LocalLambdaContext("sweeper"))["removed"] == [connection_id]
    assert world.leave_ids("on_leave", 2) == sorted([first, second])
    assert world.connection_rows(connection_id) == []


# === 2. 410 storms ========================================================================================


def _storm(world: World, connections: int) -> tuple[list[str], set[str], dict[str, list[str]]]:
    """A leave trigger, and connections on a group (every third also on item a): two of every three vanish at once,
    without a $disconnect (their posts answer 410). Returns the ids, the gone ones, and each one's subscriptions."""
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    ids = [rt.connect()[0] for _ in range(connections)]
    subscriptions: dict[str, list[str]] = {}
    for n, connection_id in enumerate(ids):
        subscriptions[connection_id] = [rt.join(connection_id, "chat", "room")]
        if n % 3 == 0:
            subscriptions[connection_id].append(rt.join(connection_id, "chat", "room", "a"))
    gone = {cid for n, cid in enumerate(ids) if n % 3 != 2}
    rt.posts.gone.update(gone)
    return ids, gone, subscriptions


def _assert_gone_handled(world: World, gone: set[str], subscriptions: dict[str, list[str]]) -> None:
    """Each gone connection was posted to once after its syncs, removed, and each of its subscriptions left once."""
    assert world.rt.pump.dropped == []
    for connection_id in gone:
        assert world.connection_rows(connection_id) == []
        assert world.rt.posts.attempts[connection_id] == len(subscriptions[connection_id]) + 1
    left = [sid for cid in gone for sid in subscriptions[cid]]
    assert world.leave_ids("on_leave", len(left)) == sorted(left)


def _changes_batch(world: World) -> None:
    rt = world.rt
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="b", data={"id": "b"})
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a", "v": 2})


def test_a_410_storm_during_a_broadcast_removes_every_gone_connection_with_one_leave_each(world: World) -> None:
    # GIVEN 18 connections, 12 of them gone at once (fault: 410 GoneException from rt.posts)
    ids, gone, subscriptions = _storm(world, 18)
    # WHEN a batch of changes is broadcast, and then another
    _changes_batch(world)
    world.rt.pump.drain()
    world.rt.call("stream::set", stream_name="chat", group_id="room", item_id="c", data={"id": "c"})
    world.rt.pump.drain()
    # THEN the live ones got every change in order; each gone one was posted once, removed, and left once
    for connection_id in set(ids) - gone:
        assert _changes(world, connection_id) == [("create", "a"), ("create", "b"), ("update", "a"), ("create", "c")]
    _assert_gone_handled(world, gone, subscriptions)


def test_a_410_storm_inside_the_fanout_tier_removes_every_gone_connection_with_one_leave_each(
    fanout_world: World,
) -> None:
    # GIVEN 18 connections, 12 of them gone (410 from rt.posts, posted to by FanoutFunction's chunks)
    world = fanout_world
    ids, gone, subscriptions = _storm(world, 18)
    # WHEN a batch is broadcast through the fan-out tier
    _changes_batch(world)
    world.rt.pump.drain()
    # THEN it went through chunks; the same outcome as when the broadcast posts itself
    assert len(world.chunks) >= 2
    for connection_id in set(ids) - gone:
        assert _changes(world, connection_id) == [("create", "a"), ("create", "b"), ("update", "a")]
    _assert_gone_handled(world, gone, subscriptions)


def test_a_sync_storm_to_gone_connections_leaves_each_subscription_once(world: World) -> None:
    # GIVEN a leave trigger and 10 connections that vanish before their joins' syncs can be posted (410)
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    ids = [rt.connect()[0] for _ in range(10)]
    rt.posts.gone.update(ids)
    # AND one more whose sync meets throttling that outlasts the poster's patience (429, not gone)
    slow, _ = rt.connect()
    rt.posts.throttle[slow] = 10_000
    # WHEN each joins
    subscriptions = [rt.join(connection_id, "chat", "room") for connection_id in ids]
    slow_subscription = rt.join(slow, "chat", "room")
    # THEN the gone connections are removed, the slow one keeps its connection; every subscription left once
    assert all(world.connection_rows(connection_id) == [] for connection_id in ids)
    assert world.leave_ids("on_leave", 11) == sorted([*subscriptions, slow_subscription])
    assert (
        rt.dynamodb.get_item(TableName=CONNECTIONS, Key=keys.connection_key(slow), ConsistentRead=True).get("Item")
        is not None
    )
    # AND a later broadcast posts to none of them
    rt.posts.throttle.clear()
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    rt.pump.drain()
    assert _changes(world, slow) == [] and all(rt.posts.attempts[cid] == 1 for cid in ids)


# === 3. Handler Lambdas that time out, raise or are throttled ==============================================


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([TOO_MANY_REQUESTS], id="throttled-TooManyRequestsException"),
        pytest.param([read_timeout], id="invoke-call-timed-out"),
        pytest.param([INTERNAL_ERROR], id="lambda-5xx"),
    ],
)
def test_a_stream_handler_that_cannot_be_queued_is_retried_later_and_fires_once(
    world: World, answers: list[Callable[[], botocore_answers.HttpAnswer]]
) -> None:
    # GIVEN two stream triggers on one change; the first Event invoke of on_change fails on every attempt
    world.trigger("stream", "on_change", {"stream_name": "s"})
    world.trigger("stream", "on_change_2", {"stream_name": "s"})
    rule = world.lambda_.add(Rule(answers, operations={"Invoke"}, where=to_function("on_change", "Event"), calls=1))
    world.rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data=1)
    # WHEN dispatch consumes it
    world.rt.dispatch.drain()
    # THEN its claim was released and the record retried: each handler fired exactly once
    assert rule.answered == LAMBDA_ATTEMPTS and world.rt.dispatch.dropped == []
    assert len(world.users.settled("on_change", 1)) == 1
    assert len(world.users.settled("on_change_2", 1)) == 1


def test_a_stream_handler_that_raises_once_queued_is_not_fired_again_by_dispatch(world: World) -> None:
    # GIVEN a handler that raises (in the Lambda endpoint, after its Event invocation was accepted)
    world.users.behaviour["boom"] = lambda event: 1 / 0
    world.trigger("stream", "boom", {"stream_name": "s"})
    world.rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data=1)
    world.rt.dispatch.drain()
    world.rt.dispatch.drain()
    # THEN dispatch considers it delivered (Lambda's own async retries are Lambda's): run once by us
    assert world.rt.dispatch.dropped == [] and len(world.users.settled("boom", 1)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("raises", id="handler-raises"),
        pytest.param([function_timed_out], id="handler-timed-out"),
        pytest.param([TOO_MANY_REQUESTS], id="throttled"),
        pytest.param([read_timeout], id="invoke-call-timed-out"),
    ],
)
@pytest.mark.parametrize("fail_open", [False, True])
def test_a_failing_join_handler_fails_closed_unless_join_fail_open(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_url: str,
    users: UserFunctions,
    fault: Any,
    fail_open: bool,
) -> None:
    with _world(monkeypatch, dynamodb_url, users, JOIN_FAIL_OPEN=str(fail_open).lower()) as world:
        # GIVEN a join gate whose handler fails (fault: the endpoint raises, or wiring.lambda_client() answers)
        world.trigger("stream:join", "gate")
        world.trigger("stream:leave", "on_leave")
        if fault == "raises":
            users.behaviour["gate"] = lambda event: 1 / 0
        else:
            world.lambda_.add(Rule(fault, operations={"Invoke"}, where=to_function("gate")))
        rt = world.rt
        connection_id, _ = rt.connect()
        # WHEN a client joins, then disconnects
        subscription = rt.join(connection_id, "s", "g")
        rt.disconnect(connection_id)
        # THEN fail closed: unauthorized and no leave; JOIN_FAIL_OPEN: the sync, and one leave
        if fail_open:
            assert rt.events(connection_id) == [("sync", None)]
            assert world.leave_ids("on_leave", 1) == [subscription]
        else:
            assert rt.events(connection_id) == [("unauthorized", None)]
            assert world.leave_ids("on_leave", 1, timeout=0.3) == []


# === 4. stream:leave handlers whose Event invoke is throttled ==============================================


def test_a_leave_handler_throttled_briefly_is_retried_and_fires_once(world: World) -> None:
    # GIVEN a leave trigger whose first two Event invokes are throttled on every attempt (as wired today)
    world.trigger("stream:leave", "on_leave")
    rule = world.lambda_.add(Rule([TOO_MANY_REQUESTS], operations={"Invoke"}, where=to_function("on_leave"), calls=2))
    connection_id, _ = world.rt.connect()
    subscription = world.rt.join(connection_id, "s", "g")
    # WHEN the connection closes
    world.rt.disconnect(connection_id)
    # THEN the leave handler was retried until queued, and got the leave once
    assert rule.picked == 2
    assert world.leave_ids("on_leave", 1) == [subscription]


@pytest.fixture
def leave_ledger(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leave handlers as ``wiring.disconnector()`` composes them (with the ledger), with quicker retries."""
    settings = wiring.settings()
    hooks = TriggerLeaveHandlers(
        wiring.trigger_cache(),
        LambdaInvoker(wiring.lambda_client()),
        DynamoTriggerLedger(wiring.dynamodb_client(), settings.triggers_table),
        LeaveRetry(base_seconds=0.001, cap_seconds=0.002),
    )
    disconnector = Disconnector(wiring.connection_store(), hooks)
    monkeypatch.setattr(wiring, "disconnector", lambda: disconnector)


def test_a_leave_still_throttled_after_its_retries_is_handed_back_and_the_sweeper_fires_it_once(
    world: World, leave_ledger: None
) -> None:
    # GIVEN two leave triggers; every Event invoke of on_leave throttled (every attempt) until told otherwise
    world.trigger("stream:leave", "on_leave")
    world.trigger("stream:leave", "audit")
    rt = world.rt
    connection_id, _ = rt.connect()
    subscriptions = sorted([rt.join(connection_id, "s", "g"), rt.join(connection_id, "s", "h", "i")])
    world.lambda_.add(Rule([TOO_MANY_REQUESTS], operations={"Invoke"}, where=to_function("on_leave")))
    # WHEN the connection closes
    rt.disconnect(connection_id)
    # THEN audit got both leaves; on_leave's were handed back: the connection and its subscriptions are back
    assert world.leave_ids("audit", 2) == subscriptions
    assert world.users.settled("on_leave", 1, timeout=0.3) == []
    assert len(world.connection_rows(connection_id)) == 3  # the connection and its two subscriptions
    # WHEN Lambda recovers and the sweeper finds the connection closed (410 on GetConnection)
    world.lambda_.clear()
    rt.posts.gone.add(connection_id)
    report = rt.sweeper({}, LocalLambdaContext("sweeper"))
    # THEN on_leave got each leave once, audit no second one, and the connection is gone for good
    assert report["removed"] == [connection_id] and report["leaves"] == 2
    assert world.leave_ids("on_leave", 2) == subscriptions
    assert world.leave_ids("audit", 2) == subscriptions
    assert world.connection_rows(connection_id) == []


def test_a_leave_still_throttled_is_handed_back_by_the_wired_disconnector(world: World) -> None:
    # GIVEN a leave trigger whose Event invokes are all throttled, and the disconnector as wired (not the fixture)
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    connection_id, _ = rt.connect()
    subscription = rt.join(connection_id, "s", "g")
    world.lambda_.add(Rule([TOO_MANY_REQUESTS], operations={"Invoke"}, where=to_function("on_leave")))
    # WHEN the client leaves
    rt.send(
        connection_id, {"type": "leave", "data": {"subscriptionId": subscription, "streamName": "s", "groupId": "g"}}
    )
    # THEN the subscription was handed back (still subscribed), and its leave fires once Lambda recovers
    assert len(world.connection_rows(connection_id)) == 2
    world.lambda_.clear()
    rt.disconnect(connection_id)
    assert world.leave_ids("on_leave", 1) == [subscription]  # once: the throttled attempts queued nothing


def test_a_subscription_id_joined_again_after_a_handed_back_leave_fires_every_handler_again(
    world: World, leave_ledger: None
) -> None:
    # GIVEN two leave triggers, and on_leave's Event invokes throttled on every attempt (fault: the Lambda client)
    world.trigger("stream:leave", "on_leave")
    world.trigger("stream:leave", "audit")
    rt = world.rt
    connection_id, _ = rt.connect()
    leave = {"type": "leave", "data": {"subscriptionId": "again", "streamName": "s", "groupId": "g"}}
    rule = world.lambda_.add(Rule([TOO_MANY_REQUESTS], operations={"Invoke"}, where=to_function("on_leave")))
    # WHEN a subscription leaves (audit queued and marked done in the ledger, on_leave handed back), the same
    # subscription id joins again (replacing it, as the original does), Lambda recovers and it leaves again
    rt.join(connection_id, "s", "g", subscription_id="again")
    rt.send(connection_id, leave)
    assert rule.picked > 0 and world.leave_ids("audit", 1) == ["again"]
    rt.join(connection_id, "s", "g", subscription_id="again")
    world.lambda_.clear()
    rt.send(connection_id, leave)
    # THEN the second join's leave reached both handlers: the ledger tells the two joins apart
    assert world.leave_ids("audit", 2) == ["again", "again"]
    assert world.leave_ids("on_leave", 1) == ["again"]


def test_a_leave_handed_back_during_a_410_storm_is_fired_once_by_the_next_broadcast(
    world: World, leave_ledger: None
) -> None:
    # GIVEN 10 connections of which 7 are gone, and the leave handler throttled while the first batch goes out
    ids, gone, subscriptions = _storm(world, 10)
    world.lambda_.add(Rule([TOO_MANY_REQUESTS], operations={"Invoke"}, where=to_function("on_leave")))
    rt = world.rt
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    rt.pump.drain()
    # THEN the batch was not failed (the live connections got it once), and the gone ones were handed back
    assert rt.pump.dropped == [] and world.users.settled("on_leave", 1, timeout=0.3) == []
    assert all(_changes(world, cid) == [("create", "a")] for cid in set(ids) - gone)
    assert all(world.connection_rows(cid) != [] for cid in gone)
    # WHEN Lambda recovers and the next change is broadcast
    world.lambda_.clear()
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="b", data={"id": "b"})
    rt.pump.drain()
    # THEN every gone subscription left once, and the live connections got both changes once
    left = [sid for cid in gone for sid in subscriptions[cid]]
    assert world.leave_ids("on_leave", len(left)) == sorted(left)
    assert all(_changes(world, cid) == [("create", "a"), ("create", "b")] for cid in set(ids) - gone)
    assert all(world.connection_rows(cid) == [] for cid in gone)


# === 5. Poison and duplicate stream records ================================================================


def test_duplicate_records_in_one_batch_and_across_batches_fire_nothing_twice_and_stay_in_order(
    world: World,
) -> None:
    # GIVEN a stream trigger, a group subscriber, and three changes of one item
    world.trigger("stream", "on_change", {"stream_name": "chat"})
    rt = world.rt
    connection_id, _ = rt.connect()
    rt.join(connection_id, "chat", "room")
    for n in range(3):
        rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a", "n": n})
    r1, r2, r3 = _stream_records(world)
    broadcast = load_handler("broadcast.handler")
    # WHEN both consumers get the first record twice in one batch, then overlapping batches (Lambda's retries)
    for batch in ([r1, r1, r2], [r2, r3], [r3]):
        assert rt.dispatch_handler({"Records": batch}, LocalLambdaContext("dispatch")) == {"batchItemFailures": []}
        assert broadcast({"Records": batch}, LocalLambdaContext("broadcast")) == {"batchItemFailures": []}
    # THEN each change fired its trigger once
    assert sorted(c["event"]["data"]["n"] for c in world.users.settled("on_change", 3)) == [0, 1, 2]
    # AND the client got repeats (absorbed by the clients' timestamp rules), never a change out of order
    frames = [f for f in rt.frames(connection_id) if f["event"]["type"] != "sync"]
    stamps = [f["timestamp"] for f in frames]
    assert stamps == sorted(stamps)
    assert sorted({f["event"]["data"]["n"] for f in frames}) == [0, 1, 2]


def _poison(world: World) -> None:
    """A record no consumer can read: an item written around the functions, its data not JSON."""
    world.rt.dynamodb.put_item(
        TableName=ITEMS,
        Item={
            "pk": {"S": keys.item_partition("chat", "room")},
            "sk": {"S": keys.item_sort("poison")},
            "data": {"S": "{not json"},
            "ts": {"N": "1"},
            "version": {"N": "1"},
        },
    )


def test_a_poison_record_is_reported_failed_the_records_before_it_are_done_and_the_shard_moves_on(
    world: World,
) -> None:
    # GIVEN a stream trigger, a subscriber, and a batch: a change, a poison record, a change
    world.trigger("stream", "on_change", {"stream_name": "chat"})
    rt = world.rt
    connection_id, _ = rt.connect()
    rt.join(connection_id, "chat", "room")
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="a", data={"id": "a"})
    _poison(world)
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="b", data={"id": "b"})
    before, poison, after = _stream_records(world)
    # WHEN each consumer gets the batch
    broadcast = load_handler("broadcast.handler")({"Records": [before, poison, after]}, LocalLambdaContext("b"))
    dispatch = rt.dispatch_handler({"Records": [before, poison, after]}, LocalLambdaContext("dispatch"))
    # THEN the poison (and, for the broadcast, which keeps order, every later record) is reported failed
    seq = [r["dynamodb"]["SequenceNumber"] for r in (before, poison, after)]
    assert broadcast == {"batchItemFailures": [{"itemIdentifier": seq[1]}, {"itemIdentifier": seq[2]}]}
    assert dispatch == {"batchItemFailures": [{"itemIdentifier": seq[1]}]}
    assert _changes(world, connection_id) == [("create", "a")]  # the change before it was delivered
    # AND through the pumps: after their retries the poison is set aside (with the rest of its batch: the pumps,
    # like Lambda, retry from the lowest failed record and do not bisect) and later changes flow
    rt.pump.drain()
    rt.dispatch.drain()
    rt.call("stream::set", stream_name="chat", group_id="room", item_id="c", data={"id": "c"})
    rt.pump.drain()
    rt.dispatch.drain()
    for pump in (rt.pump, rt.dispatch):
        assert [r["eventID"] for r in _with_data(pump.dropped)] == [poison["eventID"], after["eventID"]]
    assert _changes(world, connection_id)[-1] == ("create", "c")
    assert sorted(c["id"] for c in world.users.settled("on_change", 3)) == ["a", "b", "c"]


# === 6. Condition functions that fail ======================================================================


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("raises", id="condition-raises"),
        pytest.param([function_timed_out], id="condition-timed-out"),
        pytest.param([TOO_MANY_REQUESTS], id="condition-throttled"),
    ],
)
def test_a_failed_condition_call_skips_the_handler_and_the_record_succeeds(world: World, fault: Any) -> None:
    # GIVEN a stream trigger and a leave trigger, each with a condition function that fails
    world.trigger("stream", "on_change", {"stream_name": "s", "condition_function_id": "app::cond"})
    world.trigger("stream:leave", "on_leave", {"condition_function_id": "app::cond"})
    if fault == "raises":
        world.users.behaviour["cond"] = lambda event: 1 / 0
    else:
        world.lambda_.add(Rule(fault, operations={"Invoke"}, where=to_function("cond")))
    connection_id, _ = world.rt.connect()
    world.rt.join(connection_id, "s", "g")
    # WHEN a change is dispatched and the connection closes
    world.rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data=1)
    world.rt.dispatch.drain()
    world.rt.disconnect(connection_id)
    # THEN the original's rule: a failed call skips the handler (the record is done, not retried)
    assert world.rt.dispatch.dropped == []
    assert world.users.settled("on_change", 1, timeout=0.3) == []
    assert world.users.settled("on_leave", 1, timeout=0.3) == []


# === 7. The registry (triggers) table briefly unavailable ==================================================


@pytest.mark.parametrize(
    ("answers", "calls"),
    [
        pytest.param([INTERNAL_ERROR], 2, id="InternalServerError"),
        pytest.param([TABLE_NOT_FOUND], 2, id="ResourceNotFoundException"),
    ],
)
def test_dispatch_retries_the_record_while_the_registry_is_unavailable_and_fires_once(
    world: World, answers: list[Callable[[], botocore_answers.HttpAnswer]], calls: int
) -> None:
    # GIVEN a stream trigger, and the triggers table failing its next reads (every attempt of them)
    world.trigger("stream", "on_change", {"stream_name": "s"})
    world.rt.call("stream::set", stream_name="s", group_id="g", item_id="a", data=1)
    rule = world.dynamodb.add(Rule(answers, operations={"Query"}, where=on_table(TRIGGERS), calls=calls))
    # WHEN dispatch consumes the change
    world.rt.dispatch.drain()
    # THEN the record was retried until the registry answered, and the handler fired once
    assert rule.picked == calls and world.rt.dispatch.dropped == []
    assert len(world.users.settled("on_change", 1)) == 1


@pytest.mark.parametrize("fail_open", [False, True])
def test_the_join_gate_fails_closed_while_the_registry_is_unavailable_unless_join_fail_open(
    aws: None, monkeypatch: pytest.MonkeyPatch, dynamodb_url: str, users: UserFunctions, fail_open: bool
) -> None:
    with _world(monkeypatch, dynamodb_url, users, JOIN_FAIL_OPEN=str(fail_open).lower()) as world:
        # GIVEN a join gate that allows everything, and the triggers table missing for one read
        users.behaviour["gate"] = lambda event: {}
        world.trigger("stream:join", "gate")
        world.dynamodb.add(Rule([TABLE_NOT_FOUND], operations={"Query"}, where=on_table(TRIGGERS), calls=1))
        rt = world.rt
        connection_id, _ = rt.connect()
        # WHEN a client joins during the outage, then again after it
        rt.join(connection_id, "s", "g")
        rt.join(connection_id, "s", "g", "i")
        # THEN the first got the documented answer (unauthorized, or the sync if fail-open), the second its sync
        first = ("sync", None) if fail_open else ("unauthorized", None)
        assert rt.events(connection_id) == [first, ("sync", "i")]


def test_leaves_while_the_registry_is_unavailable_are_handed_back_and_fired_once(
    world: World, leave_ledger: None
) -> None:
    # GIVEN a leave trigger, and the triggers table missing for the reads of one $disconnect
    world.trigger("stream:leave", "on_leave")
    rt = world.rt
    connection_id, _ = rt.connect()
    subscription = rt.join(connection_id, "s", "g")
    world.dynamodb.add(Rule([TABLE_NOT_FOUND], operations={"Query"}, where=on_table(TRIGGERS), calls=1))
    # WHEN the connection closes, and later the sweeper finds it closed
    rt.disconnect(connection_id)
    assert world.connection_rows(connection_id) != []  # handed back
    rt.posts.gone.add(connection_id)
    rt.sweeper({}, LocalLambdaContext("sweeper"))
    # THEN its leave fired once
    assert world.leave_ids("on_leave", 1) == [subscription]


def test_the_registry_functions_answer_store_error_while_the_registry_is_unavailable(world: World) -> None:
    # GIVEN the triggers table failing every attempt of its next writes and reads (fault: before-send)
    world.dynamodb.add(Rule([INTERNAL_ERROR], operations={"PutItem", "Query"}, where=on_table(TRIGGERS), calls=2))
    # WHEN a function is registered and the functions are listed during the outage
    registered = world.rt.register("registry::register_function", function_id="app::late", target="late")
    listed = world.rt.register("registry::list_functions")
    # THEN each answered the documented error (not a failed Lambda), and afterwards the registry works again
    for answer in (registered, listed):
        assert answer["error"]["code"] == "STORE_ERROR" and "InternalServerError" in answer["error"]["message"]
    assert "result" in world.rt.register("registry::register_function", function_id="app::late", target="late")
