"""The caller's CPU per ``@connections`` post: boto3 against the lean SigV4 poster, and three baselines.

Five clients post the same ~260-byte frame to the same varied connection ids, over keep-alive HTTP on loopback,
to a server in another process (it answers 200 with an empty body; its CPU is not counted):

- ``boto3``: an unmodified boto3 ``apigatewaymanagementapi`` client's ``post_to_connection``;
- ``lean``: ``SignedConnectionsPoster.from_endpoint`` as the broadcast builds it (SigV4 with a cached signing key
  over the hand-rolled ``KeepAliveTransport``);
- ``lean_urllib3``: the same poster over the library, ``from_endpoint(transport="urllib3")`` (a urllib3 pool);
- ``sigv4auth``: botocore's own ``SigV4Auth`` per post over a ``Urllib3Transport`` (the library's signing path);
- ``unsigned``: the same transport with no signature at all (the library's floor).

Single-threaded: CPU is ``time.thread_time()`` around a loop of ``posts`` posts: the calling thread's CPU only,
so neither the server nor the machine's other work is counted, and a wait on the socket costs nothing.
Threaded (how the broadcast posts): ``threads`` threads share one client with a pool of ``threads`` sockets and
post concurrently; CPU is ``time.process_time()`` of this process over the whole burst (every posting thread,
GIL contention included; the server is in another process) over the posts made. Each client is warmed up first;
the clients take turns within each run (in a rotated order from run to run), so noise on the machine falls on
all of them alike. ``python -m bench.post_cost`` prints the tables.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from bench.local_latency import _accept_posts, _free_port

REGION: Final = "us-east-1"
ACCESS_KEY: Final = "AKIDBENCHFAKE"
SECRET_KEY: Final = "bench/fake+secret"
WARM_UP: Final = 100
CLIENTS: Final = ("boto3", "lean", "lean_urllib3", "sigv4auth", "unsigned")
THREADED_CLIENTS: Final = ("boto3", "lean", "lean_urllib3")
THREADS: Final = 64
THREADED_POSTS_PER_THREAD: Final = 100
SINGLE_POOL: Final = 10  # sockets in each client's pool for the single-threaded loop

Post = Callable[[str, bytes], object]


@dataclass(frozen=True)
class ClientCost:
    """One client's CPU milliseconds per post: the median over the runs, their spread, and each run's figure."""

    client: str
    median_ms: float
    min_ms: float
    max_ms: float
    runs_ms: tuple[float, ...]


@dataclass(frozen=True)
class ThreadedCost:
    """CPU milliseconds per post with ``threads`` threads posting at once through one client (``posts`` a run)."""

    threads: int
    posts: int
    runs: int
    boto3: ClientCost
    lean: ClientCost
    lean_urllib3: ClientCost
    posts_per_second: dict[str, float]  # each client's median wall-clock rate over the runs

    def clients(self) -> tuple[ClientCost, ...]:
        return self.boto3, self.lean, self.lean_urllib3


@dataclass(frozen=True)
class PostCost:
    posts: int  # timed posts per client in each run
    runs: int
    frame_bytes: int
    boto3: ClientCost
    lean: ClientCost  # the default from_endpoint poster: the keep-alive transport
    sigv4auth: ClientCost
    unsigned: ClientCost
    lean_to_boto3: float  # lean's median over boto3's
    lean_urllib3: ClientCost  # the same poster over urllib3
    lean_urllib3_to_boto3: float
    threaded: ThreadedCost | None = None  # None when measured with threads=0

    def clients(self) -> tuple[ClientCost, ...]:
        return self.boto3, self.lean, self.lean_urllib3, self.sigv4auth, self.unsigned


def frame() -> bytes:
    """A broadcast frame of about 260 bytes (an update of a small chat message)."""
    event = {
        "type": "stream",
        "timestamp": 1764720000000,
        "streamName": "chat",
        "groupId": "room-42",
        "id": "msg-000123",
        "event": {
            "type": "update",
            "data": {"id": "msg-000123", "author": "ada", "text": "see you at the standup in five", "edited": True},
        },
    }
    data = json.dumps(event, separators=(",", ":")).encode()
    return data + b" " * max(0, 260 - len(data))


def connection_ids(count: int) -> list[str]:
    """Ids shaped like API Gateway's (16 base64 characters ending in ``=``), some needing percent-encoding."""
    return [base64.b64encode(hashlib.sha256(b"%d" % n).digest()[:11]).decode() for n in range(count)]


