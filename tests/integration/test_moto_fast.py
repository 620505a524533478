"""infra/moto_fast.py answers exactly as plain moto: the same requests, byte for byte, through two moto servers.

Both servers are :class:`EmbeddedDynamoDB` in their own process (the layer patches moto process-wide): one with
the layer installed, one with it off (``III_STREAM_MOTO_FAST=off``). A botocore ``before-send`` hook (:class:`Tee`)
sends every request the adapters and the test make, as the same bytes, to both, records both raw answers, and
hands the layered server's answer back to the caller (so the adapters run on it, as the service does).

Compared per request: the HTTP status, the headers other than the per-request ones (``x-amzn-RequestId``,
``x-amz-crc32`` when the body has a random field, ``Date``, ``Server``, ``Content-Length`` likewise), and the
response body bytes after replacing only the values of these keys, random or clock-made by nature in moto:
``eventID`` (a random UUID per stream record), ``ApproximateCreationDateTime`` (the clock at the write),
``SizeBytes`` of a stream record (moto measures the record's JSON, which holds that clock value: its digits vary),
``ShardIterator`` / ``NextShardIterator`` (472 random bytes each), and the table's stream label, which is the
clock at CreateTable: ``LatestStreamLabel``, ``LatestStreamArn``, ``StreamArn``, ``StreamLabel``, and the
clock-made ``CreationDateTime`` (the table's) and ``CreationRequestDateTime`` (the stream's). Iterators and
stream ARNs are translated (layered -> plain) before a request goes to the
plain server. ``SequenceNumber`` is compared as is (moto numbers records from a fixed start).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iii_stream.adapters.dynamodb_connections import DynamoConnectionStore
from iii_stream.adapters.dynamodb_items import DynamoItemStore
from iii_stream.core.errors import ConflictError, StoreError
from iii_stream.core.ports import Connection, ItemAddress, StreamEvent, Subscription, SyncMark
from iii_stream.infra import moto_fast
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.template import create_tables

pytestmark = pytest.mark.integration

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, account_id_endpoint_mode="disabled")

_SERVER = """
import sys
from iii_stream.infra import moto_fast
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
layer = moto_fast.install()
server = EmbeddedDynamoDB()
print(server.start(), "on" if layer is not None else "off", flush=True)
sys.stdin.read()
"""

_RANDOM_KEYS = (
    "eventID",
    "ApproximateCreationDateTime",
    "SizeBytes",
    "ShardIterator",
    "NextShardIterator",
    "LatestStreamLabel",
    "LatestStreamArn",
    "StreamArn",
    "StreamLabel",
    "CreationDateTime",
    "CreationRequestDateTime",
)
_RANDOM_VALUE = re.compile(
    rb'"(' + b"|".join(k.encode() for k in _RANDOM_KEYS) + rb')": ("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)'
)
_TOKEN_KEYS = ("ShardIterator", "NextShardIterator", "LatestStreamArn", "StreamArn")
_PER_REQUEST_HEADERS = {"x-amzn-requestid", "date", "server", "x-amz-crc32", "content-length", "connection"}


@dataclass
class Server:
    process: subprocess.Popen[str]
    host: str
    port: int
    layered: bool

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(layered: bool) -> Server:
    env = offline_env(**{moto_fast.ENV_SWITCH: "on" if layered else "off"})
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    assert process.stdout is not None
    url, state = process.stdout.readline().split()
    host, port = url.removeprefix("http://").split(":")
    return Server(process, host, int(port), state == "on")


@dataclass
class Exchange:
    target: str
    request: bytes
    status: tuple[int, int]
    headers: tuple[dict[str, str], dict[str, str]]
    bodies: tuple[bytes, bytes]


def _random_values(body: bytes) -> dict[str, list[str]]:
    """The values of the token keys in a JSON answer (in document order)."""
    found: dict[str, list[str]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in _TOKEN_KEYS and isinstance(inner, str):
                    found.setdefault(key, []).append(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    with contextlib.suppress(ValueError):
        walk(json.loads(body))
    return found


def normalized(body: bytes) -> bytes:
    return _RANDOM_VALUE.sub(lambda m: b'"' + m.group(1) + b'": "<' + m.group(1) + b'>"', body)


@dataclass
class Tee:
    """Sends each request to both servers; keeps both answers; gives the caller the layered one."""

    layered: Server
    plain: Server
    exchanges: list[Exchange] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # layered server's iterator/ARN -> the plain one's

    def __post_init__(self) -> None:
        self._connections = {
            server.layered: http.client.HTTPConnection(server.host, server.port, timeout=30)
            for server in (self.layered, self.plain)
        }

    def _send(self, server: Server, request: AWSPreparedRequest, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = self._connections[server.layered]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        connection.request("POST", "/", body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        translated = body
        for mine, theirs in sorted(self.tokens.items(), key=lambda pair: -len(pair[0])):  # iterators hold ARNs
            translated = translated.replace(mine.encode(), theirs.encode())
        status_a, headers_a, body_a = self._send(self.layered, request, body)
        status_b, headers_b, body_b = self._send(self.plain, request, translated)
        ours, theirs_values = _random_values(body_a), _random_values(body_b)
        for key, values in ours.items():
            for mine, other in zip(values, theirs_values.get(key, []), strict=False):
                self.tokens[mine] = other
        target = (
            str(request.headers.get("X-Amz-Target", b""), "ascii")
            if isinstance(request.headers.get("X-Amz-Target"), bytes)
            else str(request.headers.get("X-Amz-Target"))
        )
        self.exchanges.append(Exchange(target, body, (status_a, status_b), (headers_a, headers_b), (body_a, body_b)))
        return AWSResponse(request.url, status_a, headers_a, _Raw(body_a))

    def client(self, service: str) -> Any:
        client = boto3.client(service, endpoint_url="http://127.0.0.1:1", config=NO_RETRIES)  # never dialled
        client.meta.events.register_first("before-send", self)
        return client

    def assert_identical(self) -> None:
        assert self.exchanges
        for n, exchange in enumerate(self.exchanges):
            where = f"request {n} {exchange.target} {exchange.request[:300]!r}"
            assert exchange.status[0] == exchange.status[1], where
            layered, plain = exchange.bodies
            if _RANDOM_VALUE.search(layered) is None and _RANDOM_VALUE.search(plain) is None:
                assert layered == plain, where  # raw bytes, no field removed
                assert exchange.headers[0].get("x-amz-crc32") == exchange.headers[1].get("x-amz-crc32"), where
            else:
                assert normalized(layered) == normalized(plain), where
            kept = [{k: v for k, v in h.items() if k not in _PER_REQUEST_HEADERS} for h in exchange.headers]
            assert kept[0] == kept[1], where

    def targets(self) -> set[str]:
        return {exchange.target.split(".")[-1] for exchange in self.exchanges}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    layered, plain = start_server(True), start_server(False)
    try:
        assert (layered.layered, plain.layered) == (True, False)
        yield layered, plain
    finally:
        layered.stop()
        plain.stop()


@pytest.fixture
def tee(servers: tuple[Server, Server]) -> Iterator[Tee]:
    tee = Tee(*servers)
    yield tee
    tee.assert_identical()


def tables(tee: Tee) -> tuple[Any, str, str]:
    client = tee.client("dynamodb")
    suffix = uuid.uuid4().hex[:8]
    items, connections = f"items-{suffix}", f"connections-{suffix}"
    create_tables(client, {"ItemsTable": items, "ConnectionsTable": connections})
    return client, items, connections


def read_stream(tee: Tee, client: Any, table: str, limit: int = 7) -> list[dict[str, Any]]:
    streams = tee.client("dynamodbstreams")
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records: list[dict[str, Any]] = []
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=limit)
        records.extend(page["Records"])
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            return records


# --- our adapters' requests ---------------------------------------------------------------------------------------
def test_item_store_requests_answer_the_same(tee: Tee) -> None:
    client, items_table, _ = tables(tee)
    store = DynamoItemStore(client, items_table)
    a, b = ItemAddress("s", "g", "i1"), ItemAddress("s", "g", "i2")
    store.put(a, '{"n": 1}', 1000, None)
    store.put(a, '{"n": 2}', 1000, 99999)  # same ms: a failed condition (ALL_OLD on failure), then a guarded retry
    store.put(b, '{"deep": [1, {"x": null}]}', 1001, None)
    for n in range(30):
        store.put(ItemAddress("s", "big", f"i{n:02d}"), json.dumps({"n": n, "t": "x" * n}), 2000 + n, None)
    assert store.get(a) is not None and store.get(ItemAddress("s", "g", "nope")) is None
    assert len(list(store.group_items("s", "big", 2000))) == 30
    assert store.groups("s", 2000) == ["big", "g"]
    assert set(store.streams(2000)) == {"s"}
    store.delete(b, 3000)
    assert store.delete(b, 3001) is None  # already a tombstone: a failed condition
    store.append_event(StreamEvent("s", "g", "t", '{"e": 1}', "evt-1", 4000, 5000))
    current = store.get(a)
    assert current is not None
    with pytest.raises(ConflictError):
        store.replace(a, current, expected_version=current.version + 5)
    store.replace(a, current, expected_version=current.version)
    assert len(read_stream(tee, client, items_table)) >= 35
    assert {"UpdateItem", "PutItem", "GetItem", "Query", "Scan", "GetRecords"} <= tee.targets()


def test_connection_store_requests_answer_the_same(tee: Tee) -> None:
    client, _, table = tables(tee)
    store = DynamoConnectionStore(client, table)
    store.save_connection(Connection("c1", 1000, {"user": "u"}))
    for n in range(12):
        assert store.add_subscription(Subscription("c1", f"s{n}", "st", "g", None if n % 2 else f"i{n}", {"n": n}))
    assert store.add_subscription(Subscription("c1", "s0", "st", "other"))  # moves to another group
    assert not store.add_subscription(Subscription("nobody", "x", "st", "g"))  # failed condition
    assert store.get_connection("c1") is not None and store.get_connection("nobody") is None
    found = store.subscribers("st", "g")
    assert len(found) == 11
    store.mark_synced(found[0], SyncMark(5, {"i1": 3}, pending=False))
    store.mark_synced(Subscription("gone", "x", "st", "g"), SyncMark(5, {}))
    store.due_connections(10**13, 10)
    store.postpone("c1", 99999)
    store.postpone("nobody", 1)
    assert store.remove_subscription("c1", "s3") is not None
    assert store.remove_subscription("c1", "s3") is None
    assert len(store.remove_connection("c1")) == 11
    assert store.remove_connection("c1") == []


def test_errors_answer_the_same(tee: Tee) -> None:
    client, items_table, _ = tables(tee)
    key = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    failing: list[dict[str, Any]] = [
        {
            "TableName": "no-such-table",
            "Key": key,
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET a = = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # a syntax error (not cached)
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET a = :a, a = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # overlapping paths
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET pk = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # a key attribute
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET a = :missing",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # an undefined value
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET #x = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # an undefined name
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET a = :a REMOVE a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET n = n + :a",
            "ExpressionAttributeValues": {":a": {"N": "1"}},
        },  # n does not exist
        {
            "TableName": items_table,
            "Key": key,
            "UpdateExpression": "SET a = :a",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
        {
            "TableName": items_table,
            "Key": {"pk": {"S": "p"}},
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        },  # half a key
    ]
    for _ in range(2):  # twice: the second time from the parse cache
        for request in failing:
            with pytest.raises(ClientError):
                client.update_item(**request)
        client.update_item(
            TableName=items_table,
            Key=key,
            UpdateExpression="SET a = :a, n = :n",
            ExpressionAttributeValues={":a": {"S": "x"}, ":n": {"N": "1"}},
        )
        attempt(
            client.update_item,
            TableName=items_table,
            Key=key,
            UpdateExpression="SET a = :a",
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeValues={":a": {"S": "y"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        attempt(
            client.query,
            TableName=items_table,
            KeyConditionExpression="pk = :p AND begins_with(",
            ExpressionAttributeValues={":p": {"S": "p"}},
        )
        attempt(client.get_item, TableName="no-such-table", Key=key)
        attempt(client.put_item, TableName=items_table, Item={"pk": {"S": ""}, "sk": {"S": "s"}})
        attempt(client.query, TableName=items_table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={})
        client.delete_item(TableName=items_table, Key=key, ReturnValues="ALL_OLD")
    with pytest.raises(StoreError):
        DynamoItemStore(client, "no-such-table").put(ItemAddress("s", "g", "i"), "{}", 1, None)


def attempt(operation: Any, **request: Any) -> None:
    """Send a request whatever moto makes of it: the tee compares both answers. (An answer botocore cannot
    parse: moto writes a map's empty attribute name oddly, both with the layer and without it.)"""
    with contextlib.suppress(ClientError, AttributeError):
        operation(**request)


# --- generated items and expressions, within what we send ---------------------------------------------------------
_names = st.text(alphabet="abcdefghxyz_", min_size=1, max_size=6)
_scalars = st.one_of(
    st.builds(lambda v: {"S": v}, st.text(max_size=12)),
    st.builds(
        lambda v: {"N": str(v)},
        st.one_of(
            st.integers(-(10**12), 10**12),
            st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
        ),
    ),
    st.builds(lambda v: {"B": v}, st.binary(max_size=8)),
    st.builds(lambda v: {"BOOL": v}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda v: {"SS": v}, st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True)),
    st.builds(lambda v: {"NS": [str(x) for x in v]}, st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True)),
    st.builds(lambda v: {"BS": v}, st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=3, unique=True)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"M": v}, st.dictionaries(st.text(max_size=4), inner, max_size=3)),  # "" keys too
    ),
    max_leaves=6,
)
_attributes = st.dictionaries(_names.filter(lambda n: n not in ("pk", "sk")), _values, max_size=5)


