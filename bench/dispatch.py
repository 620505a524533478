"""AWS requests per dispatched change: the dispatch Lambda on the items stream, cold and warm.

In-process moto for DynamoDB; user functions are answered at the ``lambda`` client boundary (a botocore
before-call hook returns 202 for ``Event`` invocations and ``true`` for the condition), so the count
covers exactly what the dispatch Lambda sends. "Cold" is the first change after a new container
(empty trigger cache), "warm" the changes after it.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from typing import Any

import boto3
from botocore.config import Config
from botocore.response import StreamingBody
from iii_stream.infra import botocore_answers
from moto import mock_aws

from bench.fake_aws import FakeLambdaContext
from bench.measure import RequestCounter

TABLES = {"ItemsTable": "bench-items", "TriggersTable": "bench-triggers", "ConnectionsTable": "bench-connections"}


def _answer_invokes(client: Any, calls: Counter[str]) -> None:
    def before_call(params: dict[str, Any], **_: Any) -> Any:
        invocation = params.get("headers", {}).get("X-Amz-Invocation-Type", "RequestResponse")
        calls[f"Invoke ({invocation})"] += 1
        body = b"true"
        status = 202 if invocation == "Event" else 200
        return botocore_answers.success(status, StatusCode=status, Payload=StreamingBody(io.BytesIO(body), len(body)))

    client.meta.events.register("before-call.lambda.Invoke", before_call)


def run(changes: int = 20) -> dict[str, Any]:
    from iii_stream import wiring
    from iii_stream.infra.handlers import load_handler
    from iii_stream.infra.local.stream_pump import StreamPump
    from iii_stream.infra.template import create_tables

    with mock_aws():
        os.environ.update(
            ITEMS_TABLE=TABLES["ItemsTable"],
            TRIGGERS_TABLE=TABLES["TriggersTable"],
            CONNECTIONS_TABLE=TABLES["ConnectionsTable"],
            TRIGGER_CACHE_SECONDS="60",
        )
        wiring.reset()
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, TABLES)
        registry = load_handler("registry_functions.handler")
        for payload in (
            {"function_id": "registry::register_function", "payload": {"function_id": "app::h", "target": "h"}},
            {"function_id": "registry::register_function", "payload": {"function_id": "app::c", "target": "c"}},
            {
                "function_id": "registry::register_trigger",
                "payload": {"type": "stream", "function_id": "app::h", "config": {"stream_name": "s"}},
            },
            {
                "function_id": "registry::register_trigger",
                "payload": {
                    "type": "stream",
                    "function_id": "app::h",
                    "config": {"stream_name": "s", "condition_function_id": "app::c"},
                },
            },
        ):
            assert "result" in registry(payload, FakeLambdaContext())
        functions = load_handler("stream_functions.handler")
        for n in range(changes):
            functions(
                {
                    "function_id": "stream::set",
                    "payload": {"stream_name": "s", "group_id": "g", "item_id": f"i{n}", "data": n},
                },
                FakeLambdaContext(),
            )
        wiring.reset()  # a new dispatch container: cold
        counter = RequestCounter(wiring.dynamodb_client())
        invokes: Counter[str] = Counter()
        _answer_invokes(wiring.lambda_client(), invokes)
        handler = load_handler("dispatch.handler")
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        arn = dynamodb.describe_table(TableName=TABLES["ItemsTable"])["Table"]["LatestStreamArn"]
        records: list[dict[str, Any]] = []
        pump = StreamPump(
            streams,
            arn,
            lambda event, context: _collect(records, event),
            context_factory=FakeLambdaContext,
        )
        pump.drain()
        real = [r for r in records if "data" in r["dynamodb"].get("NewImage", {})]  # moto's keys-only INSERTs out
        handler({"Records": real[:1]}, FakeLambdaContext())
        cold = {"dynamodb": dict(counter.take()), "lambda": dict(invokes)}
        invokes.clear()
        handler({"Records": real[1:]}, FakeLambdaContext())
        warm_changes = len(real) - 1
        warm = {
            "dynamodb": {k: v / warm_changes for k, v in counter.take().items()},
            "lambda": {k: v / warm_changes for k, v in invokes.items()},
        }
    wiring.reset()
    return {"triggers": 2, "changes": len(real), "cold_first_change": cold, "warm_per_change": warm}


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"Dispatch: AWS requests per change ({figures['triggers']} matching stream triggers, one with a condition)"
    ]
    for label, key in (("cold (first change)", "cold_first_change"), ("warm (per change)", "warm_per_change")):
        row = figures[key]
        dynamo = ", ".join(f"{k} {v:g}" for k, v in sorted(row["dynamodb"].items())) or "none"
        invokes = ", ".join(f"{k} {v:g}" for k, v in sorted(row["lambda"].items())) or "none"
        lines.append(f"  {label:<20} DynamoDB: {dynamo}; Lambda: {invokes}")
    return "\n".join(lines)


def write_json(figures: dict[str, Any]) -> str:
    from pathlib import Path

    path = Path(__file__).parent / "results" / "dispatch.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    return str(path)


def _collect(records: list[dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
    """The pump's handler: keep the batch's records, report no failure."""
    records.extend(event["Records"])
    return {}
