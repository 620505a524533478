"""The bench's figures (bench/results.py) and the suite's sections (bench/__main__.py), without measuring."""

from __future__ import annotations

import io
import json
import os
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import bench
from bench import report, results
from bench.__main__ import FULL, SCALE_KEYS, _broadcast, _projection, sections
from bench.results import Derived, NotMeasured, Progress, Section, Spec, Target, repeated

REQUIRED = (
    "broadcast.cpu_ms_per_post",
    "broadcast.boto3_cpu_ms_per_post",
    "broadcast.10k_delivery_s",
    "broadcast.10k_delivery_single_s",
    "broadcast.10k_delivery_naive_s",
    "broadcast.sustained_lag_p99_ms",
    "broadcast.chunk_overhead_ms",
    "broadcast.10k_projected_lambda_s",
    "local.write_to_frame_p50_ms_1",
    "local.write_to_frame_p50_ms_100",
    "local.write_to_frame_p99_ms_100",
    "local.writes_per_s",
    "data_plane.set_overhead_ratio",
    "cold_start.ratio_vs_boto3",
)


def _section(title: str, runs: list[Mapping[str, float]], specs: tuple[Spec, ...]) -> Section:
    def once_per_run(progress: Progress, count: int) -> Iterator[Mapping[str, float]]:
        for run, values in enumerate(runs[:count], start=1):
            progress.step(f"{title}, run {run} of {count}")
            yield values

    return Section(title, specs, once_per_run)


def _quiet() -> Progress:
    return Progress(0, io.StringIO())


def _lines(out: io.StringIO) -> list[str]:
    """The progress lines, with the time since the first step ("... (at 0 s)") cut off."""
    return [line.partition(" (at ")[0] for line in out.getvalue().splitlines()]


def test_a_target_is_a_limit_or_the_tightest_bound_of_other_figures() -> None:
    assert Target("<=", "≤ 15", limit=15).resolve({}) == 15
    both = Target("<=", "3× and 10×", of=(("single", 1 / 3), ("naive", 1 / 10)))
    assert both.resolve({"single": 9.0, "naive": 60.0}) == pytest.approx(3.0)
    assert both.resolve({"single": 9.0, "naive": 20.0}) == pytest.approx(2.0)
    assert both.resolve({"single": 9.0}) is None  # a missing baseline: no bound, met unknown
    assert Target(">=", "≥ 100", limit=100).met(99.0, 100) is False
    assert Target(">=", "≥ 100", limit=100).met(None, 100) is None


def test_a_figure_is_the_median_of_its_runs_with_the_spread_baseline_and_target() -> None:
    # GIVEN three runs of a figure and of its baseline
    specs = [
        Spec("lean", "ms", "lean", Target("<=", "≤ 1/3 of boto3's", of=(("boto3", 1 / 3),)), baseline="boto3"),
        Spec("boto3", "ms", "boto3"),
    ]
    samples = {"lean": [0.30, 0.25, 0.27], "boto3": [0.9, 1.0, 0.8]}

    # WHEN the figures are built
    lean, boto3 = results.build_figures(specs, samples, {})

    # THEN the value is the median, the spread min and max, the bound 1/3 of boto3's median
    assert lean.value == 0.27
    assert lean.spread == (0.25, 0.30)
    assert lean.runs == [0.30, 0.25, 0.27]
    assert lean.baseline == 0.9
    assert lean.target == {
        "op": "<=",
        "value": 0.3,
        "text": "≤ 1/3 of boto3's",
        "of": [{"key": "boto3", "factor": 0.3333}],
    }
    assert lean.met is True
    assert boto3.target is None and boto3.met is None


def test_collect_runs_each_section_and_prints_one_line_per_step() -> None:
    out = io.StringIO()
    spec = Spec("a.x", "ms", "x")
    section = _section("first", [{"a.x": 1.0}, {"a.x": 3.0}, {"a.x": 2.0}], (spec,))
    collected = results.collect([section], 3, Progress(3, out))
    assert collected.samples == {"a.x": [1.0, 3.0, 2.0]}
    assert _lines(out) == [
        "[1/3] first, run 1 of 3 ...",
        "[2/3] first, run 2 of 3 ...",
        "[3/3] first, run 3 of 3 ...",
    ]


