"""Data-plane benchmark: the real Lambda handler over moto, in-process and over loopback HTTP.

Each scenario is timed call by call, and every call's DynamoDB requests are counted with a
botocore hook on the handler's own client (``iii_stream.wiring.dynamodb_client()``).

``set_overhead``: ``stream::set`` through ``stream_functions.handler`` against the very UpdateItem it sends,
made bare with boto3 against the same in-process moto (captured from the handler's client, replayed with
fresh keys), call for call, interleaved. ``subscriber_row_cpu_ms``: the broadcast's CPU per row of its
subscriber Query (botocore's parse and the connection store's decode of a canned 10,000-row answer).
"""

from __future__ import annotations

import base64
import copy
import gc
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import boto3
from botocore.awsrequest import AWSResponse
from iii_stream import wiring
from iii_stream.adapters import keys
from iii_stream.adapters.dynamodb_common import n, s
from iii_stream.adapters.dynamodb_connections import DynamoConnectionStore
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.template import create_tables
from moto import mock_aws

from bench.fake_aws import FakeLambdaContext
from bench.measure import Latency, RequestCounter, Requests
from bench.scenarios import DATA, SCENARIOS, STREAM, WARM_UP, Payload, Scenario

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    default_iterations: int
    backend: Callable[[], AbstractContextManager[None]]


@contextmanager
def _in_process() -> Iterator[None]:
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    with mock_aws():
        yield


@contextmanager
def _server() -> Iterator[None]:
    server = EmbeddedDynamoDB()
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.start()
    try:
        yield
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        server.stop()


MODES: Final = {
    "in-process": Mode("in-process", "moto in-process (mock_aws), no sockets", 300, _in_process),
    "server": Mode("server", "moto server on 127.0.0.1 (real HTTP)", 200, _server),
}


@dataclass(frozen=True)
class OperationResult:
    name: str
    function_id: str
    iterations: int
    ops_per_s: float
    latency: Latency
    requests: Requests
    errors: int
    first_error: dict[str, Any] | None


@dataclass(frozen=True)
class ModeResult:
    mode: str
    description: str
    iterations: int
    operations: list[OperationResult]


class Driver:
    """Invokes the handler as Lambda does (an event and a context object) and counts its DynamoDB requests."""

    def __init__(self, handler: Handler, counter: RequestCounter) -> None:
        self.handler = handler
        self.counter = counter
        self.context = FakeLambdaContext()

    def checked(self, function_id: str, payload: Payload) -> Any:
        """An untimed call that must succeed (set-up and warm-up)."""
        response = self.handler({"function_id": function_id, "payload": payload}, self.context)
        if "error" in response:
            raise RuntimeError(f"benchmark set-up: {function_id} failed: {response['error']}")
        return response["result"]

    def measure(self, scenario: Scenario, iterations: int) -> OperationResult:
        iterations = scenario.calls(iterations)
        for function_id, payload in scenario.setup(iterations):
            self.checked(function_id, payload)
        events = [{"function_id": scenario.function_id, "payload": scenario.payload(i)} for i in range(iterations)]
        samples: list[int] = []
        per_call: list[Counter[str]] = []
        errors: list[dict[str, Any]] = []
        self.counter.take()
        retries_before = self.counter.retries
        gc.collect()
        started = time.perf_counter_ns()
        for event in events:
            t0 = time.perf_counter_ns()
            response = self.handler(event, self.context)
            samples.append(time.perf_counter_ns() - t0)
            per_call.append(self.counter.take())
            if "error" in response:
                errors.append(response["error"])
        elapsed_s = (time.perf_counter_ns() - started) / 1e9
        return OperationResult(
            name=scenario.name,
            function_id=scenario.function_id,
            iterations=iterations,
            ops_per_s=round(iterations / elapsed_s, 1),
            latency=Latency.of(samples),
            requests=Requests.of(per_call, self.counter.retries - retries_before),
            errors=len(errors),
            first_error=errors[0] if errors else None,
        )


def run_mode(mode: Mode, iterations: int) -> ModeResult:
    """Create the items table in the mode's backend, build the handler's client there, measure every scenario."""
    table = f"iii-stream-bench-{mode.name}"
    with mode.backend():
        os.environ["ITEMS_TABLE"] = table
        create_tables(boto3.client("dynamodb"), {"ItemsTable": table})
        wiring.reset()  # the handler builds its client here: inside the mock, or against the endpoint
        try:
            driver = Driver(load_handler("stream_functions.handler"), RequestCounter(wiring.dynamodb_client()))
            for function_id, payload in WARM_UP:
                driver.checked(function_id, payload)
            operations = [driver.measure(scenario, iterations) for scenario in SCENARIOS]
        finally:
            wiring.reset()
    return ModeResult(mode.name, mode.description, iterations, operations)


