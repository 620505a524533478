"""Write-to-frame latency through ``iii-stream local``: a write through the Lambda endpoint until its frame
reaches every subscribed WebSocket client (1 and 100 subscribers), and sequential writes per second.

Measured from outside the project: the writer is a plain boto3 Lambda client (``PlainWriter``), the subscribers
plain ``websockets`` clients. Two clocks per frame: from the writer's call (``stream::set`` invoked through the
Lambda endpoint) and from the write's own stamp (the ``timestamp`` the stream function gave the item, which the
frame carries).

The service runs as its own process (as ``make run`` starts it), on free loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from iii_stream.infra.offline_env import offline_env
from websockets.asyncio.client import ClientConnection, connect

CLI = Path(sys.executable).parent / "iii-stream"


@dataclass
class LatencyResult:
    subscribers: int
    writes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    stamped_p50_ms: float
    stamped_p99_ms: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalProcess:
    def __init__(self) -> None:
        self.ws_port, self.lambda_port = _free_port(), _free_port()
        self._log = Path(tempfile.mkstemp(suffix=".log")[1])
        env = offline_env()
        with self._log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    str(CLI),
                    "local",
                    "--in-memory",  # measure a fresh service: no snapshot read or written
                    "--port",
                    str(self.ws_port),
                    "--lambda-port",
                    str(self.lambda_port),
                    *os.environ.get("BENCH_LOCAL_ARGS", "").split(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while "iii-stream local is running" not in self._log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("iii-stream local did not start:\n" + self._log.read_text(errors="replace"))
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.unlink(missing_ok=True)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def _subscribers(url: str, group: str, count: int) -> list[ClientConnection]:
    sockets = [await connect(url, max_size=None) for _ in range(count)]
    for ws in sockets:
        data = {"streamName": "bench", "groupId": group, "subscriptionId": str(uuid.uuid4())}
        await ws.send(json.dumps({"type": "join", "data": data}))
    for ws in sockets:
        await asyncio.wait_for(ws.recv(), 10)  # the sync
    return sockets


async def _frame_of(ws: ClientConnection, n: int) -> tuple[float, float]:
    """When write ``n``'s frame arrived, and how long after the write's stamp (ms), as the frame says.

    A join's catch-up may repeat an earlier create: clients skip those, and so do we.
    """
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["event"].get("data") == {"n": n}:
            return time.perf_counter(), time.time() * 1000 - frame["timestamp"]


async def _latency(local: LocalProcess, client: Any, subscribers: int, writes: int) -> LatencyResult:
    group = f"g{subscribers}-{uuid.uuid4().hex[:6]}"
    sockets = await _subscribers(f"ws://127.0.0.1:{local.ws_port}/", group, subscribers)
    samples: list[float] = []
    stamped: list[float] = []
    try:
        for n in range(writes):
            started = time.perf_counter()
            write = asyncio.to_thread(client.set, "bench", group, f"i{n % 10}", {"n": n})
            arrivals = [_frame_of(ws, n) for ws in sockets]
            _, *frames = await asyncio.gather(write, *arrivals)
            samples.extend((arrived - started) * 1000 for arrived, _ in frames)
            stamped.extend(after_stamp for _, after_stamp in frames)
    finally:
        for ws in sockets:
            await ws.close()
    return LatencyResult(
        subscribers,
        writes,
        statistics.median(samples),
        _percentile(samples, 0.99),
        max(samples),
        statistics.median(stamped),
        _percentile(stamped, 0.99),
    )


class _Accept(BaseHTTPRequestHandler):
    """Answers every post 200 at once: what is left to measure is the client's side."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _accept_posts(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Accept).serve_forever()


class PlainWriter:
    """``stream::set`` as any program outside this project would call it: a plain boto3 Lambda client invoking
    ``StreamFunction`` on the local endpoint (no iii_stream code on the writer's side)."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        self._lambda = boto3.client(
            "lambda",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def set(self, stream_name: str, group_id: str, item_id: str, data: Any) -> Any:
        payload = {"stream_name": stream_name, "group_id": group_id, "item_id": item_id, "data": data}
        event = {"function_id": "stream::set", "payload": payload}
        response = self._lambda.invoke(FunctionName="StreamFunction", Payload=json.dumps(event).encode())
        answer = json.loads(response["Payload"].read())
        if response.get("FunctionError") or "result" not in answer:
            raise RuntimeError(f"stream::set failed: {answer!r}")
        return answer["result"]


def _writes_per_second(client: Any, count: int = 200) -> float:
    started = time.perf_counter()
    for n in range(count):
        client.set("bench", "throughput", f"i{n % 20}", {"n": n})
    return count / (time.perf_counter() - started)


WRITES_1: Final = 100
WRITES_100: Final = 50
WRITES_RATE: Final = 200
WARM_UP_WRITES: Final = 20


def measure_once(
    writes_1: int = WRITES_1, writes_100: int = WRITES_100, writes_rate: int = WRITES_RATE
) -> dict[str, Any]:
    """One run against a fresh ``iii-stream local``: the latency at 1 and at 100 subscribers, then writes/s."""
    local = LocalProcess()
    try:
        client = PlainWriter(f"http://127.0.0.1:{local.lambda_port}")
        # Warm: every function's first invocation starts its worker (its init, ~0.2 s), as a cold Lambda would.
        for n in range(WARM_UP_WRITES):
            client.set("bench", "warm-up", f"i{n}", n)
        time.sleep(1)
        # Writes/s first, on a service with nothing else to do (after the 100-subscriber run, the $disconnect of
        # its sockets and their leaves take the next few seconds, and would be measured too).
        rate = _writes_per_second(client, writes_rate)
        results = [
            asyncio.run(_latency(local, client, 1, writes_1)),
            asyncio.run(_latency(local, client, 100, writes_100)),
        ]
    finally:
        local.stop()
    return {"latency": [result.__dict__ for result in results], "writes_per_second": rate}


def figures(run: dict[str, Any]) -> dict[str, float]:
    """A run's figures, by the keys of results.json."""
    one, hundred = run["latency"]
    return {
        "local.write_to_frame_p50_ms_1": one["p50_ms"],
        "local.write_to_frame_p99_ms_1": one["p99_ms"],
        "local.write_to_frame_p50_ms_100": hundred["p50_ms"],
        "local.write_to_frame_p99_ms_100": hundred["p99_ms"],
        "local.stamp_to_frame_p50_ms_100": hundred["stamped_p50_ms"],
        "local.writes_per_s": run["writes_per_second"],
    }
