"""The scale envelope: what the broadcast delivers on AWS Lambda, projected from what is measured here.

A model, not a measurement. Every assumption is a constant below, with its source; the facts are from
``aws-scale-facts.md`` (collected 2026-12), the defaults of the code from ``functions/iii_stream/config.py``
and ``template.yaml``. The bench (``python -m bench``) replaces the defaults of the measured inputs (CPU per
post, the broadcast's CPU per subscriber row, the per-chunk overhead) with this run's figures.

One change to a group of N subscribers (``delivery``):

- N <= ``fanout_threshold``: the broadcast invocation posts them itself;
- else the broadcast hands them to ``k = ceil(N / chunk_size)`` fan-out invocations, all at once, in as many
  ``waves`` as the environments Lambda can give (``min(concurrency, scale_per_10s)``: a delivery lasts less
  than 10 s, so it cannot get more than one scaling step of new environments).

Its time is bounded below by each limit; the largest binds::

    T(N)  = Query + overhead + max(quota, CPU, I/O)
    Query = pages * query_page_ms + N * row_cpu_ms / share(broadcast memory)    (the one subscriber Query)
    quota = N / quota_rps                         (every post is one API Gateway request, account-wide)
    CPU   = waves * c * cpu_ms_per_post / share   (c = posts per invocation: min(chunk_size, N), or N alone)
    I/O   = waves * c * post_rtt_ms / posts_in_flight
    share(memory) = min(1, memory_mb / 1769)      (Lambda's vCPU per memory; one Python process ~1 core)

overhead is ``chunk_overhead_ms`` (invoke + JSON + set-up of a fan-out invocation, as measured here) plus
``invoke_rtt_ms`` (Lambda's own round trip for a synchronous Invoke, assumed) on the fan-out path, 0 when the
broadcast posts itself. This machine's core is taken as one Lambda vCPU (an assumption: both x86 server
cores of the same era). The quota's burst bucket (5,000) is not credited: it refills at the steady rate, so a
broadcast that follows another finds it empty; a full bucket would take at most burst / quota_rps = 0.5 s off.

The most changes per second a group of N sustains (``max_changes_per_s``) is the smallest of three limits:

- the quota: quota_rps / N;
- the group's stream shard: a group's changes share a partition key, so they come off one shard, one batch of
  up to ``batch_size`` at a time (ParallelizationFactor 1), and the broadcast waits for every chunk of a batch.
  A chunk posts each change of the batch to its c connections, so a batch of B changes takes
  Query + overhead + B * waves * max(CPU, I/O) of one change: at most B / that changes/s;
- Lambda's concurrency: ``concurrency`` fan-out invocations, each posting c / (overhead + max(CPU, I/O)) a
  second, over N posts per change (account-wide: never tighter than the shard while waves == 1).

Other traffic sharing the account's quota and concurrency is not modelled.

The cost of a million changes to N subscribers (``cost_per_million_changes``), at AWS's published prices:
Lambda GB-seconds of the broadcast (which waits for its chunks) and fan-out invocations at their memory sizes,
for their unthrottled durations (a delivery slowed by the quota waits longer, and costs more), and their
requests; DynamoDB's write of the item and the one subscriber Query per (stream, group) per batch (strongly
consistent: one RRU per 4 KB read; the stream read is free for a Lambda trigger); API Gateway's one message
per post (metered per 32 KB).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# --- Prices, as published by AWS, US East (N. Virginia), checked 2026-12. Not fetched live. ---------------------
PRICES_CHECKED: Final = "2026-12"
PRICES_NOTE: Final = f"prices as published by AWS, US East (N. Virginia), checked {PRICES_CHECKED}; not fetched live"
LAMBDA_USD_PER_GB_S: Final = 0.0000166667  # x86, first 6 billion GB-s a month [aws.amazon.com/lambda/pricing]
LAMBDA_USD_PER_REQUEST: Final = 0.20 / 1e6  # [aws.amazon.com/lambda/pricing]
DYNAMODB_USD_PER_WRU: Final = 0.625 / 1e6  # on-demand, priced since Nov 2024 [aws.amazon.com/dynamodb/pricing]
DYNAMODB_USD_PER_RRU: Final = 0.125 / 1e6  # on-demand, priced since Nov 2024 [aws.amazon.com/dynamodb/pricing]
API_GATEWAY_USD_PER_MESSAGE: Final = 1.00 / 1e6  # WebSocket, first billion a month [aws.amazon.com/api-gateway/pricing]

# --- AWS facts (aws-scale-facts.md) --------------------------------------------------------------------------
API_GATEWAY_QUOTA_RPS: Final = 10_000  # requests/s per account and Region, @connections posts included
API_GATEWAY_QUOTA_BURST: Final = 5_000  # the token bucket; not credited (see the docstring)
API_GATEWAY_METERED_BYTES: Final = 32 * 1024  # a message is metered per 32 KB
LAMBDA_MB_PER_VCPU: Final = 1_769  # 1,769 MB is one full vCPU, linear below ("memory and computing power")
LAMBDA_MAX_PROCESS_VCPU: Final = 1.0  # one Python process uses at most about one core (the GIL)
LAMBDA_CONCURRENCY: Final = 1_000  # the default account concurrency
LAMBDA_SCALE_PER_10_S: Final = 1_000  # Lambda adds up to 1,000 execution environments every 10 s
DYNAMODB_QUERY_PAGE_BYTES: Final = 1024 * 1024  # a Query page reads at most 1 MB [DynamoDB guide, "Query"]
DYNAMODB_RRU_BYTES: Final = 4 * 1024  # a strongly consistent read: 1 RRU per 4 KB [DynamoDB guide, capacity]

# --- The code's defaults (functions/iii_stream/config.py, template.yaml) ----------------------------------------
POSTS_IN_FLIGHT: Final = 128  # BROADCAST_CONCURRENCY: the poster's pool
FANOUT_THRESHOLD: Final = 500  # FANOUT_THRESHOLD: a batch with more posts than this goes to the fan-out
BATCH_SIZE: Final = 100  # template.yaml BroadcastFunction ItemsStream BatchSize
CHUNK_SIZE: Final = 250  # FANOUT_CHUNK_SIZE: connections per fan-out invocation
# template.yaml BroadcastFunction and FanoutFunction MemorySize: one full vCPU each (``template_params`` reads
# these and the other defaults of the code from the template itself).
BROADCAST_MEMORY_MB: Final = 1_769
FANOUT_MEMORY_MB: Final = 1_769
# The item write of stream::set: the table and its by_stream index (INCLUDE expires_at), 1 WRU each for an
# item under 1 KB (template.yaml ItemsTable; DynamoDB guide, "GSI write capacity").
ITEM_WRITE_UNITS: Final = 2

# --- Measured here, replaced by the bench's own figures ---------------------------------------------------------
CPU_MS_PER_POST: Final = 0.29  # SigV4 with a cached key + urllib3, 0.22-0.29 ms (aws-scale-facts.md)
# The broadcast's CPU per subscriber row (botocore's parse of the Query page + DynamoConnectionStore's decode):
# 0.005-0.007 ms, a canned 10,000-row answer on the 2-core build machine, 2026-12 (bench.data_plane).
ROW_CPU_MS: Final = 0.007

# --- Assumptions, not measured ---------------------------------------------------------------------------------
POST_RTT_MS: Final = 20.0  # a post's round trip to API Gateway, as the bench simulates it (PRODUCT.md)
CHUNK_OVERHEAD_MS: Final = 20.0  # invoke + JSON + set-up per fan-out invocation, until the bench measures it
# What the bench cannot measure here: a warm synchronous Lambda Invoke's round trip inside a Region (the request
# and the chunk's payload through Lambda's front end to an environment and back), added to the measured overhead.
LAMBDA_INVOKE_RTT_MS: Final = 25.0
# DynamoDB answers small requests in single-digit ms; a full 1 MB page also crosses the network: 25 ms a page.
QUERY_PAGE_MS: Final = 25.0
# A subscription row as DynamoDB sizes it (names + values: pk ~40 B, sk ~50 B, expires_at ~15 B, synced ~15 B).
SUBSCRIPTION_ROW_BYTES: Final = 120
FRAME_BYTES: Final = 260  # one change's frame (aws-scale-facts.md, "260 B frames")
CHANGES_PER_BATCH: Final = 1  # the worst case: every change pays its own broadcast invocation and Query

ENVELOPE_GROUPS: Final = (100, 1_000, 10_000, 100_000)
COST_GROUPS: Final = (10, 100, 1_000, 10_000)
_MAX_GROUP: Final = 10**9
# Inputs the model divides by, or sizes a plan with.
_POSITIVE: Final = (
    "chunk_size",
    "posts_in_flight",
    "broadcast_memory_mb",
    "fanout_memory_mb",
    "concurrency",
    "scale_per_10_s",
    "quota_rps",
    "batch_size",
    "changes_per_batch",
)

QUOTA: Final = "API Gateway quota"
CPU: Final = "Lambda CPU"
IO: Final = "post round trips"
CONCURRENCY: Final = "Lambda concurrency"
SHARD: Final = "stream shard"


@dataclass(frozen=True)
class Params:
    """The model's inputs; every default is one of the module's constants."""

    cpu_ms_per_post: float = CPU_MS_PER_POST
    row_cpu_ms: float = ROW_CPU_MS
    chunk_overhead_ms: float = CHUNK_OVERHEAD_MS
    invoke_rtt_ms: float = LAMBDA_INVOKE_RTT_MS
    chunk_size: int = CHUNK_SIZE
    fanout_threshold: int = FANOUT_THRESHOLD
    batch_size: int = BATCH_SIZE
    post_rtt_ms: float = POST_RTT_MS
    posts_in_flight: int = POSTS_IN_FLIGHT
    broadcast_memory_mb: int = BROADCAST_MEMORY_MB
    fanout_memory_mb: int = FANOUT_MEMORY_MB
    concurrency: int = LAMBDA_CONCURRENCY
    scale_per_10_s: int = LAMBDA_SCALE_PER_10_S
    quota_rps: float = API_GATEWAY_QUOTA_RPS
    query_page_ms: float = QUERY_PAGE_MS
    subscription_row_bytes: int = SUBSCRIPTION_ROW_BYTES
    frame_bytes: int = FRAME_BYTES
    item_write_units: int = ITEM_WRITE_UNITS
    changes_per_batch: int = CHANGES_PER_BATCH

    def fed(
        self,
        cpu_ms_per_post: float | None = None,
        row_cpu_ms: float | None = None,
        chunk_overhead_ms: float | None = None,
    ) -> Params:
        """These params with the measured inputs given (None: keep the assumption)."""
        return dataclasses.replace(
            self,
            cpu_ms_per_post=self.cpu_ms_per_post if cpu_ms_per_post is None else cpu_ms_per_post,
            row_cpu_ms=self.row_cpu_ms if row_cpu_ms is None else row_cpu_ms,
            chunk_overhead_ms=self.chunk_overhead_ms if chunk_overhead_ms is None else chunk_overhead_ms,
        )

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")


@dataclass(frozen=True)
class Plan:
    """How a batch's posts go out: by the broadcast itself, or by fan-out invocations of ``connections`` each."""

    invocations: int  # fan-out invocations; 0 when the broadcast posts itself
    waves: int  # rounds of invocations Lambda's environments allow
    connections: int  # per posting invocation
    memory_mb: int  # of the posting invocation
    overhead_s: float  # invoke + JSON + set-up before a fan-out invocation posts

    @staticmethod
    def of(n: int, posts: int, params: Params) -> Plan:
        """The plan for ``posts`` posts to ``n`` connections (a batch of posts / n changes)."""
        if posts <= params.fanout_threshold:
            return Plan(0, 1, n, params.broadcast_memory_mb, 0.0)
        invocations = math.ceil(n / params.chunk_size)
        waves = math.ceil(invocations / min(params.concurrency, params.scale_per_10_s))
        connections = min(params.chunk_size, n)
        overhead_s = (params.chunk_overhead_ms + params.invoke_rtt_ms) / 1000
        return Plan(invocations, waves, connections, params.fanout_memory_mb, overhead_s)

    def cpu_s(self, params: Params) -> float:
        """CPU of one change's posts, every wave (the posting invocations run side by side)."""
        return self.waves * self.connections * params.cpu_ms_per_post / vcpu_share(self.memory_mb) / 1000

    def io_s(self, params: Params) -> float:
        """Round trips of one change's posts, ``posts_in_flight`` at a time, every wave."""
        return self.waves * self.connections * params.post_rtt_ms / params.posts_in_flight / 1000


