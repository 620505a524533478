"""The local Lambda runtime: every function in warm worker processes of its own, as Lambda runs containers.

``LocalRuntime.invoke(name, event)`` runs one invocation of one function in one of its workers (``worker.py``),
started on first use and reused while it lives. What Lambda gives each function, each gets here:

- its own environment (``FunctionSpec.environment``, resolved from template.yaml or the app by ``functions.py``),
  and its own module state;
- its ``Timeout``: past it the worker is killed and the invocation fails with ``Sandbox.Timedout``;
- a worker that crashes or exits fails the one invocation it was running (``Runtime.ExitError``); the next
  invocation gets a fresh worker;
- bounded concurrency: at most ``concurrency`` invocations of a function at once. A call that finds them all
  busy waits for one, up to the function's timeout, then is throttled (``Throttled``, the Invoke API's 429). A
  queued call (an ``Event`` invocation, which Lambda keeps in its queue until it can run) waits as long as it takes.

The gateway, the Lambda endpoint, the HTTP API and the stream pumps all invoke through it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iii_stream.infra.local.frames import FrameTimeout, read_frame, write_frame

log = logging.getLogger("iii_stream.local.runtime")
INIT_SECONDS = 10.0  # Lambda's limit on a function's init (its imports), at least
STOP_SECONDS = 2.0  # a worker let go gets this long to exit before it is killed


@dataclass(frozen=True)
class FunctionSpec:
    """One function the runtime serves: what to load, in which environment, with which limits."""

    name: str  # its Lambda function name, as invoked
    environment: Mapping[str, str] = field(default_factory=dict)  # the worker's whole environment
    handler: str = ""  # ``module.attribute`` in ``code_dir`` (a template function) ...
    code_dir: str = ""
    app: str = ""  # ... or the function ``function_id`` of the App in the file ``app``
    function_id: str = ""
    timeout_seconds: float = 29.0
    memory_mb: int = 512
    concurrency: int = 4

    def describe(self) -> dict[str, Any]:
        """What the worker needs to find the handler."""
        if self.app:
            return {"app": self.app, "function_id": self.function_id}
        return {"handler": self.handler, "code_dir": self.code_dir}


class FunctionError(Exception):
    """An invocation that failed as Lambda reports it: ``body`` is the Invoke API's ``Unhandled`` error payload;
    ``details`` the traceback, when the worker sent one."""

    def __init__(self, body: dict[str, Any], details: str = "") -> None:
        super().__init__(f"{body.get('errorType')}: {body.get('errorMessage')}")
        self.body = body
        self.details = details


class Throttled(Exception):
    """Every worker of a function stayed busy past its timeout (the Invoke API's 429 TooManyRequestsException)."""


def _error(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": []}


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, spec: FunctionSpec) -> None:
        to_worker_r, self._requests = os.pipe()
        self._answers, from_worker_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "iii_stream.infra.local.worker", str(to_worker_r), str(from_worker_w)]
                + [json.dumps(spec.describe())],
                env=dict(spec.environment),
                stdin=subprocess.DEVNULL,
                pass_fds=(to_worker_r, from_worker_w),
                process_group=0,  # a Ctrl-C in the terminal is the service's to handle: it stops its workers itself
            )
        except BaseException:
            for fd in (self._requests, self._answers):
                os.close(fd)
            raise
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self.closed = False

    def ready(self, timeout: float) -> Any:
        return read_frame(self._answers, timeout)

    def call(self, request: dict[str, Any], timeout: float) -> Any:
        """The worker's answer; None when it exited; FrameTimeout past ``timeout``."""
        try:
            write_frame(self._requests, request)
        except BrokenPipeError:
            return None
        return read_frame(self._answers, timeout)

    def exit_status(self) -> str:
        """How the process ended, as Lambda words it (``exit status 1``, ``signal: killed``)."""
        try:
            code = self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            return "signal: killed" if code == -9 else f"signal {-code}"
        return f"exit status {code}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.close()

    def close(self) -> None:
        """Let the worker go: its request pipe closes, so it ends once its current invocation is done."""
        if not self.closed:
            self.closed = True
            for fd in (self._requests, self._answers):
                os.close(fd)


