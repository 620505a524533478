"""``python -m bench`` (``make bench``): every figure of PRODUCT.md's "Performance we hold ourselves to", each
the median of 3 runs with its spread, its baseline from the same runs and its target, written to
``bench/results.json`` and ``bench/results.md`` with the scale envelope (``bench/envelope.py``).

Progress goes to stderr, one line per step; the report to stdout. A partial run (``--only``, ``--skip``,
``--quick``, fewer than 3 runs) writes ``bench/results/results.{json,md}`` instead, never the committed files.
Exits 1 when a deterministic target (DynamoDB requests per call) is missed or a section fails; timings are
reported, never asserted.

``--mode in-process|server`` prints the data-plane table of before: every stream function over that moto.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench import envelope
from bench.fake_aws import install_fake_env
from bench.results import Derived, NotMeasured, Progress, Section, Spec, Target, repeated

Note = Callable[[str], None]

RUNS: Final = 3
TEN_K: Final = 10_000


@dataclass(frozen=True)
class Sizes:
    """How much each run does; ``QUICK`` for iterating."""

    imports: int = 5  # fresh interpreters per import, per run
    posts: int = 2000  # posts per client, per run
    overhead_pairs: int = 300  # stream::set against the bare UpdateItem, per run
    iterations: int = 60  # per data-plane scenario (request counts)
    writes_1: int = 100
    writes_100: int = 50
    writes_rate: int = 200


FULL: Final = Sizes()
QUICK: Final = Sizes(imports=3, posts=300, overhead_pairs=60, iterations=10, writes_1=20, writes_100=10, writes_rate=40)


def _at_most(limit: float, text: str | None = None) -> Target:
    return Target("<=", text or f"≤ {limit:g}", limit=limit)


# --- The sections, in the order they run ---------------------------------------------------------------------
def _cold_start(sizes: Sizes) -> Section:
    def once(note: Note) -> Mapping[str, float]:
        from bench import cold_start

        cost = cold_start.measure(sizes.imports)
        note(f"import stream_functions {cost.stream_functions_median_ms:.0f} ms, boto3 {cost.boto3_median_ms:.0f} ms")
        return {
            "cold_start.ratio_vs_boto3": cost.ratio,
            "cold_start.import_ms": cost.stream_functions_median_ms,
            "cold_start.boto3_import_ms": cost.boto3_median_ms,
        }

    return Section(
        "cold-start imports",
        (
            Spec(
                "cold_start.ratio_vs_boto3",
                "×",
                "`import stream_functions` over `import boto3` alone, medians of fresh interpreters",
                _at_most(1.5),
                baseline_name="import boto3 alone (cold_start.boto3_import_ms)",
            ),
            Spec(
                "cold_start.import_ms",
                "ms",
                "`import stream_functions` in a fresh interpreter (median)",
                baseline="cold_start.boto3_import_ms",
            ),
            Spec("cold_start.boto3_import_ms", "ms", "`import boto3` alone in a fresh interpreter (median)"),
        ),
        repeated("cold-start imports", once),
    )


def _post_cost(sizes: Sizes) -> Section:
    names = ("lean", "boto3", "sigv4auth", "unsigned")
    keys = {
        "lean": "broadcast.cpu_ms_per_post",
        "boto3": "broadcast.boto3_cpu_ms_per_post",
        "sigv4auth": "broadcast.sigv4auth_cpu_ms_per_post",
        "unsigned": "broadcast.unsigned_cpu_ms_per_post",
    }

    def measure(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        progress.step(f"CPU per post, {runs} runs of {sizes.posts} posts per client, interleaved")
        try:
            from bench import post_cost
        except ImportError as missing:
            raise NotMeasured(f"bench.post_cost: {missing}") from None
        cost = post_cost.measure(sizes.posts, runs, progress.note)
        per_client = {name: getattr(cost, name).runs_ms for name in names}
        for run in range(runs):
            yield {keys[name]: per_client[name][run] for name in names}

    boto3_key = keys["boto3"]
    return Section(
        "CPU per post",
        (
            Spec(
                keys["lean"],
                "ms",
                "the caller's CPU per @connections post, lean SigV4 poster (cached key, keep-alive HTTP/1.1), loopback",
                Target("<=", "≤ 1/3 of boto3's", of=((boto3_key, 1 / 3),)),
                baseline=boto3_key,
                baseline_name="boto3 post_to_connection, same runs",
            ),
            Spec(boto3_key, "ms", "the caller's CPU per post, unmodified boto3 `post_to_connection`"),
            Spec(keys["sigv4auth"], "ms", "the caller's CPU per post, botocore `SigV4Auth` per post + urllib3"),
            Spec(keys["unsigned"], "ms", "the caller's CPU per post, unsigned urllib3 (the floor)"),
        ),
        measure,
        steps=lambda runs: 1,
    )


def _data_plane(sizes: Sizes) -> Section:
    def once(note: Note) -> Mapping[str, float]:
        from bench import data_plane
        from bench.results import write_detail

        overhead = data_plane.set_overhead(sizes.overhead_pairs)
        row_ms = data_plane.subscriber_row_cpu_ms()
        table = data_plane.run_mode(data_plane.MODES["in-process"], sizes.iterations)
        write_detail("data_plane", dataclasses.asdict(table))
        most = {
            function_id: max(op.requests.max for op in table.operations if op.function_id == function_id)
            for function_id in ("stream::set", "stream::get")
        }
        note(f"set {overhead.set_ms:.2f} ms, bare UpdateItem {overhead.bare_ms:.2f} ms: {overhead.ratio:.2f}x")
        return {
            "data_plane.set_overhead_ratio": overhead.ratio,
            "data_plane.set_ms": overhead.set_ms,
            "data_plane.bare_update_item_ms": overhead.bare_ms,
            "data_plane.set_requests": most["stream::set"],
            "data_plane.get_requests": most["stream::get"],
            "broadcast.query_cpu_ms_per_row": row_ms,
        }

    return Section(
        "data plane",
        (
            Spec(
                "data_plane.set_overhead_ratio",
                "×",
                "`stream::set` through `stream_functions.handler` over the same UpdateItem made bare with boto3 "
                "(in-process moto, interleaved, medians per call)",
                _at_most(1.3),
                baseline_name="the bare UpdateItem (data_plane.bare_update_item_ms)",
            ),
            Spec(
                "data_plane.set_ms",
                "ms",
                "one `stream::set` of a new item through the handler, in-process moto (median)",
                baseline="data_plane.bare_update_item_ms",
                baseline_name="the same UpdateItem, bare boto3",
            ),
            Spec("data_plane.bare_update_item_ms", "ms", "the UpdateItem `stream::set` sends, bare boto3 (median)"),
            Spec(
                "data_plane.set_requests",
                "requests",
                "DynamoDB requests of one `stream::set` (the most any call made)",
                _at_most(1),
                hard=True,
            ),
            Spec(
                "data_plane.get_requests",
                "requests",
                "DynamoDB requests of one `stream::get` (the most any call made)",
                _at_most(1),
                hard=True,
            ),
            Spec(
                "broadcast.query_cpu_ms_per_row",
                "ms",
                "the broadcast's CPU per row of its subscriber Query (botocore parse + decode, canned 10,000 rows); "
                "an input of the envelope",
            ),
        ),
        repeated("data plane", once),
    )


def _dispatch() -> Section:
    reads = ("GetItem", "BatchGetItem", "Query", "Scan")

    def once(note: Note) -> Mapping[str, float]:
        from bench import dispatch
        from bench.results import write_detail

        figures = dispatch.run()
        write_detail("dispatch", figures)
        warm = figures["warm_per_change"]
        return {
            "dispatch.dynamodb_requests_per_change": sum(warm["dynamodb"].values()),
            "dispatch.reads_per_change": sum(warm["dynamodb"].get(name, 0) for name in reads),
            "dispatch.invokes_per_change": sum(warm["lambda"].values()),
        }

    about = "per change with 2 matching stream triggers (one with a condition), warm"
    return Section(
        "dispatch",
        (
            Spec("dispatch.dynamodb_requests_per_change", "requests", f"DynamoDB requests of the dispatch {about}"),
            Spec(
                "dispatch.reads_per_change",
                "requests",
                f"DynamoDB reads of the dispatch {about}",
                _at_most(0, "no read per change when warm"),
                hard=True,
            ),
            Spec("dispatch.invokes_per_change", "invokes", f"Lambda invokes of the dispatch {about}"),
        ),
        repeated("dispatch", once),
    )


def _local(sizes: Sizes) -> Section:
    def once(note: Note) -> Mapping[str, float]:
        from bench import local_latency
        from bench.results import write_detail

        run = local_latency.measure_once(sizes.writes_1, sizes.writes_100, sizes.writes_rate)
        write_detail("local_latency", run)
        figures = local_latency.figures(run)
        note(
            f"p50 {figures['local.write_to_frame_p50_ms_1']:.1f} ms (1), "
            f"{figures['local.write_to_frame_p50_ms_100']:.1f} ms (100); {figures['local.writes_per_s']:.0f} writes/s"
        )
        return figures

    frame = "from the writer's `stream::set` call (through the Lambda endpoint) to the frame at each socket"
    return Section(
        "local latency",
        (
            Spec("local.write_to_frame_p50_ms_1", "ms", f"local service, 1 subscriber, p50 {frame}", _at_most(15)),
            Spec("local.write_to_frame_p99_ms_1", "ms", f"local service, 1 subscriber, p99 {frame}"),
            Spec(
                "local.write_to_frame_p50_ms_100", "ms", f"local service, 100 subscribers, p50 {frame}", _at_most(100)
            ),
            Spec(
                "local.write_to_frame_p99_ms_100", "ms", f"local service, 100 subscribers, p99 {frame}", _at_most(250)
            ),
            Spec(
                "local.stamp_to_frame_p50_ms_100",
                "ms",
                "local service, 100 subscribers, p50 from the write's own timestamp to the frame",
            ),
            Spec(
                "local.writes_per_s",
                "writes/s",
                "sequential `stream::set` through the local Lambda endpoint",
                Target(">=", "≥ 100", limit=100),
            ),
        ),
        repeated("local latency", once),
    )


SCALE_KEYS: Final = (
    "broadcast.10k_delivery_s",
    "broadcast.10k_delivery_single_s",
    "broadcast.10k_delivery_naive_s",
    "broadcast.sustained_lag_p99_ms",
    "broadcast.chunk_overhead_ms",
    "broadcast.sustained_frames_missing",
    "broadcast.sustained_frames_duplicated",
    "broadcast.sustained_frames_out_of_order",
    "broadcast.naive_scan_s",
    "broadcast.sustained_lag_p50_ms",
    "broadcast.sustained_lag_p99_first_10s_ms",
    "broadcast.sustained_lag_p99_last_10s_ms",
)


MeasureScale = Callable[[Note], Mapping[str, float]]


def _checked(measure_scale: MeasureScale) -> Callable[[Note], Mapping[str, float]]:
    def once(note: Note) -> Mapping[str, float]:
        figures = measure_scale(note)
        missing = [key for key in SCALE_KEYS if key not in figures]
        if missing:
            raise KeyError(f"bench.broadcast.measure_scale did not return {', '.join(missing)}")
        return figures

    return once


def _broadcast() -> Section:
    """``bench.broadcast.measure_scale(progress)``, once per run: the five SCALE_KEYS (and any others it adds)."""

    def measure(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        from bench import broadcast

        measure_scale: MeasureScale | None = getattr(broadcast, "measure_scale", None)
        if measure_scale is None:
            raise NotMeasured("bench.broadcast.measure_scale missing")
        yield from repeated("broadcast at scale", _checked(measure_scale))(progress, runs)

    single, naive = "broadcast.10k_delivery_single_s", "broadcast.10k_delivery_naive_s"
    setting = "one change to 10,000 subscribers, real HTTP, 20 ms per post"
    return Section(
        "broadcast at scale",
        (
            Spec(
                "broadcast.10k_delivery_s",
                "s",
                f"{setting}, through the fan-out tier",
                Target("<=", "≥ 3× faster than single, ≥ 10× than naive", of=((single, 1 / 3), (naive, 1 / 10))),
                baseline=single,
                baseline_name="one invocation posting them all, same runs",
            ),
            Spec(single, "s", f"{setting}, one broadcast invocation posting them all"),
            Spec(naive, "s", f"{setting}, the naive design (Scan + sequential posts)"),
            Spec(
                "broadcast.sustained_lag_p99_ms",
                "ms",
                "a group of 1,000 subscribers at 2 changes/s: p99 lag from write to post",
                _at_most(1000),
            ),
            Spec(
                "broadcast.chunk_overhead_ms",
                "ms",
                "per fan-out invocation: invoke + JSON + set-up; an input of the envelope",
            ),
            *(
                Spec(f"broadcast.sustained_frames_{what}", "frames", f"sustained load: frames {text}", _at_most(0))
                for what, text in (
                    ("missing", "a connection never got"),
                    ("duplicated", "a connection got twice"),
                    ("out_of_order", "older than one the connection already had for that item"),
                )
            ),
            Spec("broadcast.naive_scan_s", "s", "the naive design's Scan of the 10,000-subscriber connections table"),
            Spec("broadcast.sustained_lag_p50_ms", "ms", "sustained load: p50 lag from write to post"),
            *(
                Spec(f"broadcast.sustained_lag_p99_{part}_10s_ms", "ms", f"sustained load: p99 lag, the {part} 10 s")
                for part in ("first", "last")
            ),
        ),
        measure,
    )


# The envelope's inputs this run measures: figure key -> (Params field, what it is).
ENVELOPE_INPUTS: Final = {
    "broadcast.cpu_ms_per_post": ("cpu_ms_per_post", "CPU per post"),
    "broadcast.query_cpu_ms_per_row": ("row_cpu_ms", "CPU per subscriber row"),
    "broadcast.chunk_overhead_ms": ("chunk_overhead_ms", "per-chunk overhead"),
}


def _envelope_params(figures: Mapping[str, float | None] | None = None) -> envelope.Params:
    """The model as template.yaml deploys it, fed with the measured ``figures`` it has (by figure key)."""
    from iii_stream.infra.template import load_template

    given = figures or {}
    return envelope.template_params(load_template()).fed(
        **{name: given.get(key) for key, (name, _) in ENVELOPE_INPUTS.items()}
    )


def _projection() -> Derived:
    base = _envelope_params()

    def compute(values: Mapping[str, float]) -> float:
        return round(envelope.project_delivery_s(TEN_K, _envelope_params(values)), 4)

    return Derived(
        Spec(
            "broadcast.10k_projected_lambda_s",
            "s",
            "one change to 10,000 subscribers projected on Lambda at the default account quota (bench/envelope.py, "
            "fed with this run's CPU per post, CPU per row and chunk overhead)",
            _at_most(1.5),
        ),
        tuple(ENVELOPE_INPUTS),
        compute,
        fallbacks={key: getattr(base, name) for key, (name, _) in ENVELOPE_INPUTS.items()},
    )


def sections(sizes: Sizes) -> dict[str, Section]:
    return {
        "cold-start": _cold_start(sizes),
        "post-cost": _post_cost(sizes),
        "data-plane": _data_plane(sizes),
        "dispatch": _dispatch(),
        "local": _local(sizes),
        "broadcast": _broadcast(),
    }


SECTION_NAMES: Final = ("cold-start", "post-cost", "data-plane", "dispatch", "local", "broadcast")
LEGACY_MODES: Final = ("in-process", "server")


# --- The run ---------------------------------------------------------------------------------------------------
def _envelope_tail(figures: Mapping[str, float | None]) -> tuple[str, dict[str, Any]]:
    """The envelope's Markdown (with where its inputs came from) and its data, fed with this run's figures."""
    inputs = {key: figures.get(key) for key in ENVELOPE_INPUTS}
    params = _envelope_params(inputs)
    said = [
        f"{label} {getattr(params, name):g} ms "
        + (f"(measured, `{key}`)" if inputs[key] is not None else "(not measured here: the model's assumption)")
        for key, (name, label) in ENVELOPE_INPUTS.items()
    ]
    text = "\n".join(
        [
            "## Scale envelope (`bench/envelope.py`)",
            "",
            f"Inputs: {'; '.join(said)}. Memory sizes, pool, chunk and batch sizes from template.yaml; AWS's "
            "limits and the other assumptions are the module's constants, each with its source.",
            "",
            envelope.render_tables(params),
        ]
    )
    return text, {"envelope": {**envelope.summary(params), "inputs": said}}


def _selected(args: argparse.Namespace) -> list[str]:
    only = args.only or ([args.mode] if args.mode in SECTION_NAMES else list(SECTION_NAMES))
    skip = set(args.skip or []) | ({"cold-start"} if args.skip_imports else set())
    return [name for name in SECTION_NAMES if name in only and name not in skip]


def _suite(args: argparse.Namespace) -> int:
    from bench import report, results

    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else RUNS)
    names = _selected(args)
    chosen = [sections(sizes)[name] for name in names]
    complete = names == list(SECTION_NAMES) and runs >= RUNS and not args.quick
    started = time.perf_counter()
    with results.report_only_on_stdout() as guard:
        collected = results.collect(chosen, runs)
    wall_s = time.perf_counter() - started
    figures = results.figures_of(chosen, [_projection()], collected)
    tail, extra = _envelope_tail({figure.key: figure.value for figure in figures})
    extra["sections"] = names
    if guard.dropped:
        print(f"warning: {guard.dropped} CloudWatch metric lines were printed, and dropped", file=sys.stderr)
        extra["metric_lines_dropped"] = guard.dropped
    document = results.document(figures, runs, wall_s, extra)
    json_path, md_path = (
        (results.RESULTS_JSON, results.RESULTS_MD)
        if complete
        else (results.DETAIL_DIR / "results.json", results.DETAIL_DIR / "results.md")
    )
    results.write(document, report.markdown(document, figures, tail), json_path, md_path)
    print(report.summary(figures))
    print(f"\n{wall_s:.0f} s; written to {json_path} and {md_path}" + ("" if complete else " (a partial run)"))
    failed = [figure.key for figure in figures if figure.hard and figure.met is False]
    for problem in [*collected.errors, *(f"hard target missed: {key}" for key in failed)]:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if collected.errors or failed else 0


def _legacy(args: argparse.Namespace) -> int:
    """The table of before results.json: every stream function over one moto, timed, its requests counted."""
    from bench import data_plane, report
    from bench.scenarios import REQUEST_TARGETS

    mode = data_plane.MODES[args.mode]
    modes = [data_plane.run_mode(mode, args.iterations or mode.default_iterations)]
    checks = report.check_targets(modes, REQUEST_TARGETS)
    print(report.render(modes, checks, None))
    print(f"\nfigures written to {report.write_json(modes, checks, None)}")
    return 0 if all(check.met for check in checks) else 1


def _names(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in SECTION_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTION_NAMES)}; not {raw!r}")
    return names


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode",
        choices=("all", *SECTION_NAMES, *LEGACY_MODES),
        default="all",
        help="all sections (default), one section, or the data-plane table of before over one moto",
    )
    parser.add_argument("--only", type=_names, help=f"these sections only (comma-separated: {','.join(SECTION_NAMES)})")
    parser.add_argument("--skip", type=_names, help="leave these sections out")
    parser.add_argument("--runs", type=int, help=f"runs of each section (default {RUNS}; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one run, to iterate (a partial run)")
    parser.add_argument("--skip-imports", action="store_true", help="same as --skip cold-start")
    parser.add_argument("--iterations", type=int, help="in-process/server: calls per operation")
    args = parser.parse_args(argv)
    for name in ("runs", "iterations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    install_fake_env()  # before anything can create a boto3 client
    # Powertools Metrics prints every flush as EMF JSON on stdout; it reads this at each flush (3.x).
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    return _legacy(args) if args.mode in LEGACY_MODES else _suite(args)


if __name__ == "__main__":
    raise SystemExit(main())
