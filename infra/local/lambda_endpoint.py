"""A local Lambda ``Invoke`` endpoint that boto3's ``lambda`` client reaches through ``endpoint_url``.

It answers ``POST /2015-03-31/functions/{name}/invocations`` like AWS (and ``sam local start-lambda``):
200 with the handler's JSON result, ``X-Amz-Function-Error: Unhandled`` when the handler raises,
202 for ``Event`` invocations, 404 ``ResourceNotFoundException`` for an unknown function.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from infra.local.context import LocalLambdaContext

Handler = Callable[[Any, Any], Any]
log = logging.getLogger("iii_stream.local.lambda")
_PREFIX = "/2015-03-31/functions/"
_SUFFIX = "/invocations"


def function_name_of(raw: str) -> str:
    """``name``, ``name:qualifier`` or an ARN (percent-encoded in the path) -> the bare function name."""
    parts = unquote(raw).split(":")
    if parts[0] == "arn" and len(parts) > 6:
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":  # a partial ARN: account:function:name[:qualifier]
        return parts[2]
    return parts[0]


def run_handler(name: str, handler: Handler, event: Any) -> tuple[Any, bool]:
    """Call a handler as the Python runtime does; return (JSON result or error body, failed)."""
    context = LocalLambdaContext(function_name=name)
    try:
        return handler(event, context), False
    except Exception as exc:  # noqa: BLE001 - a Lambda reports any exception as an Unhandled function error
        log.exception("function %s raised", name)
        return {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": context.aws_request_id,
            "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
        }, True


class LambdaEndpoint:
    """Serve named handlers over the Lambda Invoke wire protocol on 127.0.0.1."""

    def __init__(self, functions: dict[str, Handler], host: str = "127.0.0.1", port: int = 3001) -> None:
        self.functions = functions
        request_handler = type("EndpointRequestHandler", (InvokeRequestHandler,), {"functions": functions})
        self._server = ThreadingHTTPServer((host, port), request_handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-endpoint", daemon=True)
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _marshal_error(exc: Exception) -> dict[str, Any]:
    """What the Python runtime answers when a handler returns something that is not JSON."""
    return {
        "errorMessage": f"Unable to marshal response: {exc}",
        "errorType": "Runtime.MarshalError",
        "requestId": str(uuid.uuid4()),
        "stackTrace": [],
    }


class InvokeRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request to the Invoke API; ``functions`` is set per endpoint."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: without this each reply waits ~40 ms
    functions: dict[str, Handler] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug(format, *args)

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        path = self.path.split("?", 1)[0]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            self._reply(404, {"message": f"No route for {path}"}, error="UnknownOperationException")
            return
        name = function_name_of(path[len(_PREFIX) : -len(_SUFFIX)])
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        handler = self.functions.get(name)
        if handler is None:
            message = f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}"
            self._reply(404, {"Type": "User", "Message": message}, error="ResourceNotFoundException")
            return
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            self._reply(
                400,
                {"Type": "User", "message": "Could not parse request body into json"},
                error="InvalidRequestContentException",
            )
            return
        self._invoke(name, handler, event, self.headers.get("X-Amz-Invocation-Type", "RequestResponse"))

    def _invoke(self, name: str, handler: Handler, event: Any, invocation_type: str) -> None:
        if invocation_type == "DryRun":
            self._reply(204, None)
        elif invocation_type == "Event":
            threading.Thread(target=run_handler, args=(name, handler, event), daemon=True).start()
            self._reply(202, None)
        else:
            result, failed = run_handler(name, handler, event)
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                result, failed = _marshal_error(exc), True
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            if failed:
                headers["X-Amz-Function-Error"] = "Unhandled"
            self._reply(200, result, headers=headers, always_body=True)

    def _reply(
        self,
        status: int,
        body: Any,
        *,
        error: str | None = None,
        headers: dict[str, str] | None = None,
        always_body: bool = False,
    ) -> None:
        data = json.dumps(body).encode() if (body is not None or always_body) else b""
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error:
            self.send_header("x-amzn-ErrorType", error)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
