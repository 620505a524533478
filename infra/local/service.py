"""``iii-stream local``: the whole service on one machine, on embedded defaults.

It runs: an embedded DynamoDB with Streams (moto, tables from template.yaml, in a process of its own that keeps
the snapshots: ``dynamodb_process.py``) or a given endpoint; the WebSocket gateway on 3112; the ``@connections``
endpoint; the Lambda invoke endpoint on 3001 (the stream and registry functions, and the user's functions); and
two stream pumps that feed the broadcast and dispatch functions, woken by every write. Every function runs in the
local Lambda runtime (``runtime.py``): in worker processes of its own, with its own environment, timeout and
concurrency, as on Lambda. The handlers are the very ones deployed to Lambda; only the endpoints their boto3
clients reach are local.
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
from iii_stream.infra.local.connections_endpoint import ConnectionsEndpoint
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.dynamodb_process import DynamoDBProcess, DynamoDBSettings
from iii_stream.infra.local.functions import ENDPOINT_FUNCTIONS, LocalSettings, app_specs, template_specs
from iii_stream.infra.local.gateway import RouteHandlers, WebSocketGateway
from iii_stream.infra.local.http_api import HttpApi, authorize_through, invoke_through
from iii_stream.infra.local.lambda_endpoint import Handler, LambdaEndpoint
from iii_stream.infra.local.reloader import AppWatcher
from iii_stream.infra.local.runtime import FunctionSpec, LocalRuntime
from iii_stream.infra.local.snapshots import Declared
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
    concurrency: int = 4  # at most this many invocations of each function at once (a worker process each)
    reload: bool = False  # watch the app file: fresh workers and registrations when it changes


class LocalService:
    """Starts the local stand-ins, and runs the real handlers in the local runtime, pointed at them."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self._dynamodb: DynamoDBProcess | None = None  # the embedded one, in a process of its own
        self.dynamodb_endpoint = config.dynamodb_endpoint or ""
        self.gateway: WebSocketGateway | None = None
        self.connections: ConnectionsEndpoint | None = None
        self.lambda_endpoint: LambdaEndpoint | None = None
        self.http_api: HttpApi | None = None
        self.pumps: list[StreamPump] = []
        self._threads: list[threading.Thread] = []
        self.user_functions: dict[str, str] = {}
        self.runtime = LocalRuntime()
        self.app: Any = None
        self._connections_url = ""
        self._watcher: AppWatcher | None = None

    def start(self) -> None:
        # Several threads share one interpreter lock here (the gateway, the endpoints, the pumps): hand it over
        # more often, so the gateway's event loop sends a frame soon after it is posted.
        sys.setswitchinterval(0.0005)
        # Route lines come from the gateway; the handlers' own JSON logs only for warnings (set before import).
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        app = self.app = _load_app(self.config.app_path) if self.config.app_path else None
        self.check_ports(serves_http=app is not None and bool(app.routes))  # before anything slow
        self._start_dynamodb()  # a snapshot that cannot be read stops the start before anything is served
        self.gateway = WebSocketGateway(self._routes(), self.config.host, self.config.port)
        self._listening("--port", self.config.port, self.gateway.start)
        self.connections = ConnectionsEndpoint(self.gateway, self.config.host, self.config.connections_port)
        connections_url = self._listening("--connections-port", self.config.connections_port, self.connections.start)
        self._connections_url = connections_url
        self._configure(connections_url, app)
        self.runtime.replace(self.function_specs(app))
        functions = self._functions(app)
        self.lambda_endpoint = self._listening(
            "--lambda-port",
            self.config.lambda_port,
            lambda: LambdaEndpoint(functions, self.config.host, self.config.lambda_port, describe=self._who),
        )
        self.lambda_endpoint.start()
        self._serve_http(app)
        if self._dynamodb is not None:
            self._dynamodb.declare(_declared(app))  # kept with the snapshots
            self._forget_undeclared(self._dynamodb.loaded_declared, app)
        if app is not None:
            self._register(app)
        self._start_pumps()
        if self._dynamodb is not None:
            self._dynamodb.start_snapshots()
        if self.config.reload and self.config.app_path:
            self._watcher = AppWatcher(Path(self.config.app_path), self.reload)
            self._watcher.start()

    def _serve_http(self, app: Any) -> None:
        if app is not None and app.routes:
            invoke, authorize = invoke_through(self.runtime), authorize_through(self.runtime, app.auth_function_id)
            self.http_api = HttpApi(app.routes, invoke, authorize, self.config.host, self.config.http_port)
            self._listening("--http-port", self.config.http_port, self.http_api.start)

    def reload(self) -> bool:
        """The app file changed (``--reload``): load it anew; fresh workers for its functions (the edited code), its
        functions and triggers registered anew (the ones it no longer declares removed), its HTTP routes served
        anew. Sockets, data and the other functions' workers are kept. One that cannot be loaded changes nothing (its
        warm workers go on; a worker started meanwhile meets the broken file, as a new Lambda container would)."""
        assert self.config.app_path is not None and self.lambda_endpoint is not None
        try:
            app = _load_app(self.config.app_path)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - said; the last app goes on running
            log.error(
                "reload: %s could not be loaded, still running the last one: %s: %s",
                self.config.app_path,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            return False
        before, self.app = self.app, app
        self._configure(self._connections_url, app)
        self.runtime.replace(self.function_specs(app))
        self.runtime.restart([_target(function_id) for function_id in app.functions])
        served = self.lambda_endpoint.functions
        for function_id in self.user_functions:
            served.pop(_target(function_id), None)
        self.user_functions.clear()
        served.update(self._functions(app))
        self._forget_undeclared(_declared(before), app)
        self._register(app)
        if self._dynamodb is not None:
            self._dynamodb.declare(_declared(app))
        if (before.routes, before.auth_function_id) != (app.routes, app.auth_function_id):
            if self.http_api is not None:
                self.http_api.stop()
                self.http_api = None
            try:
                self._serve_http(app)
            except PortUnavailable as exc:
                log.error("reload: the HTTP routes are not served: %s", exc)
        log.info(
            "reloaded %s: %d function(s), %d trigger(s), %d route(s)",
            self.config.app_path,
            len(app.functions),
            len(app.triggers),
            len(app.routes),
        )
        return True

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
        """The embedded DynamoDB in its own process (its snapshot loaded), or the tables made in the one given."""
        for name, value in _FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if not self.dynamodb_endpoint:
            settings = DynamoDBSettings(TABLES, self.config.data_dir, self.config.snapshot_seconds)
            self._dynamodb = DynamoDBProcess(settings)
            self.dynamodb_endpoint = self._dynamodb.start()
            return
        client: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        existing = set(client.list_tables()["TableNames"])
        create_tables(client, {logical: name for logical, name in TABLES.items() if name not in existing})

    def _forget_undeclared(self, before: Declared, app: Any) -> None:
        """Registrations an earlier ``--app`` made (``before``: the last run's, or the app before a reload) that
        this one no longer declares are removed (as a stack update removes them); the ones made otherwise
        (``iii-stream functions/triggers register``) are kept."""
        declared = _declared(app)
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

    def _settings(self, connections_endpoint: str, app: Any) -> LocalSettings:
        return LocalSettings(
            tables=TABLES,
            dynamodb_endpoint=self.dynamodb_endpoint,
            lambda_endpoint=f"http://{self.config.host}:{self.config.lambda_port}",
            connections_endpoint=connections_endpoint,
            auth_function=_target(app.auth_function_id) if app is not None and app.auth_function_id else "",
            auth_fail_open=self.config.auth_fail_open,
            join_fail_open=self.config.join_fail_open,
            log_level=os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            concurrency=self.config.concurrency,
        )

    def _configure(self, connections_endpoint: str, app: Any) -> None:
        """The settings of the service's own registry calls (registering the app, naming triggers in the log): the
        registry function's environment, in this process."""
        self._local_settings = self._settings(connections_endpoint, app)
        os.environ.update(template_specs(self._local_settings)["RegistryFunction"].environment)
        from iii_stream import wiring

        wiring.reset()

    def function_specs(self, app: Any) -> dict[str, FunctionSpec]:
        """Every function the runtime serves: template.yaml's, then the app's."""
        specs = template_specs(self._local_settings)
        if app is not None:
            assert self.config.app_path is not None
            specs.update(app_specs(self._local_settings, app, str(Path(self.config.app_path).resolve())))
        return specs

    def _routes(self) -> RouteHandlers:
        return RouteHandlers(
            connect=self.runtime.handler("ConnectFunction"),
            disconnect=self.runtime.handler("DisconnectFunction"),
            message=self.runtime.handler("MessageFunction"),
        )

    def _functions(self, app: Any) -> dict[str, Handler]:
        """What the Lambda endpoint serves by name: the stream, registry and fan-out functions, and the app's."""
        functions: dict[str, Handler] = {name: self.runtime.handler(name) for name in ENDPOINT_FUNCTIONS}
        for function_id in app.functions if app is not None else []:
            functions[_target(function_id)] = self.runtime.handler(_target(function_id))
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
        for name, function in (("broadcast", "BroadcastFunction"), ("dispatch", "DispatchFunction")):
            pump = StreamPump(
                streams,
                arn,
                self.runtime.handler(function),
                start="LATEST",
                context_factory=partial(LocalLambdaContext, function_name=function),
                name=name,
                reasons=self.runtime.last_reasons if name == "dispatch" else None,
            )
            self.pumps.append(pump)
            if self._dynamodb is not None:
                self._dynamodb.on_write(pump.wake)
            # Broadcast is what a subscriber waits for; triggers run asynchronously anyway, so dispatch lets
            # broadcast read the stream first (two cores for the service, moto and the workers).
            settle = 0.05 if name == "dispatch" else 0.0
            thread = threading.Thread(
                target=pump.run,
                kwargs={"idle_poll_seconds": 0.5, "settle_seconds": settle, "woken": self._dynamodb is not None},
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
        if self._watcher is not None:
            self._watcher.stop()
        if self.http_api:
            self.http_api.stop()
        if self.gateway:
            self.gateway.stop()  # open sockets close; their $disconnect (and leaves) run
        for pump in self.pumps:
            pump.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        for pump in self.pumps:  # what the closed sockets wrote (their leaves), once each pump's own thread is done
            try:
                pump.drain()
            except Exception:  # noqa: BLE001 - the stop goes on; the error is said
                log.exception("stream pump %s: the last drain failed", pump.name)
        if self.connections:
            self.connections.stop()
        if self.lambda_endpoint:
            self.lambda_endpoint.stop()
        self.runtime.stop()
        if self._dynamodb is not None:
            self._dynamodb.stop()  # the last snapshot: every socket, pump and call is done by now

    def _data_lines(self) -> list[str]:
        """The banner's word on what a restart keeps."""
        if self._dynamodb is not None and self._dynamodb.data_lines:
            return self._dynamodb.data_lines
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


def _declared(app: Any) -> Declared:
    if app is None:
        return Declared()
    return Declared(tuple(app.functions), tuple(trigger.id for trigger in app.triggers))


def _target(function_id: str) -> str:
    from iii_stream.app import lambda_name

    return lambda_name(function_id)


def _load_app(path: str) -> Any:
    """Import the user's Python file and return its ``iii_stream.app.App`` (the first one found)."""
    from iii_stream.app import App

    file = Path(path).resolve()
    if not file.is_file():
        raise SystemExit(f"iii-stream local: no such file {path}")
    if str(file.parent) not in sys.path:  # (loaded again at each --reload)
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