@dataclass(frozen=True)
class Delivery:
    """One change to ``subscribers``: its projected time, what binds it, and the terms it is made of (s)."""

    subscribers: int
    seconds: float
    binding: str
    plan: Plan
    query_s: float
    quota_s: float
    cpu_s: float
    io_s: float


@dataclass(frozen=True)
class Cost:
    """US dollars per million changes to one group."""

    subscribers: int
    lambda_usd: float
    dynamodb_usd: float
    api_gateway_usd: float

    @property
    def total_usd(self) -> float:
        return self.lambda_usd + self.dynamodb_usd + self.api_gateway_usd


def vcpu_share(memory_mb: float) -> float:
    """The vCPU a Python process gets at this memory size."""
    return min(LAMBDA_MAX_PROCESS_VCPU, memory_mb / LAMBDA_MB_PER_VCPU)


def query_s(n: int, params: Params) -> float:
    """The broadcast's one subscriber Query: its pages, and its CPU for the rows."""
    pages = max(1, math.ceil(n * params.subscription_row_bytes / DYNAMODB_QUERY_PAGE_BYTES))
    cpu_ms = n * params.row_cpu_ms / vcpu_share(params.broadcast_memory_mb)
    return (pages * params.query_page_ms + cpu_ms) / 1000


def delivery(n: int, params: Params) -> Delivery:
    """One change to ``n`` subscribers through the broadcast (and its fan-out tier) on Lambda."""
    if n < 1:
        raise ValueError(f"a group needs at least one subscriber, not {n}")
    plan = Plan.of(n, n, params)
    limits = {QUOTA: n / params.quota_rps, CPU: plan.cpu_s(params), IO: plan.io_s(params)}
    binding = max(limits, key=lambda name: limits[name])
    if plan.waves > 1 and binding != QUOTA:
        binding = CONCURRENCY
    looked_up = query_s(n, params)
    return Delivery(
        subscribers=n,
        seconds=looked_up + plan.overhead_s + max(limits.values()),
        binding=binding,
        plan=plan,
        query_s=looked_up,
        quota_s=limits[QUOTA],
        cpu_s=limits[CPU],
        io_s=limits[IO],
    )


