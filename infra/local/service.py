"""``iii-stream local``: the whole service on one machine, on embedded defaults.

It runs, in one process: an embedded DynamoDB with Streams (moto, tables from template.yaml) or a
given endpoint; the WebSocket gateway on 3112; the ``@connections`` endpoint; the Lambda invoke
endpoint on 3001 (the stream and registry functions, and the user's functions); and two stream
pumps that feed the broadcast and dispatch handlers, woken by every write. The handlers are the
very ones deployed to Lambda; only the endpoints their boto3 clients reach are local.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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
from iii_stream.infra.local.snapshots import Declared, Snapshots
from iii_stream.infra.local.stream_pump import StreamPump
from iii_stream.infra.template import create_tables

log = logging.getLogger("iii_stream.local")

TABLES = {
    "ItemsTable": "iii-stream-items",
    "ConnectionsTable": "iii-stream-connections",
    "TriggersTable": "iii-stream-triggers",
}
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
T = TypeVar("T")
# What listens where: the flag that moves each port, and what the port is for (in the message when it is taken).
_PORT_FLAGS = {
    "--port": "the WebSocket gateway",
    "--lambda-port": "the Lambda endpoint",
    "--connections-port": "the @connections endpoint",
    "--http-port": "your app's HTTP routes",
}


class PortUnavailable(Exception):
    """A port the service needs cannot be listened on; the message names it and the flag that moves it."""

    def __init__(self, host: str, port: int, flag: str, error: OSError, also: str | None = None) -> None:
        what = _PORT_FLAGS.get(flag, "the service")
        move = f"choose another port with {flag} PORT"
        if also is not None:
            message = f"port {port} ({what}) is given to {also} too: {move}"
        elif error.errno == errno.EADDRINUSE:
            message = f"port {port} ({what}) is already in use on {host}: stop what uses it, or {move}"
        else:
            message = f"cannot listen on {host}:{port} ({what}): {error.strerror or error}: {move}"
        super().__init__(message)
        self.port = port
        self.flag = flag


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
    data_dir: str | None = None  # snapshots of the embedded tables (the CLI's default: .iii-stream); None: in memory
    snapshot_seconds: float = 30.0  # a snapshot after a change, at most this often (and one on a clean stop)


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
        self.snapshots: Snapshots | None = None

    def start(self) -> None:
        # Many threads share one interpreter lock here (moto, the endpoints, the pumps, the post pool): hand
        # it over more often, so the gateway's event loop sends a frame soon after it is posted.
        sys.setswitchinterval(0.0005)
        # Route lines come from the gateway; the handlers' own JSON logs only for warnings (set before import).
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        _quiet_metrics()  # before any handler (or the app) makes its Metrics
        app = _load_app(self.config.app_path) if self.config.app_path else None
        self.check_ports(serves_http=app is not None and bool(app.routes))  # before anything slow
        self._open_snapshots()  # first: a snapshot that cannot be read stops the start before anything runs
        self._start_dynamodb()
        self._restore_snapshot()  # before anything is served
        self.gateway = WebSocketGateway(self._routes(), self.config.host, self.config.port)
        self._listening("--port", self.config.port, self.gateway.start)
        self.connections = ConnectionsEndpoint(self.gateway, self.config.host, self.config.connections_port)
        connections_url = self._listening("--connections-port", self.config.connections_port, self.connections.start)
        self._configure(connections_url, app)
        functions = self._functions(app)
        self.lambda_endpoint = self._listening(
            "--lambda-port",
            self.config.lambda_port,
            lambda: LambdaEndpoint(functions, self.config.host, self.config.lambda_port, describe=self._who),
        )
        self.lambda_endpoint.start()
        if app is not None and app.routes:
            self.http_api = HttpApi.for_app(app, self.config.host, self.config.http_port)
            self._listening("--http-port", self.config.http_port, self.http_api.start)
        self._forget_undeclared(app)
        if app is not None:
            self._register(app)
        self._start_pumps()
        if self.snapshots is not None:
            self.snapshots.start()

    def check_ports(self, serves_http: bool) -> None:
        """Raise PortUnavailable at once when a port asked for cannot be listened on, before anything slow starts.
        Each is held while the next is tried, so two flags given the same port are caught too."""
        wanted = {
            "--port": self.config.port,
            "--lambda-port": self.config.lambda_port,
            "--connections-port": self.config.connections_port,
        }
        if serves_http:
            wanted["--http-port"] = self.config.http_port
        given: dict[int, str] = {}
        with contextlib.ExitStack() as held:
            for flag, port in wanted.items():
                if port in given:
                    error = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
                    raise PortUnavailable(self.config.host, port, flag, error, also=given[port])
                if port:  # 0: any free port
                    held.enter_context(self._listening(flag, port, partial(_probe, self.config.host, port)))
                    given[port] = flag

    def _listening(self, flag: str, port: int, start: Callable[[], T]) -> T:
        """``start()``; an OSError binding the port becomes PortUnavailable, naming the port and its flag."""
        try:
            return start()
        except TimeoutError:  # an OSError too, but not about the port
            raise
        except OSError as exc:
            raise PortUnavailable(self.config.host, port, flag, exc) from exc

    def _who(self, name: str, event: Any, invocation_type: str) -> str:
        """For the log line of a function that failed at the Lambda endpoint: which of the app's functions it is,
        and the triggers that ran it (those registered for it that match the event)."""
        function_id = next((fid for fid, target in self.user_functions.items() if target == name), None)
        if function_id is None:
            return ""
        words = [f"function {function_id}"]
        if os.environ.get("AUTH_FUNCTION") == name:
            words.append("the auth function")
        triggers = _triggers_running(function_id, event, invocation_type)
        if triggers:
            words.append(("trigger " if len(triggers) == 1 else "triggers ") + ", ".join(triggers))
        return ", ".join(words)

    def _start_dynamodb(self) -> None:
        for name, value in _FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if not self.dynamodb_endpoint:
            self._dynamodb = EmbeddedDynamoDB()
            self.dynamodb_endpoint = self._dynamodb.start()
        client: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        existing = set(client.list_tables()["TableNames"])
        create_tables(client, {logical: name for logical, name in TABLES.items() if name not in existing})

    def _open_snapshots(self) -> None:
        """Snapshots of the embedded tables in ``data_dir`` (none in memory, none for a DynamoDB of one's own)."""
        if self.config.data_dir is None or self.dynamodb_endpoint:
            return
        self.snapshots = Snapshots(self.config.data_dir, TABLES, self.config.snapshot_seconds)
        self.snapshots.open()

    def _restore_snapshot(self) -> None:
        if self.snapshots is None:
            return
        client: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        arns = {logical: client.describe_table(TableName=name)["Table"]["TableArn"] for logical, name in TABLES.items()}
        restored = self.snapshots.restore(arns)
        if self.snapshots.loaded is not None:
            log.info("snapshot loaded from %s: %s", self.snapshots.path, restored.summary())

    def _forget_undeclared(self, app: Any) -> None:
        """Registrations the last run's ``--app`` made and this one's no longer declares are removed (as a stack
        update removes them); the ones made otherwise (``iii-stream functions/triggers register``) are kept."""
        if self.snapshots is None:
            return
        declared = Declared(
            tuple(app.functions) if app is not None else (),
            tuple(trigger.id for trigger in app.triggers) if app is not None else (),
        )
        self.snapshots.declared = declared
        before = self.snapshots.loaded.declared if self.snapshots.loaded is not None else Declared()
        triggers = [id_ for id_ in before.triggers if id_ not in declared.triggers]
        functions = [id_ for id_ in before.functions if id_ not in declared.functions]
        if not triggers and not functions:
            return
        from iii_stream.client import RegistryClient, StreamCallError
        from iii_stream.wiring import registry_service

        registry = RegistryClient.direct(registry_service())
        for trigger_id in triggers:
            with contextlib.suppress(StreamCallError):  # trigger_not_found: removed by hand meanwhile
                registry.unregister_trigger(trigger_id)
        for function_id in functions:
            try:
                registry.unregister_function(function_id)
            except StreamCallError as exc:
                if exc.code != "function_not_found":
                    log.warning("%s, no longer declared by the app, is kept: %s", function_id, exc.message)
        log.info("no longer declared by the app, unregistered: %s", ", ".join([*triggers, *functions]))

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
                name=name,
                reasons=_batch_reasons(name),
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
            *self._data_lines(),
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
        try:
            if self.snapshots is not None:
                self.snapshots.close()  # the last snapshot: every socket, pump and call is done by now
        finally:
            if self._dynamodb:
                self._dynamodb.stop()

    def _data_lines(self) -> list[str]:
        """The banner's word on what a restart keeps."""
        if self.snapshots is not None:
            return self.snapshots.describe()
        if self.config.dynamodb_endpoint:
            return [
                f"Data kept in               the DynamoDB at {self.dynamodb_endpoint}: "
                "nothing is snapshotted (--dynamodb-endpoint)"
            ]
        return ["Data kept in               memory only (--in-memory): nothing read or written, all gone on stop"]


def _probe(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, bound as the servers bind theirs (SO_REUSEADDR); close it at once."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        probe.listen(1)
    except BaseException:
        probe.close()
        raise
    return probe


class _LatestValueOnly(dict[str, Any]):
    """A powertools metric set that keeps each metric's latest value only (see ``_quiet_metrics``)."""

    def __setitem__(self, name: str, metric: Any) -> None:
        values = metric.get("Value") if isinstance(metric, dict) else None
        if isinstance(values, list):
            del values[:-1]
        super().__setitem__(name, metric)


def _quiet_metrics() -> None:
    """No EMF lines locally. POWERTOOLS_METRICS_DISABLED stops the flush at the end of each invocation, but not the
    one powertools makes when a metric reaches 100 values (``MAX_METRICS``, in ``add_metric``); and a disabled flush
    never clears the set, so every 100th batch the pumps deliver printed one (as would one batch of 100 records).
    Every ``Metrics`` shares its class's metric set: made before any handler module is imported, this one never
    holds more than one value per metric, so it is never flushed."""
    from aws_lambda_powertools import Metrics

    if not isinstance(Metrics._metrics, _LatestValueOnly):  # noqa: SLF001 - the set all its instances share
        Metrics._metrics = _LatestValueOnly()  # noqa: SLF001


def _triggers_running(function_id: str, event: Any, invocation_type: str) -> list[str]:
    """The registered triggers that run ``function_id`` (as handler or as condition) for this event."""
    from iii_stream.wiring import registry_store

    try:
        triggers = registry_store().triggers()
    except Exception:  # noqa: BLE001 - only for a log line
        return []
    return [trigger.trigger_id for trigger in triggers if _runs(trigger, function_id, event, invocation_type)]


def _runs(trigger: Any, function_id: str, event: Any, invocation_type: str) -> bool:
    from iii_stream.core.changes import Change
    from iii_stream.core.ports import Subscription
    from iii_stream.core.registry import LifecycleTriggerConfig, StreamTriggerConfig
    from iii_stream.core.triggers import lifecycle_trigger_matches, stream_trigger_matches

    as_handler = trigger.function_id == function_id
    if not (as_handler or trigger.condition() == function_id) or not isinstance(event, dict):
        return False
    config = trigger.config
    if isinstance(config, StreamTriggerConfig):  # the event is the change's StreamWrapperMessage
        if event.get("type") != "stream" or not isinstance(event.get("streamName"), str):
            return False
        item_id = event.get("id") if isinstance(event.get("id"), str) else None
        change = Change(event["streamName"], str(event.get("groupId", "")), item_id, "event", None, 0)
        return stream_trigger_matches(config, change)
    if isinstance(config, LifecycleTriggerConfig) and "subscription_id" in event:
        # join handlers are asked (RequestResponse), leave handlers queued (Event); conditions are always asked
        expected = "RequestResponse" if trigger.type == "stream:join" else "Event"
        if as_handler and invocation_type != expected:
            return False
        subscription = Subscription(
            "", str(event["subscription_id"]), str(event.get("stream_name", "")), str(event.get("group_id", ""))
        )
        return lifecycle_trigger_matches(config, subscription)
    return False


def _batch_reasons(module_name: str) -> Callable[[], dict[str, str]] | None:
    """Why the records of a pump handler's last batch failed, by sequence number, as its powertools BatchProcessor
    (dispatch's ``processor``) kept them: the handler's answer names the records only. None without one."""
    processor = getattr(sys.modules.get(module_name), "processor", None)
    if processor is None:
        return None

    def reasons() -> dict[str, str]:
        found: dict[str, str] = {}
        for record, info in zip(list(processor.fail_messages), list(processor.exceptions), strict=False):
            sequence_number = getattr(getattr(record, "dynamodb", None), "sequence_number", None)
            error = info[1] if isinstance(info, tuple) and len(info) > 1 else info
            if sequence_number is not None:
                found[str(sequence_number)] = f"{type(error).__name__}: {error}"
        return found

    return reasons


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