def test_a_section_that_cannot_measure_reports_null_figures_with_the_reason() -> None:
    def missing(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        raise NotMeasured("bench.broadcast.measure_scale missing")
        yield {}

    out = io.StringIO()
    absent = Section("broadcast at scale", (Spec("b.y", "s", "y"),), missing)
    after = _section("after", [{"c.z": 1.0}], (Spec("c.z", "ms", "z"),))
    collected = results.collect([absent, after], 1, Progress(2, out))

    figures = results.build_figures([*absent.specs, *after.specs], collected.samples, collected.notes)
    assert figures[0].value is None
    assert figures[0].note == "not measured: bench.broadcast.measure_scale missing"
    assert collected.errors == []
    # the counter stays right: the missing section's step is still one line
    assert _lines(out)[-1] == "[2/2] after, run 1 of 1 ..."


def test_a_failing_section_keeps_its_earlier_runs_and_the_others() -> None:
    def flaky(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        yield {"f.x": 5.0}
        raise RuntimeError("the service did not start")

    sections_ = [Section("flaky", (Spec("f.x", "ms", "x"),), flaky), _section("fine", [{"g.x": 1.0}] * 2, ())]
    collected = results.collect(sections_, 2, _quiet())
    assert collected.samples == {"f.x": [5.0], "g.x": [1.0, 1.0]}
    assert collected.notes["f.x"] == "1 of 2 runs: RuntimeError: the service did not start"
    assert collected.errors == ["flaky: RuntimeError: the service did not start"]


def test_repeated_calls_the_measure_once_per_run() -> None:
    calls: list[int] = []

    def once(note: object) -> Mapping[str, float]:
        calls.append(1)
        return {"k.v": float(len(calls))}

    out = io.StringIO()
    measured = list(repeated("thing", once)(Progress(2, out), 2))
    assert measured == [{"k.v": 1.0}, {"k.v": 2.0}]
    assert _lines(out)[-1] == "[2/2] thing, run 2 of 2 ..."


def test_a_derived_figure_is_computed_run_by_run() -> None:
    derived = Derived(Spec("d.sum", "s", "sum"), ("a", "b"), lambda v: v["a"] + v["b"])
    assert derived.runs({"a": [1.0, 2.0], "b": [10.0, 20.0, 30.0]}) == ([11.0, 22.0], "")


def test_a_derived_figure_without_an_input_says_what_it_would_be_with_the_fallback() -> None:
    derived = Derived(Spec("d.sum", "s", "sum"), ("a", "b"), lambda v: v["a"] + v["b"], fallbacks={"b": 20.0})
    runs, note = derived.runs({"a": [1.0, 3.0, 2.0]})
    assert runs == []
    assert note == "not measured: needs b (with the model's assumed b = 20 it would be 22 s)"


def test_the_document_has_the_machine_on_top_and_every_figure_by_its_key() -> None:
    figures = results.build_figures([Spec("a.x", "ms", "x", Target("<=", "≤ 1", limit=1))], {"a.x": [0.5]}, {})
    doc = results.document(figures, 3, 12.34, {"envelope": {"ok": True}})
    assert list(doc)[:4] == ["generated_at", "machine", "runs", "wall_s"]
    assert set(doc["machine"]) == {"cores", "cpu", "python", "platform"}
    figure = doc["a.x"]
    assert {"value", "unit", "baseline", "target", "spread", "runs", "baseline_name", "met", "note"} <= set(figure)
    assert (figure["value"], figure["met"], figure["baseline"]) == (0.5, True, None)
    json.dumps(doc)  # plain JSON


def test_results_md_has_a_row_per_figure_and_the_tail(tmp_path: Path) -> None:
    specs = [Spec("a.x", "ms", "x", Target("<=", "≤ 15", limit=15)), Spec("b.y", "s", "y")]
    figures = results.build_figures(specs, {"a.x": [20.0, 18.0, 22.0]}, {"b.y": "not measured: missing"})
    doc = results.document(figures, 3, 100.0, {})
    text = report.markdown(doc, figures, "## Scale envelope")
    assert "| `a.x` | 20 (18–22) | ms |  | ≤ 15 | **no** |" in text
    assert "| `b.y` | not measured | s |" in text
    assert "*not measured: missing*" in text
    assert text.rstrip().endswith("## Scale envelope")
    results.write(doc, text, tmp_path / "r.json", tmp_path / "r.md")
    assert json.loads((tmp_path / "r.json").read_text())["a.x"]["value"] == 20.0


def test_metric_lines_are_dropped_and_the_rest_goes_to_stderr() -> None:
    out = io.StringIO()
    guard = results.MetricLineFilter(out)
    guard.write('{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"FramesPosted":[1.0]}\nhello ')
    guard.write("world\n")
    guard.flush()
    assert guard.dropped == 1
    assert out.getvalue() == "hello world\n"


def test_the_suite_measures_every_figure_the_product_names() -> None:
    keys = [spec.key for section in sections(FULL).values() for spec in section.specs] + [_projection().spec.key]
    assert set(REQUIRED) <= set(keys)
    assert len(keys) == len(set(keys))


def test_without_measure_scale_the_broadcast_figures_are_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    placeholder = types.ModuleType("bench.broadcast")
    monkeypatch.setitem(sys.modules, "bench.broadcast", placeholder)
    monkeypatch.setattr(bench, "broadcast", placeholder, raising=False)

    section = _broadcast()
    collected = results.collect([section], 3, _quiet())
    figures = results.figures_of([section], [], collected)

    assert [figure.key for figure in figures] == list(SCALE_KEYS)
    assert all(figure.value is None for figure in figures)
    assert {figure.note for figure in figures} == {"not measured: bench.broadcast.measure_scale missing"}


def test_measure_scale_is_called_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a measure_scale returning the five figures of one run
    runs = iter([(3.0, 12.0, 40.0), (2.0, 12.0, 30.0), (2.5, 9.0, 45.0)])

    def measure_scale(progress: object) -> dict[str, float]:
        fan_out, single, naive = next(runs)
        figures = (fan_out, single, naive, 400.0, 15.0, 0.0, 0.0, 0.0, 8.0, 200.0, 400.0, 400.0)
        return dict(zip(SCALE_KEYS, figures, strict=True))

    placeholder = types.ModuleType("bench.broadcast")
    placeholder.measure_scale = measure_scale  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.broadcast", placeholder)
    monkeypatch.setattr(bench, "broadcast", placeholder, raising=False)

    section = _broadcast()
    collected = results.collect([section], 3, _quiet())
    delivery, single, *_ = results.figures_of([section], [], collected)

    # THEN the fan-out's median 2.5 s against single 12 s / 3 = 4 and naive 40 s / 10 = 4: met
    assert delivery.value == 2.5 and delivery.spread == (2.0, 3.0)
    assert delivery.baseline == single.value == 12.0
    assert delivery.target is not None and delivery.target["value"] == pytest.approx(4.0)
    assert delivery.met is True


def test_the_projection_is_fed_with_the_measured_inputs() -> None:
    projection = _projection()
    samples = {
        "broadcast.cpu_ms_per_post": [0.3],
        "broadcast.query_cpu_ms_per_row": [0.005],
        "broadcast.chunk_overhead_ms": [20.0],
    }
    runs, note = projection.runs(samples)
    assert note == ""
    assert len(runs) == 1 and 1.0 < runs[0] < 1.5  # the quota's 1 s, plus the Query and one chunk's overhead


def test_each_step_says_when_it_started() -> None:
    times = iter([100.0, 185.2])
    out = io.StringIO()
    progress = Progress(2, out, clock=lambda: next(times))
    progress.step("cold-start imports, run 1 of 1")
    progress.note("a detail")
    progress.step("local latency, run 1 of 1")
    assert out.getvalue().splitlines() == [
        "[1/2] cold-start imports, run 1 of 1 ... (at 0 s)",
        "      a detail",
        "[2/2] local latency, run 1 of 1 ... (at 85 s)",
    ]


def test_a_figure_a_section_reports_beyond_its_specs_is_kept_after_its_figures() -> None:
    section = _section("s", [{"s.a_ms": 1.0, "s.extra_s": 2.0}], (Spec("s.a_ms", "ms", "a"),))
    later = _section("t", [{"t.b": 3.0}], (Spec("t.b", "", "b"),))
    collected = results.collect([section, later], 1, _quiet())
    figures = results.figures_of([section, later], [], collected)
    assert [(figure.key, figure.unit, figure.value) for figure in figures] == [
        ("s.a_ms", "ms", 1.0),
        ("s.extra_s", "s", 2.0),
        ("t.b", "", 3.0),
    ]


def test_a_section_changes_the_environment_for_itself_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_TEST_TABLE", raising=False)
    seen: list[str | None] = []

    def sets(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        os.environ["BENCH_TEST_TABLE"] = "dispatch-items"
        yield {}

    def reads(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        seen.append(os.environ.get("BENCH_TEST_TABLE"))
        yield {}

    results.collect([Section("sets", (), sets), Section("reads", (), reads)], 1, _quiet())
    assert seen == [None]
    assert "BENCH_TEST_TABLE" not in os.environ