OVERHEAD_PAIRS: Final = 300
OVERHEAD_WARM_UP: Final = 20
OVERHEAD_GROUP: Final = "overhead"
ROWS: Final = 10_000


@dataclass(frozen=True)
class SetOverhead:
    """``stream::set`` through the handler against its own UpdateItem made bare with boto3 (medians, ms)."""

    pairs: int
    set_ms: float
    bare_ms: float
    ratio: float
    set_requests: int  # the most DynamoDB requests one set made


class _UpdateItemCapture:
    """The parameters of the last UpdateItem the client was asked to send, as the caller gave them."""

    def __init__(self, client: Any) -> None:
        self.request: dict[str, Any] = {}
        client.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._keep)

    def _keep(self, params: dict[str, Any], **_: Any) -> None:
        self.request = copy.deepcopy(params)


def _bare_request(captured: dict[str, Any], item_id: str) -> dict[str, Any]:
    """The captured UpdateItem for another item of the group, stamped now (its condition wants a newer ts)."""
    request = copy.deepcopy(captured)
    request["Key"] = {"pk": s(keys.item_partition(STREAM, OVERHEAD_GROUP)), "sk": s(keys.item_sort(item_id))}
    request["ExpressionAttributeValues"][":ts"] = n(int(time.time() * 1000))
    return request


def _timed_ns(call: Callable[[], Any]) -> int:
    started = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - started


def set_overhead(pairs: int = OVERHEAD_PAIRS) -> SetOverhead:
    """Median per-call time of ``stream::set`` (new items) over the median of its bare UpdateItem, interleaved."""
    table = "iii-stream-bench-overhead"
    with _in_process():
        os.environ["ITEMS_TABLE"] = table
        create_tables(boto3.client("dynamodb"), {"ItemsTable": table})
        wiring.reset()
        try:
            handler, context = load_handler("stream_functions.handler"), FakeLambdaContext()
            captured, counter = _UpdateItemCapture(wiring.dynamodb_client()), RequestCounter(wiring.dynamodb_client())
            bare = boto3.client("dynamodb")

            def ours(item_id: str) -> None:
                payload = {"stream_name": STREAM, "group_id": OVERHEAD_GROUP, "item_id": item_id, "data": DATA}
                response = handler({"function_id": "stream::set", "payload": payload}, context)
                if "error" in response:
                    raise RuntimeError(f"stream::set failed: {response['error']}")

            for i in range(OVERHEAD_WARM_UP):
                ours(f"warm-{i}")
                bare.update_item(**_bare_request(captured.request, f"bare-warm-{i}"))
            counter.take()
            ours_ns: list[int] = []
            bare_ns: list[int] = []
            requests: list[int] = []
            gc.collect()
            for i in range(pairs):
                request = _bare_request(captured.request, f"bare-{i}")
                calls = [(ours_ns, partial(ours, f"ours-{i}")), (bare_ns, partial(bare.update_item, **request))]
                for samples, call in calls if i % 2 else calls[::-1]:  # each goes first every other time
                    samples.append(_timed_ns(call))
                requests.append(sum(counter.take().values()))
        finally:
            wiring.reset()
    set_ms, bare_ms = statistics.median(ours_ns) / 1e6, statistics.median(bare_ns) / 1e6
    return SetOverhead(pairs, round(set_ms, 4), round(bare_ms, 4), round(set_ms / bare_ms, 4), max(requests))


def _canned_query(body: bytes) -> Callable[..., AWSResponse]:
    """A before-send answer: every Query gets ``body``, so botocore parses it as it would DynamoDB's."""

    class _Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def answer(request: Any, **_: Any) -> AWSResponse:
        response = AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Raw())
        response._content = body  # botocore reads .content
        return response

    return answer


def subscriber_row_cpu_ms(rows: int = ROWS, repeats: int = 3) -> float:
    """The broadcast's CPU (ms, this thread) per subscriber row of one Query page, median of ``repeats``."""
    items = [
        {"sk": keys.subscription_key(_connection_id(i), str(uuid.uuid4()), STREAM, "room")["sk"]} for i in range(rows)
    ]
    body = json.dumps({"Items": items, "Count": rows, "ScannedCount": rows}).encode()
    client = boto3.client("dynamodb")
    client.meta.events.register("before-send.dynamodb.Query", _canned_query(body))
    store = DynamoConnectionStore(client, "iii-stream-bench-connections")
    store.subscribers(STREAM, "room")  # first use: the operation model, the parser
    figures = []
    for _ in range(repeats):
        gc.collect()
        started = time.thread_time()
        found = store.subscribers(STREAM, "room")
        figures.append((time.thread_time() - started) * 1000 / len(found))
    client.close()
    return round(statistics.median(figures), 5)


def _connection_id(index: int) -> str:
    """Shaped like API Gateway's: 16 characters of URL-safe base64 ending in '='."""
    return base64.urlsafe_b64encode(index.to_bytes(11, "big")).decode()
