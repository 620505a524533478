"""Data-plane benchmark: the real Lambda handler over moto, in-process and over loopback HTTP.

Each scenario is timed call by call, and every call's DynamoDB requests are counted with a
botocore hook on the handler's own client (``iii_stream.wiring.dynamodb_client()``).
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Final

import boto3
from iii_stream import wiring
from moto import mock_aws

from bench.fake_aws import FakeLambdaContext
from bench.measure import Latency, RequestCounter, Requests
from bench.scenarios import SCENARIOS, WARM_UP, Payload, Scenario
from infra.embedded_dynamodb import EmbeddedDynamoDB
from infra.handlers import load_handler
from infra.template import create_tables

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
