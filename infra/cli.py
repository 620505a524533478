"""The ``iii-stream`` command: ``local`` runs the service, ``call`` runs one stream function."""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from iii_stream import __version__
from iii_stream.client import (
    DEFAULT_FUNCTION_NAME,
    LOCAL_LAMBDA_ENDPOINT,
    REGISTRY_FUNCTION_NAME,
    RegistryClient,
    StreamCallError,
    StreamClient,
)

STOP_REPORT_SECONDS = 30.0  # a clean stop taking longer prints every thread's stack (and goes on)
STOP_POLL_SECONDS = 0.2  # how often the main thread looks for a stop signal another thread received


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iii-stream", description="iii-stream for AWS")
    parser.add_argument("--version", action="version", version=f"iii-stream {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    local = commands.add_parser("local", help="run the whole service on this machine")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=3112, help="WebSocket gateway port (default 3112)")
    local.add_argument("--lambda-port", type=int, default=3001, help="Lambda invoke endpoint port (default 3001)")
    local.add_argument("--connections-port", type=int, default=0, help="@connections endpoint port (default: any)")
    local.add_argument("--http-port", type=int, default=3000, help="your app's HTTP routes (default 3000)")
    local.add_argument("--dynamodb-endpoint", help="use this DynamoDB instead of the embedded one")
    local.add_argument("--app", help="a Python file declaring your functions and triggers (iii_stream.app.App)")
    local.add_argument("--auth-fail-open", action="store_true", help="accept sockets when the auth function fails")
    local.add_argument("--join-fail-open", action="store_true", help="accept joins when a join handler fails")
    local.add_argument(
        "--verbose", action="store_true", help="log the traceback of every error (default: its type and message)"
    )
    local.add_argument(
        "--in-memory",
        action="store_true",
        help="keep nothing: no snapshot read or written (default: the tables are kept in .iii-stream/ here)",
    )
    local.add_argument(
        "--snapshot-seconds",
        type=_positive_seconds,
        default=30.0,
        help="snapshot the tables this often after a change (default 30; a crash loses up to that much)",
    )
    local.add_argument(
        "--concurrency",
        type=_positive_count,
        default=4,
        help="at most N invocations of each function at once, each in a worker process of its own (default 4)",
    )
    local.add_argument(
        "--reload",
        action="store_true",
        help="when the --app file changes: fresh workers for its functions, its functions and triggers registered "
        "anew (sockets and data kept)",
    )
    local.set_defaults(run=_run_local)

    call = commands.add_parser("call", help="call a stream function and print its JSON result")
    call.add_argument("function_id", help="e.g. stream::set")
    call.add_argument(
        "payload", nargs="?", default="{}", help="the input as JSON (default {}); @FILE: from a file; -: from stdin"
    )
    _target_options(call, DEFAULT_FUNCTION_NAME)
    call.set_defaults(run=_run_call)

    pack = commands.add_parser("package", help="write a SAM project for AWS from your app (iii-stream/ nested)")
    pack.add_argument("--app", required=True, help="the Python file declaring your App (as for local --app)")
    pack.add_argument("--out", required=True, help="the directory to write (new, empty, or written by package)")
    pack.add_argument("--prefix", help="Lambda names are <stack name>-<prefix>-<function> (default fn)")
    pack.add_argument("--max-stack-name", type=int, help="the longest stack name to fit in 64 (default 24)")
    pack.set_defaults(run=_run_package)

    new = commands.add_parser("new", help="create a project: an app with HTTP routes, its tests and a live page")
    new.add_argument("directory", help="where to create it (a new or empty directory)")
    new.set_defaults(run=_run_new)

    functions = commands.add_parser("functions", help="register, list and remove functions (id -> Lambda)")
    verbs = functions.add_subparsers(required=True, metavar="VERB")
    register = verbs.add_parser("register", help="map a function id to a Lambda name or ARN")
    register.add_argument("function_id")
    register.add_argument("target", help="the Lambda's name or ARN (locally: the Python function's name)")
    register.add_argument("--description", default="")
    register.set_defaults(
        run=_registry_call(
            "registry::register_function",
            lambda a: {"function_id": a.function_id, "target": a.target, "description": a.description},
        )
    )
    listing = verbs.add_parser("list", help="list the registered functions")
    listing.set_defaults(run=_registry_call("registry::list_functions", lambda a: {}))
    remove = verbs.add_parser("remove", help="remove a function (refused while a trigger uses it)")
    remove.add_argument("function_id")
    remove.set_defaults(run=_registry_call("registry::unregister_function", lambda a: {"function_id": a.function_id}))
    for verb in (register, listing, remove):
        _target_options(verb, REGISTRY_FUNCTION_NAME)

    triggers = commands.add_parser("triggers", help="register, list and remove triggers")
    verbs = triggers.add_subparsers(required=True, metavar="VERB")
    register = verbs.add_parser("register", help="bind a function to stream, stream:join or stream:leave")
    register.add_argument("type", help="stream | stream:join | stream:leave")
    register.add_argument("function_id")
    register.add_argument("config", nargs="?", default="{}", help='e.g. \'{"stream_name": "presence"}\'')
    register.add_argument("--id", help="the trigger id (default: a new uuid); registering an id again replaces it")
    register.set_defaults(run=_registry_call("registry::register_trigger", _trigger_payload))
    listing = verbs.add_parser("list", help="list the triggers")
    listing.set_defaults(run=_registry_call("registry::list_triggers", lambda a: {}))
    remove = verbs.add_parser("remove", help="remove a trigger")
    remove.add_argument("id")
    remove.set_defaults(run=_registry_call("registry::unregister_trigger", lambda a: {"id": a.id}))
    for verb in (register, listing, remove):
        _target_options(verb, REGISTRY_FUNCTION_NAME)
    return parser


def _target_options(parser: argparse.ArgumentParser, function_name: str) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=LOCAL_LAMBDA_ENDPOINT,
        help=f"Lambda endpoint (default {LOCAL_LAMBDA_ENDPOINT}, the local service)",
    )
    parser.add_argument("--aws", action="store_true", help="call the deployed stack on AWS (boto3's own settings)")
    parser.add_argument(
        "--function-name",
        default=function_name,
        help=f"the Lambda to invoke (default {function_name}; on AWS: the stack output)",
    )
    parser.add_argument("--dynamodb-endpoint", help="skip Lambda: run in-process against this DynamoDB")
    parser.add_argument("--items-table", default="iii-stream-items", help="with --dynamodb-endpoint")
    parser.add_argument("--triggers-table", default="iii-stream-triggers", help="with --dynamodb-endpoint")


