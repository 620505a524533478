"""Write-to-frame latency through ``iii-stream local``: a write through the Lambda endpoint until its frame
reaches every subscribed WebSocket client (1 and 100 subscribers), and sequential writes per second.

Two clocks per frame: from the writer's call (``stream::set`` invoked through the Lambda endpoint) and
from the write's own stamp (the ``timestamp`` the stream function gave the item, which the frame carries).
And the floor under the 100-subscriber figure: the client CPU of one unmodified boto3
``PostToConnection`` (the broadcast handler makes one per subscriber, as on AWS).

The service runs as its own process (as ``make run`` starts it), on free loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
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
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from infra.offline_env import offline_env

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


def post_client_cpu_ms(calls: int = 1000) -> float:
    """Client CPU (ms) of one ``PostToConnection`` by an unmodified boto3 client, the server in another process."""
    import boto3

    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_accept_posts, args=(port,), daemon=True)
    server.start()
    try:
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"http://127.0.0.1:{port}/local",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                client.post_to_connection(ConnectionId="warm-up=", Data=b"{}")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        for _ in range(50):
            client.post_to_connection(ConnectionId="warm-up=", Data=b"{}")
        started = time.process_time()
        for _ in range(calls):
            client.post_to_connection(ConnectionId="abcdefghijklmnop=", Data=b'{"event":{"type":"update"}}')
        return (time.process_time() - started) * 1000 / calls
    finally:
        server.terminate()
        server.join(5)


def _writes_per_second(client: Any, count: int = 200) -> float:
    started = time.perf_counter()
    for n in range(count):
        client.set("bench", "throughput", f"i{n % 20}", {"n": n})
    return count / (time.perf_counter() - started)


def run(writes_1: int = 100, writes_100: int = 50) -> dict[str, Any]:
    from iii_stream.client import StreamClient

    local = LocalProcess()
    try:
        client = StreamClient.via_lambda(endpoint_url=f"http://127.0.0.1:{local.lambda_port}")
        client.set("bench", "warm-up", "i", 1)
        results = [
            asyncio.run(_latency(local, client, 1, writes_1)),
            asyncio.run(_latency(local, client, 100, writes_100)),
        ]
        rate = _writes_per_second(client)
    finally:
        local.stop()
    return {
        "latency": [result.__dict__ for result in results],
        "writes_per_second": rate,
        "post_client_cpu_ms": post_client_cpu_ms(),
    }


def render(figures: dict[str, Any]) -> str:
    lines = [
        "Local service: write -> frame at every subscriber (ms; 'call' from the writer's stream::set call through",
        "the Lambda endpoint, 'stamp' from the timestamp the stream function gave the write)",
        f"{'subscribers':>11} {'writes':>6} {'call p50':>9} {'call p99':>9} {'call max':>9} "
        f"{'stamp p50':>10} {'stamp p99':>10}  target (100 subs)",
    ]
    for row in figures["latency"]:
        verdict = ""
        if row["subscribers"] >= 100:
            met = row["p50_ms"] <= 25 and row["p99_ms"] <= 100
            verdict = ("TARGET MET" if met else "TARGET MISSED") + " (call p50 <= 25 ms, p99 <= 100 ms)"
        lines.append(
            f"{row['subscribers']:>11} {row['writes']:>6} {row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} "
            f"{row['max_ms']:>9.1f} {row['stamped_p50_ms']:>10.1f} {row['stamped_p99_ms']:>10.1f}  {verdict}"
        )
    lines.append(f"sequential stream::set through the Lambda endpoint: {figures['writes_per_second']:.0f} writes/s")
    cpu = figures["post_client_cpu_ms"]
    lines.append(
        f"one boto3 PostToConnection costs its caller {cpu:.2f} ms of CPU (the server in another process): "
        f"{cpu * 100:.0f} ms for 100 subscribers, before the gateway's side"
    )
    return "\n".join(lines)


def write_json(figures: dict[str, Any]) -> Path:
    path = Path(__file__).parent / "results" / "local_latency.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    return path