@contextmanager
def posts_server() -> Iterator[str]:
    """A keep-alive HTTP server in another process answering every POST 200, empty; yields its endpoint URL."""
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_accept_posts, args=(port,), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise RuntimeError(f"the post server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/local"
    finally:
        server.terminate()
        server.join(5)


def _split(endpoint: str) -> tuple[str, str]:
    """The endpoint's origin, and the path its connections are under (``/local/@connections/``)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/") + "/@connections/"


def _boto3(endpoint: str, connections: int = SINGLE_POOL) -> tuple[Post, Callable[[], None]]:
    import boto3
    from botocore.config import Config

    client: Any = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(max_pool_connections=connections),
    )

    def post(connection_id: str, data: bytes) -> None:
        client.post_to_connection(ConnectionId=connection_id, Data=data)

    return post, client.close


def _lean(endpoint: str, connections: int = SINGLE_POOL) -> tuple[Post, Callable[[], None]]:
    """The poster as the broadcast builds it: ``from_endpoint``'s default transport (keep-alive)."""
    from botocore.credentials import Credentials
    from iii_stream.adapters.signed_poster import SignedConnectionsPoster

    poster = SignedConnectionsPoster.from_endpoint(
        endpoint, region=REGION, max_connections=connections, credentials=Credentials(ACCESS_KEY, SECRET_KEY)
    )
    return poster.post, poster.close


def _lean_urllib3(endpoint: str, connections: int = SINGLE_POOL) -> tuple[Post, Callable[[], None]]:
    from botocore.credentials import Credentials
    from iii_stream.adapters.signed_poster import SignedConnectionsPoster

    poster = SignedConnectionsPoster.from_endpoint(
        endpoint,
        region=REGION,
        max_connections=connections,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        transport="urllib3",
    )
    return poster.post, poster.close


def _sigv4auth(endpoint: str, connections: int = SINGLE_POOL) -> tuple[Post, Callable[[], None]]:
    """botocore's signer as botocore uses it: frozen credentials and a new SigV4Auth for each request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from iii_stream.adapters.signed_poster import Urllib3Transport

    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    transport = Urllib3Transport(endpoint, connections)
    origin, base_path = _split(endpoint)

    def post(connection_id: str, data: bytes) -> None:
        path = base_path + quote(connection_id, safe="-_.~")
        request = AWSRequest(method="POST", url=origin + path, data=data)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", REGION).add_auth(request)
        reply = transport.send("POST", path, data, dict(request.headers.items()))
        if reply.status != 200:
            raise RuntimeError(f"{reply.status} from the post server")

    return post, transport.close


def _unsigned(endpoint: str, connections: int = SINGLE_POOL) -> tuple[Post, Callable[[], None]]:
    from iii_stream.adapters.signed_poster import Urllib3Transport

    transport = Urllib3Transport(endpoint, connections)
    _, base_path = _split(endpoint)

    def post(connection_id: str, data: bytes) -> None:
        reply = transport.send("POST", base_path + quote(connection_id, safe="-_.~"), data, {})
        if reply.status != 200:
            raise RuntimeError(f"{reply.status} from the post server")

    return post, transport.close


BUILDERS: Final[dict[str, Callable[[str, int], tuple[Post, Callable[[], None]]]]] = {
    "boto3": _boto3,
    "lean": _lean,
    "lean_urllib3": _lean_urllib3,
    "sigv4auth": _sigv4auth,
    "unsigned": _unsigned,
}


def _cpu_ms_per_post(post: Post, ids: list[str], data: bytes) -> float:
    gc.collect()
    started = time.thread_time()
    for connection_id in ids:
        post(connection_id, data)
    return (time.thread_time() - started) * 1000 / len(ids)


def _threaded_cpu_ms_per_post(post: Post, threads: int, ids: list[str], data: bytes) -> tuple[float, float]:
    """CPU ms per post of this process, and posts per second, with ``threads`` threads posting ``ids`` at once."""
    shares = [ids[n::threads] for n in range(threads)]
    start = threading.Barrier(threads + 1)
    failed: list[BaseException] = []

    def run(share: list[str]) -> None:
        start.wait()
        try:
            for connection_id in share:
                post(connection_id, data)
        except BaseException as exc:  # re-raised in the measuring thread
            failed.append(exc)

    workers = [threading.Thread(target=run, args=(share,), daemon=True) for share in shares]
    for worker in workers:
        worker.start()
    gc.collect()
    start.wait()
    cpu, wall = time.process_time(), time.perf_counter()
    for worker in workers:
        worker.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if failed:
        raise failed[0]
    return cpu * 1000 / len(ids), len(ids) / wall


def _summary(client: str, runs_ms: list[float]) -> ClientCost:
    figures = tuple(round(ms, 4) for ms in runs_ms)
    return ClientCost(client, round(statistics.median(runs_ms), 4), min(figures), max(figures), figures)


def measure(
    posts: int = 2000,
    runs: int = 3,
    progress: Callable[[str], None] | None = None,
    threads: int = THREADS,
    posts_per_thread: int = THREADED_POSTS_PER_THREAD,
) -> PostCost:
    """Each client's CPU milliseconds per post: single-threaded loops, then ``threads`` threads at once.

    Over ``runs`` runs of ``posts`` posts each, the clients taking turns in a rotated order (run 1: boto3, lean,
    lean_urllib3, sigv4auth, unsigned; run 2: lean, lean_urllib3, sigv4auth, unsigned, boto3; ...). Then, unless
    ``threads`` is 0, boto3 and both lean posters again, each built with a pool of ``threads`` sockets and posted
    through by ``threads`` threads, ``posts_per_thread`` posts each a run, also rotated. The server runs in another
    process.
    """
    if posts < 1 or runs < 1 or threads < 0 or posts_per_thread < 1:
        raise ValueError("posts, runs and posts_per_thread must be at least 1, threads at least 0")
    say = progress or (lambda _: None)
    data = frame()
    ids = connection_ids(max(posts, threads * posts_per_thread))
    timed: dict[str, list[float]] = {name: [] for name in CLIENTS}
    threaded: ThreadedCost | None = None
    with posts_server() as endpoint:
        built = {name: BUILDERS[name](endpoint, SINGLE_POOL) for name in CLIENTS}
        try:
            for post, _ in built.values():
                for connection_id in ids[:WARM_UP]:
                    post(connection_id, data)
            for run in range(runs):
                for name in _rotated(CLIENTS, run):
                    timed[name].append(_cpu_ms_per_post(built[name][0], ids[:posts], data))
                    say(f"run {run + 1}/{runs} {name}: {timed[name][-1]:.3f} ms per post")
        finally:
            for _, close in built.values():
                close()
        if threads:
            threaded = _measure_threaded(endpoint, threads, ids[: threads * posts_per_thread], data, runs, say)
    costs = {name: _summary(name, timed[name]) for name in CLIENTS}
    return PostCost(
        posts,
        runs,
        len(data),
        costs["boto3"],
        costs["lean"],
        costs["sigv4auth"],
        costs["unsigned"],
        round(costs["lean"].median_ms / costs["boto3"].median_ms, 3),
        costs["lean_urllib3"],
        round(costs["lean_urllib3"].median_ms / costs["boto3"].median_ms, 3),
        threaded,
    )


def _rotated(names: tuple[str, ...], run: int) -> tuple[str, ...]:
    return names[run % len(names) :] + names[: run % len(names)]


def _measure_threaded(
    endpoint: str, threads: int, ids: list[str], data: bytes, runs: int, say: Callable[[str], None]
) -> ThreadedCost:
    timed: dict[str, list[float]] = {name: [] for name in THREADED_CLIENTS}
    rates: dict[str, list[float]] = {name: [] for name in THREADED_CLIENTS}
    built = {name: BUILDERS[name](endpoint, threads) for name in THREADED_CLIENTS}
    try:
        for post, _ in built.values():  # every thread once, so the pool holds its sockets before the timing
            _threaded_cpu_ms_per_post(post, threads, ids[: threads * 2], data)
        for run in range(runs):
            for name in _rotated(THREADED_CLIENTS, run):
                cpu_ms, rate = _threaded_cpu_ms_per_post(built[name][0], threads, ids, data)
                timed[name].append(cpu_ms)
                rates[name].append(rate)
                say(f"run {run + 1}/{runs} {name}, {threads} threads: {cpu_ms:.3f} ms per post, {rate:.0f} posts/s")
    finally:
        for _, close in built.values():
            close()
    costs = {name: _summary(name, timed[name]) for name in THREADED_CLIENTS}
    return ThreadedCost(
        threads,
        len(ids),
        runs,
        costs["boto3"],
        costs["lean"],
        costs["lean_urllib3"],
        {name: round(statistics.median(rates[name]), 1) for name in THREADED_CLIENTS},
    )


LABELS: Final = {
    "boto3": "boto3 post_to_connection",
    "lean": "lean (keep-alive)",
    "lean_urllib3": "lean (urllib3)",
    "sigv4auth": "botocore SigV4Auth + urllib3",
    "unsigned": "unsigned urllib3 (floor)",
}


def _rows(clients: tuple[ClientCost, ...], boto3: ClientCost) -> list[str]:
    return [
        f"{LABELS[client.client]:<30} {client.median_ms:>10.3f} {client.min_ms:>8.3f} {client.max_ms:>8.3f} "
        f"{client.median_ms / boto3.median_ms:>8.0%}"
        for client in clients
    ]


def render(cost: PostCost) -> str:
    """Small text tables: median, min and max ms of CPU per post, and the share of boto3's median."""
    header = f"{'client':<30} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'vs boto3':>9}"
    lines = [
        f"CPU per @connections post, the caller's thread ({cost.posts} posts x {cost.runs} runs, "
        f"{cost.frame_bytes}-byte frame, keep-alive loopback, server in another process)",
        header,
        *_rows(cost.clients(), cost.boto3),
    ]
    verdict = "TARGET MET" if cost.lean_to_boto3 <= 1 / 3 else "TARGET MISSED"
    lines.append(f"lean (keep-alive) / boto3 = {cost.lean_to_boto3:.3f}  {verdict} (lean <= 1/3 of boto3)")
    lines.append(f"lean (urllib3) / boto3 = {cost.lean_urllib3_to_boto3:.3f}")
    threaded = cost.threaded
    if threaded is not None:
        lines += [
            "",
            f"CPU per post with {threaded.threads} threads posting at once through one client, the whole process "
            f"({threaded.posts} posts x {threaded.runs} runs, a pool of {threaded.threads} sockets)",
            f"{header} {'posts/s':>9}",
        ]
        rows = _rows(threaded.clients(), threaded.boto3)
        lines += [
            f"{row} {threaded.posts_per_second[client.client]:>9.0f}"
            for row, client in zip(rows, threaded.clients(), strict=True)
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(render(measure(progress=lambda line: print(line, file=sys.stderr))))