@st.composite
def _updates(draw: st.DrawFn) -> dict[str, Any]:
    """An UpdateItem as our adapters shape them: SET (plain, if_not_exists, +) and REMOVE, names, a condition."""
    targets = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    sets: list[str] = []
    for n, target in enumerate(targets[:-1] if len(targets) > 1 and draw(st.booleans()) else targets):
        path = target
        if draw(st.booleans()):
            names[f"#n{n}"] = target
            path = f"#n{n}"
        form = draw(st.sampled_from(["plain", "if_not_exists", "plus"]))
        if form == "plus":
            values[f":v{n}"] = {"N": str(draw(st.integers(0, 9)))}
            sets.append(f"{path} = if_not_exists({path}, :zero) + :v{n}")
            values[":zero"] = {"N": "0"}
        elif form == "if_not_exists":
            values[f":v{n}"] = draw(_values)
            sets.append(f"{path} = if_not_exists({path}, :v{n})")
        else:
            values[f":v{n}"] = draw(_values)
            sets.append(f"{path} = :v{n}")
    expression = "SET " + ", ".join(sets)
    if len(sets) < len(targets):
        expression += f" REMOVE {targets[-1]}"
    request: dict[str, Any] = {
        "UpdateExpression": expression,
        "ExpressionAttributeValues": values,
        "ReturnValues": draw(st.sampled_from(["NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"])),
    }
    if draw(st.booleans()):
        request["ConditionExpression"] = draw(
            st.sampled_from(
                ["attribute_exists(pk)", "attribute_not_exists(pk)", "attribute_not_exists(zz) OR zz < :cmp"]
            )
        )
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if ":cmp" in request["ConditionExpression"]:
            values[":cmp"] = {"N": "5"}
    if names:
        request["ExpressionAttributeNames"] = names
    return request


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(_attributes, min_size=1, max_size=4), updates=st.lists(_updates(), min_size=1, max_size=4))
def test_generated_items_and_updates_answer_the_same(
    servers: tuple[Server, Server], items: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    tee = Tee(*servers)
    client = tee.client("dynamodb")
    table = f"gen-{uuid.uuid4().hex[:8]}"
    create_tables(client, {"ItemsTable": table})
    for n, attributes in enumerate(items):
        key = {"pk": {"S": "p"}, "sk": {"S": f"s{n % 2}"}}
        attempt(client.put_item, TableName=table, Item={**key, **attributes}, ReturnValues="ALL_OLD")
        for update in updates:
            attempt(client.update_item, TableName=table, Key=key, **update)
        attempt(client.get_item, TableName=table, Key=key, ConsistentRead=True)
    attempt(
        client.query, TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
    )
    attempt(client.scan, TableName=table)
    with contextlib.suppress(AttributeError):  # a record botocore cannot parse (see attempt): the tee has both
        read_stream(tee, client, table, limit=3)
    tee.assert_identical()


def test_cached_update_trees_are_not_changed_by_use() -> None:
    """The parse cache shares trees: after every kind of use they are still what a fresh parse gives."""
    from moto.dynamodb.responses import DynamoHandler  # noqa: F401 - the handler imports the parser as patched

    def shape(node: Any) -> Any:
        if hasattr(node, "children") and node.children is not None:
            return (type(node).__name__, [shape(child) for child in node.children])
        if hasattr(node, "children"):
            return (type(node).__name__, repr(getattr(node, "value", None)))
        return repr(node)

    installed_before = moto_fast._installed
    layer = moto_fast.install()
    if layer is None:
        pytest.skip("the fast layer is off in this process")
    try:
        check_trees(layer, shape)
    finally:
        if installed_before is None:
            layer.uninstall()


def check_trees(layer: Any, shape: Any) -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    fresh = {}
    texts = [
        "SET #data = :data, #ts = :ts, #version = if_not_exists(#version, :zero) + :one, kind = :kind REMOVE x",
        "SET subs.#sid = :entry",
        "REMOVE subs.#sid",
        "SET #ts = :ts, #version = #version + :one, expires_at = :exp REMOVE #data, stream_key, group_key",
    ]
    for text in texts:
        fresh[text] = shape(UpdateExpressionParser.make(text))
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"ItemsTable": "t", "ConnectionsTable": "c"})
        store = DynamoItemStore(client, "t")
        for n in range(3):
            store.put(ItemAddress("s", "g", "i"), "{}", 10 + n, None if n % 2 else 10**6)
        store.put(ItemAddress("s", "g", "i"), "{}", 1, None)  # a failed condition, then a guarded retry
        store.delete(ItemAddress("s", "g", "i"), 100)
        connections = DynamoConnectionStore(client, "c")
        connections.save_connection(Connection("c1", 1))
        connections.add_subscription(Subscription("c1", "s1", "st", "g"))
        connections.remove_subscription("c1", "s1")
    assert set(texts) <= set(layer.parse_cache)
    for text in texts:
        assert shape(layer.parse_cache[text]) == fresh[text]
        assert shape(layer.parse_cache[text]) == shape(UpdateExpressionParser.make(text))