def project_delivery_s(n: int, params: Params) -> float:
    """Seconds to deliver one change to ``n`` subscribers on Lambda."""
    return delivery(n, params).seconds


def _largest_within(seconds: float, params: Params, low: int, high: int) -> int:
    """The largest n in [low, high] delivered within ``seconds`` (delivery grows with n there), or low - 1."""
    if project_delivery_s(low, params) > seconds:
        return low - 1
    while low < high:
        middle = (low + high + 1) // 2
        if project_delivery_s(middle, params) <= seconds:
            low = middle
        else:
            high = middle - 1
    return low


def largest_group_within(seconds: float, params: Params) -> int:
    """The most subscribers one change reaches within ``seconds`` (0: not even one).

    Delivery grows with n on each path, and drops where the fan-out takes over: searched path by path.
    """
    threshold = max(0, params.fanout_threshold)
    fanned = _largest_within(seconds, params, threshold + 1, _MAX_GROUP)
    if fanned > threshold or threshold == 0:
        return max(0, fanned)
    return max(0, _largest_within(seconds, params, 1, threshold))


def sustained_limits(n: int, params: Params) -> dict[str, float]:
    """Changes per second a group of ``n`` sustains under each limit (the shard's with full batches)."""
    full = params.batch_size
    batch = Plan.of(n, n * full, params)
    batch_s = query_s(n, params) + batch.overhead_s + full * max(batch.cpu_s(params), batch.io_s(params))
    one = Plan.of(n, params.fanout_threshold + 1, params)  # a fan-out invocation
    invocation_s = one.overhead_s + max(one.cpu_s(params), one.io_s(params)) / one.waves
    return {
        QUOTA: params.quota_rps / n,
        SHARD: full / batch_s,
        CONCURRENCY: params.concurrency * one.connections / invocation_s / n,
    }


