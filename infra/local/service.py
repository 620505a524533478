"""``iii-stream local``: the whole service on one machine, on embedded defaults.

It runs, in one process: an embedded DynamoDB with Streams (moto, tables from template.yaml) or a
given endpoint; the WebSocket gateway on 3112; the ``@connections`` endpoint; the Lambda invoke
endpoint on 3001 (the stream and registry functions, and the user's functions); and two stream
pumps that feed the broadcast and dispatch handlers, woken by every write. The handlers are the
very ones deployed to Lambda; only the endpoints their boto3 clients reach are local.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from iii_stream.infra import embedded_dynamodb
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.connections_endpoint import ConnectionsEndpoint
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.gateway import RouteHandlers, WebSocketGateway
from iii_stream.infra.local.http_api import HttpApi
from iii_stream.infra.local.lambda_endpoint import Handler, LambdaEndpoint
from iii_stream.infra.local.stream_pump import StreamPump
from iii_stream.infra.template import create_tables

log = logging.getLogger("iii_stream.local")

TABLES = {
    "ItemsTable": "iii-stream-items",
    "ConnectionsTable": "iii-stream-connections",
    "TriggersTable": "iii-stream-triggers",
}
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class LocalConfig:
    host: str = "127.0.0.1"
    port: int = 3112
    lambda_port: int = 3001
    connections_port: int = 0
    dynamodb_endpoint: str | None = None
    app_path: str | None = None
    auth_fail_open: bool = False
    join_fail_open: bool = False
    http_port: int = 3000  # the app's HTTP routes (served only when it declares some)


FANOUT_FUNCTION = "FanoutFunction"  # the fan-out tier, invoked by broadcast through the local Lambda endpoint


class LocalService:
    """Starts the local stand-ins and points the real handlers at them (in this process)."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self._dynamodb: EmbeddedDynamoDB | None = None
        self.dynamodb_endpoint = config.dynamodb_endpoint or ""
        self.gateway: WebSocketGateway | None = None
        self.connections: ConnectionsEndpoint | None = None
        self.lambda_endpoint: LambdaEndpoint | None = None
        self.http_api: HttpApi | None = None
        self.pumps: list[StreamPump] = []
        self._threads: list[threading.Thread] = []
        self.user_functions: dict[str, str] = {}

    def start(self) -> None:
        # Many threads share one interpreter lock here (moto, the endpoints, the pumps, the post pool): hand
        # it over more often, so the gateway's event loop sends a frame soon after it is posted.
        sys.setswitchinterval(0.0005)
        # Route lines come from the gateway; the handlers' own JSON logs only for warnings (set before import).
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        self._start_dynamodb()
        app = _load_app(self.config.app_path) if self.config.app_path else None
        self.gateway = WebSocketGateway(self._routes(), self.config.host, self.config.port)
        self.gateway.start()
        self.connections = ConnectionsEndpoint(self.gateway, self.config.host, self.config.connections_port)
        self._configure(self.connections.start(), app)
        functions = self._functions(app)
        self.lambda_endpoint = LambdaEndpoint(functions, self.config.host, self.config.lambda_port)
        self.lambda_endpoint.start()
        if app is not None and app.routes:
            self.http_api = HttpApi.for_app(app, self.config.host, self.config.http_port)
            self.http_api.start()
        if app is not None:
            self._register(app)
        self._start_pumps()

    def _start_dynamodb(self) -> None:
        for name, value in _FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if not self.dynamodb_endpoint:
            self._dynamodb = EmbeddedDynamoDB()
            self.dynamodb_endpoint = self._dynamodb.start()
        client: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        existing = set(client.list_tables()["TableNames"])
        create_tables(client, {logical: name for logical, name in TABLES.items() if name not in existing})

    def _configure(self, connections_endpoint: str, app: Any) -> None:
        """The environment the handlers read, as the template sets it on AWS (plus the local endpoints)."""
        env = {
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": f"http://{self.config.host}:{self.config.lambda_port}",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "ITEMS_TABLE": TABLES["ItemsTable"],
            "CONNECTIONS_TABLE": TABLES["ConnectionsTable"],
            "TRIGGERS_TABLE": TABLES["TriggersTable"],
            "CONNECTIONS_ENDPOINT": connections_endpoint,
            "AUTH_FAIL_OPEN": str(self.config.auth_fail_open).lower(),
            "JOIN_FAIL_OPEN": str(self.config.join_fail_open).lower(),
            "TRIGGER_CACHE_SECONDS": "1",
            "FANOUT_FUNCTION": FANOUT_FUNCTION,  # served by the Lambda endpoint, as on AWS
            "POWERTOOLS_METRICS_NAMESPACE": "iii-stream-local",
            "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines are for CloudWatch; locally they would be noise
        }
        if app is not None and app.auth_function_id:
            env["AUTH_FUNCTION"] = _target(app.auth_function_id)
        os.environ.update(env)
        from iii_stream import wiring

        wiring.reset()

    def _routes(self) -> RouteHandlers:
        return RouteHandlers(
            connect=load_handler("ws_connect.handler"),
            disconnect=load_handler("ws_disconnect.handler"),
            message=load_handler("ws_message.handler"),
        )

    def _functions(self, app: Any) -> dict[str, Handler]:
        functions: dict[str, Handler] = {
            "StreamFunction": load_handler("stream_functions.handler"),
            "RegistryFunction": load_handler("registry_functions.handler"),
            FANOUT_FUNCTION: load_handler("fanout.handler"),
        }
        for function_id, handler in app.functions.items() if app is not None else []:
            functions[_target(function_id)] = handler
            self.user_functions[function_id] = _target(function_id)
        return functions

    def _register(self, app: Any) -> None:
        from iii_stream.client import RegistryClient
        from iii_stream.wiring import registry_service

        registry = RegistryClient.direct(registry_service())
        for function_id in app.functions:
            registry.register_function(function_id, _target(function_id), "declared in " + str(self.config.app_path))
        for declared in app.triggers:
            registry.register_trigger(declared.type, declared.function_id, declared.config, declared.id)

    def _start_pumps(self) -> None:
        streams: Any = boto3.client(
            "dynamodbstreams", endpoint_url=self.dynamodb_endpoint, config=Config(account_id_endpoint_mode="disabled")
        )
        dynamodb: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        arn = dynamodb.describe_table(TableName=TABLES["ItemsTable"])["Table"]["LatestStreamArn"]
        for name in ("broadcast", "dispatch"):
            pump = StreamPump(
                streams,
                arn,
                load_handler(f"{name}.handler"),
                start="LATEST",
                context_factory=partial(LocalLambdaContext, function_name=name),
            )
            self.pumps.append(pump)
            embedded_dynamodb.on_write(pump.wake)
            # Broadcast is what a subscriber waits for; triggers run asynchronously anyway, so dispatch lets
            # broadcast read the stream first (one process, one interpreter lock).
            settle = 0.05 if name == "dispatch" else 0.0
            thread = threading.Thread(
                target=pump.run,
                kwargs={"idle_poll_seconds": 0.5, "settle_seconds": settle},
                name=f"pump-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def describe(self) -> list[str]:
        assert self.gateway and self.connections and self.lambda_endpoint
        lines = [
            f"WebSocket gateway          {self.gateway.url}",
            f"Lambda invoke endpoint     {self.lambda_endpoint.endpoint_url}   "
            "(StreamFunction, RegistryFunction, FanoutFunction)",
            f"@connections endpoint      {self.connections.endpoint_url}",
            ("DynamoDB (embedded moto)   " if self._dynamodb else "DynamoDB                   ")
            + self.dynamodb_endpoint,
            f"Tables                     {', '.join(TABLES.values())}",
        ]
        if self.user_functions:
            lines.append(
                "Your functions             " + ", ".join(f"{k} ({v})" for k, v in self.user_functions.items())
            )
        if self.http_api is not None:
            routes = ", ".join(route.route_key for route in self.http_api.routes)
            lines.append(f"Your HTTP routes           {self.http_api.url}   ({routes})")
        return lines

    def stop(self) -> None:
        if self.http_api:
            self.http_api.stop()
        if self.gateway:
            self.gateway.stop()  # open sockets close; their $disconnect (and leaves) run
        for pump in self.pumps:
            pump.drain()
            pump.stop()
            embedded_dynamodb.remove_write_listener(pump.wake)
        for thread in self._threads:
            thread.join(timeout=5)
        if self.connections:
            self.connections.stop()
        if self.lambda_endpoint:
            self.lambda_endpoint.stop()
        if self._dynamodb:
            self._dynamodb.stop()


def _target(function_id: str) -> str:
    from iii_stream.app import lambda_name

    return lambda_name(function_id)


def _load_app(path: str) -> Any:
    """Import the user's Python file and return its ``iii_stream.app.App`` (the first one found)."""
    from iii_stream.app import App

    file = Path(path).resolve()
    if not file.is_file():
        raise SystemExit(f"iii-stream local: no such file {path}")
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(file.stem, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    spec.loader.exec_module(module)
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if not apps:
        raise SystemExit(f"iii-stream local: {path} declares no iii_stream.app.App")
    return apps[0]
