"""A local Lambda ``Invoke`` endpoint that boto3's ``lambda`` client reaches through ``endpoint_url``.

It answers ``POST /2015-03-31/functions/{name}/invocations`` like AWS (and ``sam local start-lambda``):
200 with the handler's JSON result, ``X-Amz-Function-Error: Unhandled`` when the handler raises,
202 for ``Event`` invocations, 404 ``ResourceNotFoundException`` for an unknown function, 400
``InvalidRequestContentException`` for a body that is not JSON. JSON that Python's ``json`` cannot load (nested
about 1,000 deep) gets the Python runtime's ``Runtime.UnmarshalError``. Whatever happens, every request
gets an answer: the endpoint never drops a connection.
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

from iii_stream.infra.local.context import LocalLambdaContext

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


def _runtime_error(error_type: str, message: str) -> dict[str, Any]:
    """What the Python runtime (awslambdaric's bootstrap) answers for its own faults, before or after the handler."""
    return {"errorMessage": message, "errorType": error_type, "requestId": str(uuid.uuid4()), "stackTrace": []}


class _Unparsable(Exception):
    """A body that is JSON, so Lambda takes it, but that Python's json cannot load (too deep, too many digits)."""


_EXECUTED = {"X-Amz-Executed-Version": "$LATEST"}
_FAILED = {**_EXECUTED, "X-Amz-Function-Error": "Unhandled"}


def _parse(body: bytes) -> Any:
    """The event (an empty body is ``{}``); ValueError if the body is not JSON, _Unparsable if Python cannot load it."""
    if not body:
        return {}
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except (RecursionError, ValueError) as exc:  # nested about 1,000 deep; an integer over 4,300 digits
        raise _Unparsable(str(exc)) from None


class InvokeRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request to the Invoke API; ``functions`` is set per endpoint."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: without this each reply waits ~40 ms
    functions: dict[str, Handler] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug(format, *args)

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        try:
            self._post()
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection (the Invoke API's 500)
            log.exception("invoke request failed")
            self.close_connection = True
            self._reply(500, {"Message": f"{type(exc).__name__}: {exc}"}, error="ServiceException")

    def _post(self) -> None:
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
            event = _parse(body)
        except ValueError:
            self._reply(
                400,
                {"Type": "User", "message": "Could not parse request body into json"},
                error="InvalidRequestContentException",
            )
            return
        except _Unparsable as exc:
            # Lambda accepts the JSON; the runtime's json.loads raises, and it answers Runtime.UnmarshalError.
            error = _runtime_error("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}")
            self._invoke(lambda: (error, True))
            return
        self._invoke(lambda: run_handler(name, handler, event))

    def _invoke(self, run: Callable[[], tuple[Any, bool]]) -> None:
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            self._reply(204, None)
        elif invocation_type == "Event":
            threading.Thread(target=run, daemon=True).start()
            self._reply(202, None)
        else:
            result, failed = run()
            try:  # the python3.12 runtime encodes with ensure_ascii=False: a lone surrogate cannot be sent
                json.dumps(result, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as exc:
                result, failed = _runtime_error("Runtime.MarshalError", f"Unable to marshal response: {exc}"), True
            self._reply(200, result, headers=_FAILED if failed else _EXECUTED, always_body=True)

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