def _trigger_payload(args: argparse.Namespace) -> dict[str, Any]:
    payload = {"type": args.type, "function_id": args.function_id, "config": json.loads(args.config)}
    return payload if args.id is None else {**payload, "id": args.id}


def _run_call(args: argparse.Namespace) -> int:
    try:
        text = _argument_text(args.payload)
    except OSError as exc:
        return _fail({"code": "invalid_json", "message": f"The payload cannot be read: {exc}"})
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python's json can read
        return _fail({"code": "invalid_json", "message": f"The payload is not JSON: {exc}"})
    return _print_result(lambda: _client(args).call(args.function_id, payload))


def _argument_text(value: str) -> str:
    """A JSON argument as given, or read from a file (``@path``) or from stdin (``-``): large items fit."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as file:
            return file.read()
    return value


def _registry_call(function_id: str, build: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            payload = build(args)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python's json can read
            return _fail({"code": "invalid_json", "message": f"The config is not JSON: {exc}"})
        return _print_result(lambda: _registry(args).call(function_id, payload))

    return run


def _print_result(action: Callable[[], Any]) -> int:
    try:
        result = action()
    except StreamCallError as exc:
        return _fail(exc.to_body())
    except Exception as exc:  # noqa: BLE001 - connection errors and the like: one clear line, no traceback
        message = f"{type(exc).__name__}: {exc}"
        if _nothing_listens(exc):
            message += (
                " - is the local service running? Start it with `iii-stream local` (or `make run` in a checkout), "
                "or pass --endpoint-url, or --aws for the deployed stack"
            )
        return _fail({"code": "call_failed", "message": message})
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _client(args: argparse.Namespace) -> StreamClient:
    if args.dynamodb_endpoint:
        import boto3
        from iii_stream.config import Settings
        from iii_stream.wiring import build_stream_service

        dynamodb = boto3.client("dynamodb", endpoint_url=args.dynamodb_endpoint, **_local_aws_settings())
        return StreamClient.direct(build_stream_service(dynamodb, Settings(items_table=args.items_table)))
    result: StreamClient = StreamClient.via_lambda(
        args.function_name, endpoint_url=None if args.aws else args.endpoint_url
    )
    return result


def _local_aws_settings() -> dict[str, Any]:
    """A region and credentials for a DynamoDB endpoint given with --dynamodb-endpoint, when the environment has
    none (a local DynamoDB accepts any); boto3's own settings win when they are there."""
    import boto3

    session = boto3.session.Session()
    settings: dict[str, Any] = {}
    if session.region_name is None:
        settings["region_name"] = "us-east-1"
    if session.get_credentials() is None:
        settings.update(aws_access_key_id="local", aws_secret_access_key="local")
    return settings