def max_changes_per_s(n: int, params: Params) -> tuple[float, str]:
    """The most changes per second a group of ``n`` sustains, and the limit that binds."""
    limits = sustained_limits(n, params)
    binding = min(limits, key=lambda name: limits[name])
    if binding == SHARD and Plan.of(n, n * params.batch_size, params).waves > 1:
        binding = CONCURRENCY
    return limits[binding], binding


def cost_per_million_changes(n: int, params: Params) -> Cost:
    """What a million changes to a group of ``n`` cost, in US dollars, at the published prices.

    The broadcast runs for the Query (once per batch) and waits for the posting; each fan-out invocation runs
    for its overhead and its posts.
    """
    path = delivery(n, params)
    batch, plan = params.changes_per_batch, path.plan
    posting_s = max(path.cpu_s, path.io_s)
    broadcast_s = path.query_s / batch + plan.overhead_s + posting_s
    fanout_s = plan.invocations * (plan.overhead_s + posting_s / plan.waves)
    gb_s = broadcast_s * params.broadcast_memory_mb / 1024 + fanout_s * params.fanout_memory_mb / 1024
    requests = 1 / batch + plan.invocations
    lambda_usd = gb_s * LAMBDA_USD_PER_GB_S + requests * LAMBDA_USD_PER_REQUEST
    query_rru = math.ceil(n * params.subscription_row_bytes / DYNAMODB_RRU_BYTES) / batch
    dynamodb_usd = params.item_write_units * DYNAMODB_USD_PER_WRU + query_rru * DYNAMODB_USD_PER_RRU
    messages = n * math.ceil(params.frame_bytes / API_GATEWAY_METERED_BYTES)
    return Cost(n, lambda_usd * 1e6, dynamodb_usd * 1e6, messages * API_GATEWAY_USD_PER_MESSAGE * 1e6)


