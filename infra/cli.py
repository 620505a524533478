"""The ``iii-stream`` command: ``local`` runs the service, ``call`` runs one stream function."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from iii_stream.client import DEFAULT_FUNCTION_NAME, LOCAL_LAMBDA_ENDPOINT, StreamCallError, StreamClient


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iii-stream", description="iii-stream for AWS")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    local = commands.add_parser("local", help="run the whole service on this machine")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--lambda-port", type=int, default=3001, help="Lambda invoke endpoint port (default 3001)")
    local.add_argument("--dynamodb-endpoint", help="use this DynamoDB instead of the embedded one")
    local.set_defaults(run=_run_local)

    call = commands.add_parser("call", help="call a stream function and print its JSON result")
    call.add_argument("function_id", help="e.g. stream::set")
    call.add_argument("payload", nargs="?", default="{}", help="the input as JSON (default {})")
    call.add_argument(
        "--endpoint-url",
        default=LOCAL_LAMBDA_ENDPOINT,
        help=f"Lambda endpoint (default {LOCAL_LAMBDA_ENDPOINT}, the local service)",
    )
    call.add_argument("--aws", action="store_true", help="call the deployed stack on AWS (boto3's own settings)")
    call.add_argument(
        "--function-name",
        default=DEFAULT_FUNCTION_NAME,
        help="the stream Lambda (on AWS: the stack output StreamFunctionName)",
    )
    call.add_argument("--dynamodb-endpoint", help="skip Lambda: run the function in-process against this DynamoDB")
    call.add_argument("--items-table", default="iii-stream-items", help="with --dynamodb-endpoint: the items table")
    call.set_defaults(run=_run_call)
    return parser


def _run_call(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        return _fail({"code": "invalid_json", "message": f"The payload is not JSON: {exc}"})
    try:
        result = _client(args).call(args.function_id, payload)
    except StreamCallError as exc:
        return _fail(exc.to_body())
    except Exception as exc:  # noqa: BLE001 - connection errors and the like: one clear line, no traceback
        return _fail({"code": "call_failed", "message": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _client(args: argparse.Namespace) -> StreamClient:
    if args.dynamodb_endpoint:
        import boto3
        from iii_stream.config import Settings
        from iii_stream.wiring import build_stream_service

        dynamodb = boto3.client("dynamodb", endpoint_url=args.dynamodb_endpoint)
        return StreamClient.direct(build_stream_service(dynamodb, Settings(items_table=args.items_table)))
    return StreamClient.via_lambda(args.function_name, endpoint_url=None if args.aws else args.endpoint_url)


def _fail(body: dict[str, Any]) -> int:
    print(json.dumps(body, ensure_ascii=False), file=sys.stderr)
    return 1


def _run_local(args: argparse.Namespace) -> int:
    import logging

    from infra.local.service import LocalConfig, LocalService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service = LocalService(
        LocalConfig(host=args.host, lambda_port=args.lambda_port, dynamodb_endpoint=args.dynamodb_endpoint)
    )
    service.start()
    print("iii-stream local is running:", *("  " + line for line in service.describe()), sep="\n", flush=True)
    print('Try:  iii-stream call stream::set \'{"stream_name":"s","group_id":"g","item_id":"i","data":1}\'', flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    service.stop()
    print("iii-stream local stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