def _registry(args: argparse.Namespace) -> RegistryClient:
    if args.dynamodb_endpoint:
        import boto3
        from iii_stream.adapters.dynamodb_registry import DynamoRegistryStore
        from iii_stream.core.clock import SystemClock
        from iii_stream.core.registry import RegistryService

        dynamodb = boto3.client("dynamodb", endpoint_url=args.dynamodb_endpoint, **_local_aws_settings())
        return RegistryClient.direct(RegistryService(DynamoRegistryStore(dynamodb, args.triggers_table), SystemClock()))
    result: RegistryClient = RegistryClient.via_lambda(
        args.function_name, endpoint_url=None if args.aws else args.endpoint_url
    )
    return result


def _nothing_listens(exc: BaseException) -> bool:
    """Did the call fail because nothing answers at the endpoint (connection refused)?"""
    from botocore.exceptions import EndpointConnectionError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (EndpointConnectionError, ConnectionRefusedError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fail(body: dict[str, Any]) -> int:
    print(json.dumps(body, ensure_ascii=False), file=sys.stderr)
    return 1


def _run_local(args: argparse.Namespace) -> int:
    import logging

    from iii_stream.infra.local.service import LocalConfig, LocalService, PortUnavailable
    from iii_stream.infra.local.snapshots import DEFAULT_DIRECTORY, SnapshotError

    _configure_logging(verbose=args.verbose)
    for noisy in ("botocore", "werkzeug", "websockets", "aws_lambda_powertools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    service = LocalService(
        LocalConfig(
            host=args.host,
            port=args.port,
            lambda_port=args.lambda_port,
            connections_port=args.connections_port,
            dynamodb_endpoint=args.dynamodb_endpoint,
            app_path=args.app,
            auth_fail_open=args.auth_fail_open,
            join_fail_open=args.join_fail_open,
            http_port=args.http_port,
            data_dir=None if args.in_memory else DEFAULT_DIRECTORY,
            snapshot_seconds=args.snapshot_seconds,
            concurrency=args.concurrency,
            reload=args.reload,
        )
    )
    # A stop signal sets a flag that the main thread polls. Not a threading.Event waited on without a timeout: a
    # signal the kernel hands to another of the service's threads leaves the main thread blocked on the lock for
    # ever, so its Python handler never runs (a stop that hung, seen in CI); nor Event.set() in the handler, which
    # deadlocks when the signal lands while the main thread holds the Event's own lock.
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    try:
        service.start()
    except SnapshotError as exc:  # an unreadable snapshot, a data directory in use: said plainly, no traceback
        service.stop()  # what had started; no snapshot is written
        print(exc, file=sys.stderr, flush=True)
        return 1
    except PortUnavailable as exc:  # a port in use: said at once, with the flag that moves it, no traceback
        service.stop()
        print(f"iii-stream local: {exc}", file=sys.stderr, flush=True)
        return 1
    print("iii-stream local is running:", *("  " + line for line in service.describe()), sep="\n", flush=True)
    assert service.lambda_endpoint is not None
    print(_try_line(service.lambda_endpoint.endpoint_url), flush=True)
    while not stopping:
        time.sleep(STOP_POLL_SECONDS)  # woken at once by a signal to this thread; else at the next poll
    # A stop that hangs says where: every thread's stack on stderr after STOP_REPORT_SECONDS (it goes on waiting).
    faulthandler.dump_traceback_later(STOP_REPORT_SECONDS, exit=False)
    try:
        service.stop()
    except SnapshotError as exc:  # the last snapshot could not be written
        print(exc, file=sys.stderr, flush=True)
        return 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    print("iii-stream local stopped.", flush=True)
    return 0


def _configure_logging(verbose: bool) -> None:
    """One line per message on stderr. An error's traceback only with ``--verbose``; without it, the line gets the
    error's type and message (when it does not say them already)."""
    import logging

    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            details = getattr(record.exc_info[1], "details", "") if record.exc_info else ""
            if verbose and details:  # a worker's error: its own traceback, not the runtime's
                plain = logging.makeLogRecord(record.__dict__)
                plain.exc_info, plain.exc_text = None, None
                return super().format(plain) + "\n" + str(details).rstrip()
            if verbose or not record.exc_info:
                return super().format(record)
            error = record.exc_info[1]
            brief = logging.makeLogRecord(record.__dict__)
            brief.exc_info, brief.exc_text = None, None
            message = record.getMessage()
            if error is not None and type(error).__name__ not in message:  # the line does not name it already
                message = f"{message} ({type(error).__name__}: {error})"
            brief.msg, brief.args = message, None
            return super().format(brief)

    handler = logging.StreamHandler()
    handler.setFormatter(Formatter("%(asctime)s %(name)-26s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _try_line(endpoint_url: str) -> str:
    """The banner's example call, as it runs from anywhere: this very iii-stream by its full path, and the Lambda
    endpoint when it is not the default one."""
    import shlex

    target = [] if endpoint_url == LOCAL_LAMBDA_ENDPOINT else ["--endpoint-url", endpoint_url]
    payload = '{"stream_name":"s","group_id":"g","item_id":"i","data":1}'
    return "Try:  " + shlex.join([*_own_command(), "call", *target, "stream::set", payload])


def _own_command() -> list[str]:
    """How to run this iii-stream: its script (``sys.argv[0]``, resolved), else the one beside this interpreter or on
    the PATH, else ``python -m`` (run as a module, as the pytest plugin does)."""
    import shutil
    from pathlib import Path

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name.startswith("iii-stream") and script.is_file():
        return [str(script.resolve())]
    beside = Path(sys.executable).with_name("iii-stream")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("iii-stream")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "iii_stream.infra.cli"]


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return seconds


def _positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"must be from 1 to 64: {text!r}")
    return count


def _run_new(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from iii_stream.infra.scaffold import ScaffoldError, create_project

    try:
        written = create_project(args.directory)
    except ScaffoldError as exc:
        print(f"iii-stream new: {exc}", file=sys.stderr)
        return 1
    root = args.directory.rstrip("/") or "/"
    print(f"Created {root}/ (a live to-do list: app.py with its routes, tests/, public/):")
    for path in written:
        print("  " + path.relative_to(Path(args.directory)).as_posix())
    print("Next:")
    print(f"  cd {shlex.quote(root)}")
    print("  pip install -r requirements.txt     # once (iii-stream-aws[local], pytest), in a virtual environment")
    print("  iii-stream local --app app.py       # run it (routes on http://127.0.0.1:3000)")
    print("  pytest                              # test it")
    print("  README.md: open the page (public/), deploy to AWS.")
    return 0


def _run_package(args: argparse.Namespace) -> int:
    from iii_stream.infra.package import run

    return run(args.app, args.out, prefix=args.prefix, max_stack_name=args.max_stack_name)


if __name__ == "__main__":
    sys.exit(main())
