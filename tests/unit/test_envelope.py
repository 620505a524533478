"""The scale envelope's arithmetic (bench/envelope.py): hand-computed cases, and what must never happen."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import envelope
from bench.envelope import Params

# Round numbers, one full vCPU for both functions: every figure below is worked out by hand.
SIMPLE = Params(
    cpu_ms_per_post=0.3,
    row_cpu_ms=0.01,
    chunk_overhead_ms=20.0,
    invoke_rtt_ms=0.0,  # the 20 ms above is the whole per-chunk overhead here
    chunk_size=250,
    fanout_threshold=500,
    batch_size=100,
    post_rtt_ms=20.0,
    posts_in_flight=128,
    broadcast_memory_mb=1769,
    fanout_memory_mb=1769,
    concurrency=1000,
    scale_per_10_s=1000,
    quota_rps=10_000,
    query_page_ms=25.0,
    subscription_row_bytes=120,
    frame_bytes=260,
    item_write_units=2,
    changes_per_batch=1,
)
# Nothing but the three limits: T(n) = max(n / quota, c * cpu, c * rtt / in flight).
BARE = dataclasses.replace(SIMPLE, row_cpu_ms=0.0, query_page_ms=0.0, chunk_overhead_ms=0.0, fanout_threshold=0)

small_budget = settings(max_examples=40, deadline=None)
groups = st.integers(min_value=1, max_value=300_000)


def test_vcpu_share_is_linear_below_1769_mb_and_one_core_above() -> None:
    assert envelope.vcpu_share(1769) == 1.0
    assert envelope.vcpu_share(1769 / 2) == 0.5
    assert envelope.vcpu_share(10_240) == 1.0  # more vCPUs, but one Python process uses one


def test_ten_thousand_subscribers_are_bound_by_the_quota() -> None:
    # GIVEN 10,000 subscribers: 40 fan-out invocations of 250
    projected = envelope.delivery(10_000, SIMPLE)

    # THEN Query: 2 pages (1.2 MB) x 25 ms + 10,000 rows x 0.01 ms = 150 ms; overhead 20 ms;
    # quota 10,000 / 10,000 = 1 s; CPU 250 x 0.3 = 75 ms; I/O 250 x 20 / 128 = 39.0625 ms
    assert projected.plan.invocations == 40
    assert projected.plan.waves == 1
    assert projected.query_s == pytest.approx(0.150)
    assert projected.quota_s == pytest.approx(1.0)
    assert projected.cpu_s == pytest.approx(0.075)
    assert projected.io_s == pytest.approx(0.0390625)
    assert projected.seconds == pytest.approx(0.150 + 0.020 + 1.0)
    assert projected.binding == envelope.QUOTA
    assert envelope.project_delivery_s(10_000, SIMPLE) == projected.seconds


def test_lambdas_invoke_round_trip_adds_to_the_measured_chunk_overhead() -> None:
    params = dataclasses.replace(SIMPLE, invoke_rtt_ms=25.0)
    assert envelope.delivery(10_000, params).seconds == pytest.approx(envelope.delivery(10_000, SIMPLE).seconds + 0.025)
    assert envelope.delivery(400, params).seconds == envelope.delivery(400, SIMPLE).seconds  # no fan-out, no invoke


def test_a_small_group_is_posted_by_the_broadcast_itself() -> None:
    # GIVEN 400 subscribers (not above the threshold of 500): no fan-out, no chunk overhead
    projected = envelope.delivery(400, SIMPLE)

    # THEN Query 25 ms + 4 ms; CPU 400 x 0.3 = 120 ms binds (quota 40 ms, I/O 62.5 ms)
    assert projected.plan.invocations == 0
    assert projected.seconds == pytest.approx(0.029 + 0.120)
    assert projected.binding == envelope.CPU


def test_cpu_is_scaled_by_the_memory_share() -> None:
    half = dataclasses.replace(SIMPLE, fanout_memory_mb=1769 / 2, quota_rps=10**9)
    assert envelope.delivery(10_000, half).cpu_s == pytest.approx(0.150)  # 250 x 0.3 / 0.5


def test_round_trips_bind_when_few_posts_are_in_flight() -> None:
    params = dataclasses.replace(SIMPLE, posts_in_flight=8, quota_rps=10**9)
    projected = envelope.delivery(10_000, params)
    assert projected.io_s == pytest.approx(250 * 0.020 / 8)
    assert projected.binding == envelope.IO


def test_more_invocations_than_environments_go_in_waves() -> None:
    # GIVEN 40 invocations and 10 environments: 4 waves of 75 ms of CPU
    params = dataclasses.replace(SIMPLE, concurrency=10, quota_rps=10**9)
    projected = envelope.delivery(10_000, params)
    assert projected.plan.waves == 4
    assert projected.cpu_s == pytest.approx(0.300)
    assert projected.binding == envelope.CONCURRENCY


def test_the_largest_group_within_a_second_is_the_quota_when_nothing_else_costs() -> None:
    assert envelope.largest_group_within(1.0, BARE) == 10_000


def test_the_largest_group_is_searched_below_the_threshold_when_the_fan_out_is_too_slow() -> None:
    # GIVEN a chunk overhead of 2 s: nothing above the threshold fits in 1 s; 500 posts at 0.3 ms do
    params = dataclasses.replace(SIMPLE, chunk_overhead_ms=2000.0)
    within = envelope.largest_group_within(1.0, params)
    assert within == 500
    assert envelope.project_delivery_s(within, params) <= 1.0


def test_no_group_when_one_subscriber_takes_too_long() -> None:
    assert envelope.largest_group_within(0.001, SIMPLE) == 0


def test_sustained_changes_of_a_large_group_are_bound_by_the_quota() -> None:
    rate, binding = envelope.max_changes_per_s(10_000, SIMPLE)
    assert (rate, binding) == (pytest.approx(1.0), envelope.QUOTA)


def test_sustained_changes_of_a_small_group_are_bound_by_its_shard() -> None:
    # GIVEN 100 subscribers, full batches of 100 changes: 10,000 posts go to one fan-out invocation of 100
    # connections; a batch takes Query (25 + 1 ms) + 20 ms + 100 x (100 x 0.3 ms) = 3.046 s
    limits = envelope.sustained_limits(100, SIMPLE)
    assert limits[envelope.SHARD] == pytest.approx(100 / 3.046)
    assert limits[envelope.QUOTA] == pytest.approx(100.0)
    # one busy fan-out invocation: 100 posts in 20 + 30 ms; 1,000 of them, over 100 posts a change
    assert limits[envelope.CONCURRENCY] == pytest.approx(1000 * 100 / 0.050 / 100)
    assert envelope.max_changes_per_s(100, SIMPLE) == (pytest.approx(100 / 3.046), envelope.SHARD)


def test_cost_of_a_million_changes_to_ten_subscribers() -> None:
    cost = envelope.cost_per_million_changes(10, SIMPLE)

    # API Gateway: 10 messages of 260 B a change, $1.00 per million
    assert cost.api_gateway_usd == pytest.approx(10.0)
    # DynamoDB: 2 WRU for the item, 1 RRU for the 1.2 KB Query
    assert cost.dynamodb_usd == pytest.approx(2 * 0.625 + 0.125)
    # Lambda: the broadcast posts itself: Query 25.1 ms + 3 ms of CPU, at 1769 MB; one request
    gb_s = (0.0251 + 0.003) * 1769 / 1024
    assert cost.lambda_usd == pytest.approx((gb_s * 0.0000166667 + 0.20 / 1e6) * 1e6)
    assert cost.total_usd == pytest.approx(cost.lambda_usd + cost.dynamodb_usd + cost.api_gateway_usd)


def test_cost_of_a_fanned_out_change_counts_every_invocation() -> None:
    cost = envelope.cost_per_million_changes(10_000, SIMPLE)
    # broadcast: Query 150 ms + hand-off 20 ms + waiting 75 ms; 40 fan-out invocations of 20 + 75 ms
    gb_s = (0.150 + 0.020 + 0.075 + 40 * 0.095) * 1769 / 1024
    assert cost.lambda_usd == pytest.approx((gb_s * 0.0000166667 + 41 * 0.20 / 1e6) * 1e6)
    assert cost.dynamodb_usd == pytest.approx(2 * 0.625 + 293 * 0.125)  # 1.2 MB / 4 KB = 293 RRU


def test_a_frame_over_32_kb_is_metered_twice() -> None:
    params = dataclasses.replace(SIMPLE, frame_bytes=40_000)
    assert envelope.cost_per_million_changes(10, params).api_gateway_usd == pytest.approx(20.0)


def test_template_params_reads_what_the_template_deploys() -> None:
    template = {
        "Globals": {"Function": {"MemorySize": 512, "Environment": {"Variables": {"BROADCAST_CONCURRENCY": "64"}}}},
        "Resources": {
            "BroadcastFunction": {
                "Properties": {
                    "MemorySize": 1024,
                    "Environment": {"Variables": {"FANOUT_CHUNK_SIZE": "100"}},
                    "Events": {"ItemsStream": {"Properties": {"BatchSize": 10}}},
                }
            },
        },
    }
    params = envelope.template_params(template, SIMPLE)
    assert (params.broadcast_memory_mb, params.fanout_memory_mb) == (1024, 512)  # no FanoutFunction: Globals
    assert (params.posts_in_flight, params.chunk_size, params.batch_size) == (64, 100, 10)
    assert params.fanout_threshold == SIMPLE.fanout_threshold


def test_params_refuse_what_the_model_divides_by() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        Params(chunk_size=0)


def test_render_tables_gives_the_envelope_and_the_costs() -> None:
    text = envelope.render_tables(SIMPLE)
    assert "| subscribers | delivery s | binding limit | max sustained changes/s (binding) |" in text
    assert "| subscribers | Lambda $ | DynamoDB $ | API Gateway $ | total $ |" in text
    for n in ("| 100 |", "| 1,000 |", "| 10,000 |", "| 100,000 |", "| 10 |"):
        assert n in text
    assert "| 10,000 | 1.17 | API Gateway quota |" in text
    assert "checked 2026-12" in text and "not fetched live" in text


@small_budget
@given(n=groups, factor=st.floats(min_value=1.0, max_value=16.0))
def test_a_larger_quota_never_slows_delivery(n: int, factor: float) -> None:
    raised = dataclasses.replace(SIMPLE, quota_rps=SIMPLE.quota_rps * factor)
    assert envelope.project_delivery_s(n, raised) <= envelope.project_delivery_s(n, SIMPLE)


@small_budget
@given(n=groups, memory=st.integers(min_value=128, max_value=10_240), more=st.integers(min_value=0, max_value=4096))
def test_more_memory_never_slows_delivery(n: int, memory: int, more: int) -> None:
    low = dataclasses.replace(SIMPLE, broadcast_memory_mb=memory, fanout_memory_mb=memory)
    high = dataclasses.replace(low, broadcast_memory_mb=memory + more, fanout_memory_mb=memory + more)
    assert envelope.project_delivery_s(n, high) <= envelope.project_delivery_s(n, low)


@small_budget
@given(n=groups, in_flight=st.integers(min_value=1, max_value=512))
def test_more_posts_in_flight_never_slow_delivery(n: int, in_flight: int) -> None:
    fewer = dataclasses.replace(SIMPLE, posts_in_flight=in_flight)
    more = dataclasses.replace(SIMPLE, posts_in_flight=in_flight * 2)
    assert envelope.project_delivery_s(n, more) <= envelope.project_delivery_s(n, fewer)


@small_budget
@given(a=st.integers(min_value=501, max_value=300_000), b=st.integers(min_value=501, max_value=300_000))
def test_delivery_grows_with_the_group_on_the_fan_out_path(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert envelope.project_delivery_s(low, SIMPLE) <= envelope.project_delivery_s(high, SIMPLE)


@small_budget
@given(n=groups)
def test_the_api_gateway_cost_is_linear_in_the_group(n: int) -> None:
    one = envelope.cost_per_million_changes(n, SIMPLE).api_gateway_usd
    assert envelope.cost_per_million_changes(2 * n, SIMPLE).api_gateway_usd == pytest.approx(2 * one)
    assert one == pytest.approx(n * 1.00)


@small_budget
@given(seconds=st.floats(min_value=0.05, max_value=20.0))
def test_the_largest_group_within_is_the_edge(seconds: float) -> None:
    within = envelope.largest_group_within(seconds, SIMPLE)
    assert within >= 1
    assert envelope.project_delivery_s(within, SIMPLE) <= seconds
    if within > SIMPLE.fanout_threshold:
        assert envelope.project_delivery_s(within + 1, SIMPLE) > seconds


@small_budget
@given(n=groups)
def test_sustained_changes_never_exceed_the_quota(n: int) -> None:
    rate, _ = envelope.max_changes_per_s(n, SIMPLE)
    assert rate <= SIMPLE.quota_rps / n + 1e-9


def test_fed_replaces_only_the_measured_inputs() -> None:
    fed = SIMPLE.fed(cpu_ms_per_post=0.25, row_cpu_ms=None, chunk_overhead_ms=2.0)
    assert (fed.cpu_ms_per_post, fed.row_cpu_ms, fed.chunk_overhead_ms) == (0.25, SIMPLE.row_cpu_ms, 2.0)