class _Pool:
    """The workers of one function."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._slots = threading.BoundedSemaphore(max(1, spec.concurrency))
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._closed = False
        self.started = 0  # workers started (init count)

    def invoke(self, event: Any, queued: bool = False) -> tuple[Any, dict[str, str]]:
        spec = self.spec
        if not self._slots.acquire(timeout=None if queued else spec.timeout_seconds):
            raise Throttled(f"{spec.name}: all {spec.concurrency} of its workers stayed busy")
        try:
            request_id = str(uuid.uuid4())
            worker = self._take(request_id)
            request = {
                "event": event,
                "request_id": request_id,
                "function_name": spec.name,
                "timeout_ms": int(spec.timeout_seconds * 1000),
                "memory_mb": spec.memory_mb,
            }
            try:
                answer = worker.call(request, spec.timeout_seconds)
            except FrameTimeout:
                self._drop(worker, kill=True)
                message = f"RequestId: {request_id} Error: Task timed out after {spec.timeout_seconds:.2f} seconds"
                raise FunctionError(_error("Sandbox.Timedout", message, request_id)) from None
            if answer is None:
                self._drop(worker)
                status = worker.exit_status()
                message = f"RequestId: {request_id} Error: Runtime exited with error: {status}"
                raise FunctionError(_error("Runtime.ExitError", message, request_id))
            self._give_back(worker)
        finally:
            self._slots.release()
        if "error" in answer:
            raise FunctionError(answer["error"], answer.get("traceback", ""))
        return answer.get("result"), answer.get("reasons") or {}

    def _take(self, request_id: str) -> _Worker:
        with self._lock:
            if self._closed:
                raise FunctionError(_error("Runtime.ExitError", f"{self.spec.name} is stopping", request_id))
            if self._idle:
                return self._idle.pop()
        return self._start(request_id)

    def _start(self, request_id: str) -> _Worker:
        worker = _Worker(self.spec)
        with self._lock:
            self._workers.add(worker)
            self.started += 1
        try:
            said = worker.ready(max(INIT_SECONDS, self.spec.timeout_seconds))
        except FrameTimeout:
            self._drop(worker, kill=True)
            message = f"RequestId: {request_id} Error: the init of {self.spec.name} took longer than its limit"
            raise FunctionError(_error("Runtime.InitError", message, request_id)) from None
        if said is None or "init_error" in said:
            self._drop(worker)
            status = worker.exit_status()  # it exits at once after an init error: reaped here
            if said is None:
                message = f"RequestId: {request_id} Error: Runtime exited with error: {status}"
                raise FunctionError(_error("Runtime.ExitError", message, request_id))
            raise FunctionError({**said["init_error"], "requestId": request_id}, said.get("traceback", ""))
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        self._drop(worker)

    def _drop(self, worker: _Worker, kill: bool = False) -> None:
        with self._lock:
            self._workers.discard(worker)
        if kill:
            worker.kill()
        else:
            worker.close()

    def close(self) -> list[_Worker]:
        """No new invocations; idle workers are let go now, busy ones when their invocation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            workers = list(self._workers)
        for worker in idle:
            self._drop(worker)
        return workers


class RuntimeHandler:
    """A function of the runtime in a Lambda handler's shape (``handler(event, context)``)."""

    def __init__(self, runtime: LocalRuntime, name: str) -> None:
        self.runtime = runtime
        self.name = name

    def __call__(self, event: Any, context: Any = None) -> Any:
        return self.runtime.invoke(self.name, event)

    def queued(self, event: Any) -> Any:
        """An ``Event`` invocation: it waits for a free worker however long that takes."""
        return self.runtime.invoke(self.name, event, queued=True)


class LocalRuntime:
    """Invoke functions by name, each in its own warm worker processes (see the module docstring)."""

    def __init__(self, specs: Mapping[str, FunctionSpec] | None = None) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}
        self._local = threading.local()
        self._retired: list[_Worker] = []
        self.replace(specs or {})

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._pools)

    def spec(self, name: str) -> FunctionSpec | None:
        with self._lock:
            pool = self._pools.get(name)
        return pool.spec if pool is not None else None

    def workers_started(self, name: str) -> int:
        with self._lock:
            pool = self._pools.get(name)
        return pool.started if pool is not None else 0

    def replace(self, specs: Mapping[str, FunctionSpec]) -> None:
        """Serve ``specs`` from now on: the functions not in it, or changed, get fresh workers (their running
        invocations finish in the old ones); the unchanged keep theirs."""
        with self._lock:
            old = self._pools
            self._pools = {
                name: old[name] if name in old and old[name].spec == spec else _Pool(spec)
                for name, spec in specs.items()
            }
            gone = [pool for name, pool in old.items() if self._pools.get(name) is not pool]
        self._retire([worker for pool in gone for worker in pool.close()])

    def restart(self, names: list[str]) -> None:
        """Fresh workers for ``names`` at their next invocation (an edited handler is loaded anew)."""
        with self._lock:
            pools = [self._pools[name] for name in names if name in self._pools]
            for pool in pools:
                self._pools[pool.spec.name] = _Pool(pool.spec)
        self._retire([worker for pool in pools for worker in pool.close()])

    def _retire(self, workers: list[_Worker]) -> None:
        """Keep the workers let go until they exit (reaped here, or waited for at ``stop``)."""
        with self._lock:
            self._retired = [worker for worker in self._retired if worker.process.poll() is None] + workers

    def invoke(self, name: str, event: Any, *, queued: bool = False) -> Any:
        """The function's result. Raises KeyError for a function not served, FunctionError for a failed
        invocation (with Lambda's error body), Throttled when its workers stayed busy (never when ``queued``)."""
        with self._lock:
            pool = self._pools[name]
        result, reasons = pool.invoke(event, queued)
        self._local.reasons = reasons
        return result

    def last_reasons(self) -> dict[str, str]:
        """Why records of this thread's last batch failed, by sequence number (for a stream handler's log)."""
        reasons: dict[str, str] = getattr(self._local, "reasons", {})
        return reasons

    def handler(self, name: str) -> RuntimeHandler:
        """``(event, context)`` -> ``invoke(name, event)``: a Lambda handler's shape, for the endpoints; its
        ``queued(event)`` is the same for an ``Event`` invocation."""
        return RuntimeHandler(self, name)

    def stop(self) -> None:
        """Let every worker go; those still running after ``STOP_SECONDS`` are killed."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        workers = [worker for pool in pools for worker in pool.close()] + self._retired
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