def test_install_is_pinned_to_the_moto_version(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import moto

    monkeypatch.setattr(moto_fast, "_installed", None)
    monkeypatch.setattr(moto, "__version__", "0.0.1")
    with caplog.at_level("WARNING", logger="iii_stream.local.dynamodb"):
        assert moto_fast.install() is None
    assert [r.getMessage() for r in caplog.records] == [
        f"moto fast layer off: written for moto {moto_fast.MOTO_VERSION}, found 0.0.1"
    ]


def test_uninstall_puts_moto_back() -> None:
    from moto.core import responses as core_responses
    from moto.core import serialize
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    before = moto_fast._installed
    if before is not None:
        pytest.skip("the layer is installed for this process already (EmbeddedDynamoDB installs it)")
    originals = (
        vars(UpdateExpressionParser)["make"],
        DepthFirstTraverser.process,
        core_responses.method_names_from_class,
        dict(serialize.SERVICE_SPECIFIC_SERIALIZERS),
    )
    env = os.environ.pop(moto_fast.ENV_SWITCH, None)
    try:
        layer = moto_fast.install()
        assert layer is not None
        assert "dynamodb" in serialize.SERVICE_SPECIFIC_SERIALIZERS
        layer.uninstall()
    finally:
        if env is not None:
            os.environ[moto_fast.ENV_SWITCH] = env
    assert (
        vars(UpdateExpressionParser)["make"],
        DepthFirstTraverser.process,
        core_responses.method_names_from_class,
        dict(serialize.SERVICE_SPECIFIC_SERIALIZERS),
    ) == originals
    assert "_iii_map" not in vars(DepthFirstTraverser)