def _properties(template: Mapping[str, Any], logical_id: str) -> Mapping[str, Any]:
    resource = template.get("Resources", {}).get(logical_id) or {}
    return resource.get("Properties") or {}


def template_params(template: Mapping[str, Any], base: Params | None = None) -> Params:
    """``base`` (default: ``Params()``) with the code's settings as ``template.yaml`` deploys them.

    Memory sizes of BroadcastFunction and FanoutFunction (else Globals), the broadcast's stream BatchSize, and
    the BROADCAST_CONCURRENCY, FANOUT_THRESHOLD and FANOUT_CHUNK_SIZE variables; what is absent stays as in base.
    """
    base = base or Params()
    function_globals = (template.get("Globals") or {}).get("Function") or {}
    variables = dict((function_globals.get("Environment") or {}).get("Variables") or {})
    broadcast, fanout = _properties(template, "BroadcastFunction"), _properties(template, "FanoutFunction")
    variables.update((broadcast.get("Environment") or {}).get("Variables") or {})
    stream = ((broadcast.get("Events") or {}).get("ItemsStream") or {}).get("Properties") or {}
    found = {
        "broadcast_memory_mb": broadcast.get("MemorySize", function_globals.get("MemorySize")),
        "fanout_memory_mb": fanout.get("MemorySize", function_globals.get("MemorySize")),
        "batch_size": stream.get("BatchSize"),
        "posts_in_flight": variables.get("BROADCAST_CONCURRENCY"),
        "fanout_threshold": variables.get("FANOUT_THRESHOLD"),
        "chunk_size": variables.get("FANOUT_CHUNK_SIZE"),
    }
    return dataclasses.replace(base, **{name: int(value) for name, value in found.items() if value is not None})


