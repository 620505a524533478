"""A local Lambda ``Invoke`` endpoint that boto3's ``lambda`` client reaches through ``endpoint_url``.

It answers ``POST /2015-03-31/functions/{name}/invocations`` like AWS (and ``sam local start-lambda``):
200 with the handler's JSON result, ``X-Amz-Function-Error: Unhandled`` when the handler raises,
202 for ``Event`` invocations, 404 ``ResourceNotFoundException`` for an unknown function, 400
``InvalidRequestContentException`` for a body that is not JSON. JSON that Python's ``json`` cannot load (nested
about 1,000 deep) gets the Python runtime's ``Runtime.UnmarshalError``. Whatever happens, every request
gets an answer: the endpoint never drops a connection (a client that goes away, as boto3's pool closing a keep-alive
connection does, is no error).

One log line per invocation: the function (and the stream function id the event names), ``(async)`` for an
``Event`` invocation, the duration, and the outcome: ``ok``, ``error CODE: message`` for a stream function's
``{"error": ...}`` answer, or the error type and message when the handler raised (with ``describe``'s words on
the function: its function id, its triggers), logged with the exception, so a formatter can add the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.runtime import FunctionError, Throttled

Handler = Callable[[Any, Any], Any]
# (function name, event, invocation type) -> what the log says about a function that failed ("" for nothing)
Describe = Callable[[str, Any, str], str]
log = logging.getLogger("iii_stream.local.lambda")
_MAX_MESSAGE = 300  # characters of an error message in a log line
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


@dataclass
class Outcome:
    """One invocation's answer: the JSON result (or the error body), whether it failed, and what it raised."""

    result: Any
    failed: bool = False
    exception: BaseException | None = None


def run_handler(name: str, handler: Handler, event: Any, queued: bool = False) -> Outcome:
    """Call a handler as the Python runtime does (a runtime's ``FunctionError`` carries the error body itself).
    ``queued``: an ``Event`` invocation, through the handler's ``queued(event)`` when it has one (the runtime's,
    which then waits for a free worker as Lambda's queue does, instead of throttling)."""
    context = LocalLambdaContext(function_name=name)
    try:
        if queued and callable(getattr(handler, "queued", None)):
            return Outcome(handler.queued(event))  # type: ignore[attr-defined]
        return Outcome(handler(event, context))
    except FunctionError as exc:
        return Outcome(exc.body, True, exc)
    except Throttled:
        raise
    except Exception as exc:  # noqa: BLE001 - a Lambda reports any exception as an Unhandled function error
        body = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": context.aws_request_id,
            "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
        }
        return Outcome(body, True, exc)


def short(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_invocation(
    name: str, event: Any, invocation_type: str, outcome: Outcome, seconds: float, describe: Describe | None
) -> None:
    """The invocation's one log line (see the module docstring)."""
    label = name
    if isinstance(event, dict) and isinstance(event.get("function_id"), str):
        label += " " + short(event["function_id"], 80)
    if invocation_type == "Event":
        label += " (async)"
    result = outcome.result
    if not outcome.failed:
        error = result.get("error") if isinstance(result, dict) else None
        said = f"error {error.get('code')}: {short(error.get('message', ''))}" if isinstance(error, dict) else "ok"
        log.info("invoke %s %.1f ms -> %s", label, seconds * 1000, said)
        return
    body = result if isinstance(result, dict) else {}
    said = f"{body.get('errorType', 'Error')}: {short(body.get('errorMessage', ''))}"
    try:
        who = describe(name, event, invocation_type) if describe is not None else ""
    except Exception:  # noqa: BLE001 - the log line must not fail for want of a description
        who = ""
    who = f" ({who})" if who else ""
    log.warning("invoke %s %.1f ms -> %s%s", label, seconds * 1000, said, who, exc_info=outcome.exception)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (boto3 closing a keep-alive connection, a reset) is no error; anything else is
        logged (socketserver would print it to stderr)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        log.error("a request from %s failed: %s: %s", client_address, type(error).__name__, error, exc_info=error)


class LambdaEndpoint:
    """Serve named handlers over the Lambda Invoke wire protocol on 127.0.0.1.

    ``describe(name, event, invocation_type)`` says what a function that failed is, for its log line."""

    def __init__(
        self,
        functions: dict[str, Handler],
        host: str = "127.0.0.1",
        port: int = 3001,
        *,
        describe: Describe | None = None,
    ) -> None:
        self.functions = functions
        request_handler = type(
            "EndpointRequestHandler",
            (InvokeRequestHandler,),
            {"functions": functions, "describe": staticmethod(describe) if describe is not None else None},
        )
        self._server = _Server((host, port), request_handler)
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


def _throttled(message: str) -> dict[str, Any]:
    """The Invoke API's 429 body when a function's concurrency is used up."""
    return {
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "Type": "User",
        "message": f"Rate Exceeded. ({message})",
        "retryAfterSeconds": "1",
    }


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
    describe: Describe | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug(format, *args)

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        try:
            self._post()
        except ConnectionError as exc:  # the client went away (reading its body, or before our answer): nobody to tell
            log.debug("client %s went away: %s", self.client_address, exc)
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection (the Invoke API's 500)
            log.error("invoke request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
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
            log.warning("invoke %s -> ResourceNotFoundException: served here: %s", name, ", ".join(self.functions))
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
            self._invoke(name, None, lambda queued: Outcome(error, True))
            return
        self._invoke(name, event, lambda queued: run_handler(name, handler, event, queued))

    def _invoke(self, name: str, event: Any, run: Callable[[bool], Outcome]) -> None:
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        describe = self.describe

        def invoke() -> Outcome:
            started = time.perf_counter()
            try:
                outcome = run(invocation_type == "Event")
            except Throttled as exc:  # a RequestResponse call that waited past the function's timeout: 429
                log.warning("invoke %s -> TooManyRequestsException: %s", name, exc)
                return Outcome(_throttled(str(exc)), True, exc)
            try:  # the python3.12 runtime encodes with ensure_ascii=False: a lone surrogate cannot be sent
                json.dumps(outcome.result, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as exc:
                outcome = Outcome(_runtime_error("Runtime.MarshalError", f"Unable to marshal response: {exc}"), True)
            log_invocation(name, event, invocation_type, outcome, time.perf_counter() - started, describe)
            return outcome

        if invocation_type == "DryRun":
            self._reply(204, None)
        elif invocation_type == "Event":
            threading.Thread(target=invoke, daemon=True).start()
            self._reply(202, None)
        else:
            outcome = invoke()
            if isinstance(outcome.exception, Throttled):
                self._reply(429, outcome.result, error="TooManyRequestsException")
                return
            headers = _FAILED if outcome.failed else _EXECUTED
            self._reply(200, outcome.result, headers=headers, always_body=True)

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
