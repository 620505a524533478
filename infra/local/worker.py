"""One function's warm worker process for the local Lambda runtime (``runtime.py`` starts it).

``python -m iii_stream.infra.local.worker REQUESTS_FD ANSWERS_FD SPEC_JSON``: imports the function's handler once
(its init, as a Lambda container's), then answers invocations one at a time, as a Lambda sandbox does, over two
pipes of length-prefixed JSON (``frames.py``). The process's own environment is the function's, set by the
runtime; stdout and stderr are the service's, so what a handler prints shows in its log as on CloudWatch.

Answers, in the Python runtime's shapes (aws-wire-shapes.md 4): ``{"result": ...}``, or ``{"error": {...}}``
with ``errorMessage``, ``errorType``, ``requestId`` and ``stackTrace``. A handler that cannot be imported is
``Runtime.ImportModuleError`` (or ``Runtime.HandlerNotFound``) for the invocation that started the worker, which
then exits, so the next call tries the init again in a fresh one, as Lambda does. A result that is not JSON is
``Runtime.MarshalError``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.frames import read_frame, write_frame

Handler = Callable[[Any, Any], Any]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def load(spec: dict[str, Any]) -> tuple[Handler, Callable[[], dict[str, str]] | None]:
    """The handler a spec names (``handler`` in ``code_dir``, or ``function_id`` of the ``App`` in ``app``), and
    its batch-failure reasons, when its module keeps a powertools ``processor``."""
    if spec.get("app"):
        return _app_handler(spec["app"], spec["function_id"]), None
    code_dir = spec["code_dir"]
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    module_name, _, attribute = spec["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - reported as the runtime reports it
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return handler, _batch_reasons(module)


def _app_handler(path: str, function_id: str) -> Handler:
    from iii_stream.app import App

    file = Path(path)
    sys.path.insert(0, str(file.parent))
    try:
        spec = importlib.util.spec_from_file_location(file.stem, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[file.stem] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - reported as the runtime reports it
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{file.stem}': {exc}") from exc
    for value in vars(module).values():
        if isinstance(value, App) and function_id in value.functions:
            return value.functions[function_id]
    raise _InitError("Runtime.HandlerNotFound", f"{path} no longer declares the function {function_id}")


def _batch_reasons(module: Any) -> Callable[[], dict[str, str]] | None:
    """Why the records of the handler's last batch failed, by sequence number, as its powertools BatchProcessor
    (dispatch's ``processor``) kept them: the handler's answer names the records only. None without one."""
    processor = getattr(module, "processor", None)
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


def error_body(error_type: str, message: str, request_id: str, stack: list[str] | None = None) -> dict[str, Any]:
    """The Python runtime's error body, in its key order."""
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack or []}


def invoke(handler: Handler, reasons: Callable[[], dict[str, str]] | None, request: dict[str, Any]) -> dict[str, Any]:
    """One invocation's answer."""
    context = LocalLambdaContext(
        function_name=request["function_name"],
        timeout_ms=int(request["timeout_ms"]),
        memory_limit_in_mb=str(request["memory_mb"]),
        aws_request_id=request["request_id"],
    )
    try:
        result = handler(request["event"], context)
    except Exception as exc:  # noqa: BLE001 - a Lambda reports any exception as an Unhandled function error
        stack = traceback.format_list(traceback.extract_tb(exc.__traceback__))
        answer: dict[str, Any] = {"error": error_body(type(exc).__name__, str(exc), context.aws_request_id, stack)}
        answer["traceback"] = "".join(traceback.format_exception(exc))
    else:
        try:  # the python3.12 runtime encodes with ensure_ascii=False: a lone surrogate cannot be sent
            json.dumps(result, ensure_ascii=False).encode("utf-8")
            answer = {"result": result}
        except (TypeError, ValueError, RecursionError) as exc:
            message = f"Unable to marshal response: {exc}"
            answer = {"error": error_body("Runtime.MarshalError", message, context.aws_request_id)}
    result = answer.get("result")
    if reasons is not None and isinstance(result, dict) and result.get("batchItemFailures"):
        answer["reasons"] = reasons()
    return answer


class _LatestValueOnly(dict[str, Any]):
    """A powertools metric set that keeps each metric's latest value only (see ``quiet_metrics``)."""

    def __setitem__(self, name: str, metric: Any) -> None:
        values = metric.get("Value") if isinstance(metric, dict) else None
        if isinstance(values, list):
            del values[:-1]
        super().__setitem__(name, metric)


def quiet_metrics() -> None:
    """No EMF lines locally. POWERTOOLS_METRICS_DISABLED stops the flush at the end of each invocation, but not the
    one powertools makes when a metric reaches 100 values (``MAX_METRICS``, in ``add_metric``); and a disabled flush
    never clears the set, so every 100th batch a pump delivered printed one (as would one batch of 100 records).
    Every ``Metrics`` shares its class's metric set: made before the handler's module is imported, this one never
    holds more than one value per metric, so it is never flushed."""
    try:
        from aws_lambda_powertools import Metrics
    except ImportError:  # an app function's environment without powertools: nothing to quiet
        return
    if not isinstance(Metrics._metrics, _LatestValueOnly):  # noqa: SLF001 - the set all its instances share
        Metrics._metrics = _LatestValueOnly()  # noqa: SLF001


def serve(requests: int, answers: int, spec: dict[str, Any]) -> int:
    """Init, say so (``ready``, or the init error, then exit), then answer invocations until the pipe closes."""
    quiet_metrics()  # before the handler's module makes its Metrics
    try:
        handler, reasons = load(spec)
    except _InitError as exc:
        init_error = error_body(exc.error_type, str(exc), "")
        write_frame(answers, {"init_error": init_error, "traceback": "".join(traceback.format_exception(exc))})
        return 1
    write_frame(answers, {"ready": True})
    while (request := read_frame(requests)) is not None:
        write_frame(answers, invoke(handler, reasons, request))
    return 0


def main() -> int:
    # The runtime ends a worker by closing its pipe (or kills it); an interrupt is not for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers, spec = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    os.set_inheritable(requests, False)
    os.set_inheritable(answers, False)
    return serve(requests, answers, spec)


if __name__ == "__main__":
    sys.exit(main())