def _usd(amount: float) -> str:
    return f"{amount:,.2f}" if amount >= 1 else f"{amount:.4f}".rstrip("0").rstrip(".")


def _rate(changes_per_s: float) -> str:
    return f"{changes_per_s:,.0f}" if changes_per_s >= 10 else f"{changes_per_s:.2g}"


def render_tables(params: Params) -> str:
    """The envelope and the cost per million changes, as two Markdown tables (for the README)."""
    within = largest_group_within(1.0, params)
    lines = [
        f"Projected on Lambda ({params.fanout_memory_mb} MB fan-out, chunks of {params.chunk_size}, "
        f"{params.posts_in_flight} posts in flight, {params.post_rtt_ms:g} ms a post, "
        f"{params.cpu_ms_per_post:.3f} ms CPU a post at one vCPU, "
        f"{params.chunk_overhead_ms:.3g} + {params.invoke_rtt_ms:g} ms (Lambda invoke) per chunk; "
        f"quota {params.quota_rps:,.0f} requests/s, concurrency {params.concurrency:,}). "
        f"Largest group delivered within 1 s: {within:,}.",
        "",
        "| subscribers | delivery s | binding limit | max sustained changes/s (binding) |",
        "|---:|---:|---|---:|",
    ]
    for n in ENVELOPE_GROUPS:
        projected = delivery(n, params)
        rate, limit = max_changes_per_s(n, params)
        lines.append(f"| {n:,} | {projected.seconds:.2f} | {projected.binding} | {_rate(rate)} ({limit}) |")
    lines += [
        "",
        f"Cost per million changes to one group, US$ ({PRICES_NOTE}; {params.changes_per_batch} change per batch).",
        "",
        "| subscribers | Lambda $ | DynamoDB $ | API Gateway $ | total $ |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in COST_GROUPS:
        cost = cost_per_million_changes(n, params)
        lines.append(
            f"| {n:,} | {_usd(cost.lambda_usd)} | {_usd(cost.dynamodb_usd)} | {_usd(cost.api_gateway_usd)} "
            f"| {_usd(cost.total_usd)} |"
        )
    return "\n".join(lines)


def summary(params: Params) -> dict[str, Any]:
    """The envelope and the costs as data (for results.json)."""
    rows = []
    for n in ENVELOPE_GROUPS:
        projected = delivery(n, params)
        rate, limit = max_changes_per_s(n, params)
        rows.append(
            {
                "subscribers": n,
                "delivery_s": round(projected.seconds, 3),
                "binding": projected.binding,
                "fanout_invocations": projected.plan.invocations,
                "max_changes_per_s": round(rate, 3),
                "sustained_binding": limit,
            }
        )
    costs = [cost_per_million_changes(n, params) for n in COST_GROUPS]
    return {
        "params": dataclasses.asdict(params),
        "largest_group_within_1_s": largest_group_within(1.0, params),
        "delivery": rows,
        "cost_per_million_changes_usd": [
            {
                "subscribers": cost.subscribers,
                "lambda": round(cost.lambda_usd, 4),
                "dynamodb": round(cost.dynamodb_usd, 4),
                "api_gateway": round(cost.api_gateway_usd, 4),
                "total": round(cost.total_usd, 4),
            }
            for cost in costs
        ],
        "prices": PRICES_NOTE,
    }
