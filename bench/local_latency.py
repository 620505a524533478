"""Write-to-frame latency through ``iii-stream local``: a write through the Lambda endpoint until its frame
reaches every subscribed WebSocket client (1 and 100 subscribers), and sequential writes per second.

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
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CLI = Path(sys.executable).parent / "iii-stream"


@dataclass
class LatencyResult:
    subscribers: int
    writes: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalProcess:
    def __init__(self) -> None:
        self.ws_port, self.lambda_port = _free_port(), _free_port()
        self._log = Path(tempfile.mkstemp(suffix=".log")[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
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


async def _frame_of(ws: ClientConnection, n: int) -> float:
    """When write ``n``'s frame arrived (a join's catch-up may repeat an earlier create: clients skip those)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["event"].get("data") == {"n": n}:
            return time.perf_counter()


async def _latency(local: LocalProcess, client: Any, subscribers: int, writes: int) -> LatencyResult:
    group = f"g{subscribers}-{uuid.uuid4().hex[:6]}"
    sockets = await _subscribers(f"ws://127.0.0.1:{local.ws_port}/", group, subscribers)
    samples: list[float] = []
    try:
        for n in range(writes):
            started = time.perf_counter()
            write = asyncio.to_thread(client.set, "bench", group, f"i{n % 10}", {"n": n})
            arrivals = [_frame_of(ws, n) for ws in sockets]
            _, *stamps = await asyncio.gather(write, *arrivals)
            samples.extend((stamp - started) * 1000 for stamp in stamps)
    finally:
        for ws in sockets:
            await ws.close()
    return LatencyResult(subscribers, writes, statistics.median(samples), _percentile(samples, 0.99), max(samples))


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
    return {"latency": [result.__dict__ for result in results], "writes_per_second": rate}


def render(figures: dict[str, Any]) -> str:
    lines = [
        "Local service: write (Lambda endpoint) -> frame at every subscriber",
        f"{'subscribers':>11} {'writes':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target (100 subs)",
    ]
    for row in figures["latency"]:
        verdict = ""
        if row["subscribers"] >= 100:
            met = row["p50_ms"] <= 25 and row["p99_ms"] <= 100
            verdict = ("TARGET MET" if met else "TARGET MISSED") + " (p50 <= 25 ms, p99 <= 100 ms)"
        lines.append(
            f"{row['subscribers']:>11} {row['writes']:>6} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['max_ms']:>8.1f}  {verdict}"
        )
    lines.append(f"sequential stream::set through the Lambda endpoint: {figures['writes_per_second']:.0f} writes/s")
    return "\n".join(lines)


def write_json(figures: dict[str, Any]) -> Path:
    path = Path(__file__).parent / "results" / "local_latency.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    return path
