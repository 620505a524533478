"""A harness for the realtime layer: the real route handlers and broadcast handler, on moto.

Posts are captured at the ``@connections`` client boundary: the handlers' poster gets a recording transport
in place of its HTTP pool, which also answers 410 (GoneException) and throttling for the connection ids a
test marks, faults moto cannot produce (aws-local-tooling.md 3, option 2).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from iii_stream import wiring
from iii_stream.adapters.signed_poster import Backoff, Reply, SignedConnectionsPoster
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.apigw_events import ApiContext, connect_event, disconnect_event, message_event, new_id
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.stream_pump import StreamPump
from iii_stream.infra.template import create_tables

ITEMS = "rt-items"
CONNECTIONS = "rt-connections"
TRIGGERS = "rt-triggers"
ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"


class PostRecorder:
    """The ``@connections`` API at the poster's transport (the client boundary): records every post body per
    connection, answers 410 or 429 where a test says so, 200 otherwise. ``listeners`` hear every request's
    method (the IAM access check). Retries wait a few milliseconds instead of the poster's real backoff."""

    def __init__(self, poster: SignedConnectionsPoster) -> None:
        poster.transport = self
        poster.backoff = Backoff(poster.backoff.attempts, 0.001, 0.004, throttle_patience_seconds=0.05)
        self.sent: dict[str, list[bytes]] = defaultdict(list)
        self.gone: set[str] = set()
        self.throttle: dict[str, int] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        self.listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        connection_id = unquote(path.rsplit("/", 1)[-1])
        for listener in self.listeners:
            listener(method)
        with self._lock:
            if method == "POST":
                self.attempts[connection_id] += 1
            if connection_id in self.gone:
                return Reply(410, "GoneException", b"")
            if method == "GET":
                return Reply(200, None, b'{"connectedAt":"2026-12-02T00:00:00.000Z"}')
            if self.throttle.get(connection_id, 0) > 0:
                self.throttle[connection_id] -= 1
                return Reply(429, "LimitExceededException", b'{"message":"slow down"}')
            self.sent[connection_id].append(body)
        return Reply(200, None, b"")

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.sent[connection_id]]


class Realtime:
    """Drives the deployed-shape handlers: connect, frames, disconnect, writes, and the stream pump."""

    def __init__(self, monkeypatch: Any, **settings: str) -> None:
        env = {
            "ITEMS_TABLE": ITEMS,
            "CONNECTIONS_TABLE": CONNECTIONS,
            "CONNECTIONS_ENDPOINT": ENDPOINT,
            "TRIGGERS_TABLE": TRIGGERS,
            "TRIGGER_CACHE_SECONDS": "0",
            **settings,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        wiring.reset()
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, {"ItemsTable": ITEMS, "ConnectionsTable": CONNECTIONS, "TriggersTable": TRIGGERS})
        self.dynamodb = dynamodb
        self.api = ApiContext(api_id="abc123", stage="prod", domain_name="abc123.execute-api.us-east-1.amazonaws.com")
        self.posts = PostRecorder(wiring.connections_poster())
        self._connect = load_handler("ws_connect.handler")
        self._disconnect = load_handler("ws_disconnect.handler")
        self._message = load_handler("ws_message.handler")
        self._functions = load_handler("stream_functions.handler")
        self._registry = load_handler("registry_functions.handler")
        self.sweeper = load_handler("sweeper.handler")
        stream_arn = dynamodb.describe_table(TableName=ITEMS)["Table"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        self.pump = StreamPump(
            streams,
            stream_arn,
            load_handler("broadcast.handler"),
            context_factory=lambda: LocalLambdaContext("broadcast"),
        )
        self.dispatch_handler = load_handler("dispatch.handler")
        self.dispatch = StreamPump(
            streams, stream_arn, self.dispatch_handler, context_factory=lambda: LocalLambdaContext("dispatch")
        )
        self.connected_at: dict[str, int] = {}

    def connect(
        self,
        headers: dict[str, str] | None = None,
        query: dict[str, list[str]] | None = None,
        connection_id: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        connection_id = connection_id or new_id()
        self.connected_at[connection_id] = 1_700_000_000_000
        event = connect_event(
            self.api,
            connection_id,
            self.connected_at[connection_id],
            headers or {"Host": self.api.domain_name},
            query or {},
            "203.0.113.7",
        )
        return connection_id, self._connect(event, LocalLambdaContext("connect"))

    def send(self, connection_id: str, frame: Any) -> Any:
        body = frame if isinstance(frame, str) else json.dumps(frame)
        event = message_event(self.api, connection_id, self.connected_at.get(connection_id, 0), body, "203.0.113.7")
        return self._message(event, LocalLambdaContext("message"))

    def join(
        self, connection_id: str, stream: str, group: str, item: str | None = None, subscription_id: str | None = None
    ) -> str:
        subscription_id = subscription_id or new_id()
        data = {"streamName": stream, "groupId": group, "subscriptionId": subscription_id}
        if item is not None:
            data["id"] = item
        self.send(connection_id, {"type": "join", "data": data})
        return subscription_id

    def disconnect(self, connection_id: str) -> Any:
        event = disconnect_event(
            self.api, connection_id, self.connected_at.get(connection_id, 0), 1001, "Going away", "203.0.113.7"
        )
        return self._disconnect(event, LocalLambdaContext("disconnect"))

    def call(self, function_id: str, **payload: Any) -> Any:
        response = self._functions({"function_id": function_id, "payload": payload}, LocalLambdaContext("fn"))
        assert "result" in response, response
        return response["result"]

    def register(self, registry_function: str, **payload: Any) -> Any:
        """Call the registry Lambda (``registry::register_trigger`` and so on)."""
        event = {"function_id": registry_function, "payload": payload}
        return self._registry(event, LocalLambdaContext("registry"))

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        return self.posts.frames(connection_id)

    def events(self, connection_id: str) -> list[tuple[str, Any]]:
        """``(event type, id)`` of every frame a connection got, in order."""
        return [(f["event"]["type"], f["id"]) for f in self.frames(connection_id)]


class UserFunctions:
    """Python functions served as Lambdas (behind a local Lambda endpoint); every call recorded."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = defaultdict(list)
        self.behaviour: dict[str, Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        def run(event: Any, context: Any) -> Any:
            with self._lock:
                self.calls[name].append(event)
            return self.behaviour.get(name, lambda e: None)(event)

        return run
