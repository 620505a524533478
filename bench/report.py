"""The benchmark's report: results.md and the terminal's table of every figure; and the data-plane table of
``--mode in-process|server`` with its JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.results import Figure

if TYPE_CHECKING:  # the data-plane table's types; importing them would start boto3 and moto
    from bench.cold_start import ImportCost
    from bench.data_plane import ModeResult, OperationResult

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_COLUMNS = ("operation", "calls", "p50 ms", "p95 ms", "p99 ms", "ops/s", "req/call", "DynamoDB requests per call")
_WIDTHS = (18, 6, 8, 8, 8, 8, 9, 0)


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    function_id: str
    max_requests: int
    measured: dict[str, int]  # mode -> the most requests any call made

    @property
    def met(self) -> bool:
        return all(count <= self.max_requests for count in self.measured.values())


def check_targets(modes: list[ModeResult], targets: dict[str, int]) -> list[TargetCheck]:
    checks = []
    for function_id, limit in targets.items():
        measured = {
            mode.mode: max(op.requests.max for op in mode.operations if op.function_id == function_id) for mode in modes
        }
        checks.append(TargetCheck(function_id, limit, measured))
    return checks


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def table_row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    """One row of a report table: the first cell left-aligned, the rest right-aligned (width 0: free text)."""
    first, *rest = cells
    return (
        "  "
        + first.ljust(widths[0])
        + "".join(cell.rjust(w) if w else "   " + cell for cell, w in zip(rest, widths[1:], strict=True))
    )


def _row(cells: tuple[str, ...]) -> str:
    return table_row(cells, _WIDTHS)


def _operation_row(op: OperationResult) -> str:
    req = op.requests
    spread = _count(req.mean) if req.min == req.max else f"{req.min}-{req.max}"
    by_name = ", ".join(f"{name}: {_count(count)}" for name, count in req.by_operation.items())
    if req.retries:
        by_name += f" (+{req.retries} retries)"
    if op.errors:
        by_name += f"  [{op.errors} errors, first: {op.first_error}]"
    lat = op.latency
    return _row(
        (
            op.name,
            str(op.iterations),
            f"{lat.p50_ms:.2f}",
            f"{lat.p95_ms:.2f}",
            f"{lat.p99_ms:.2f}",
            f"{op.ops_per_s:.0f}",
            spread,
            by_name,
        )
    )


def render(modes: list[ModeResult], checks: list[TargetCheck], imports: ImportCost | None) -> str:
    lines = [f"iii-stream data-plane benchmark: stream_functions.handler over moto ({machine()})", ""]
    for mode in modes:
        lines += [f"{mode.description}, {mode.iterations} iterations", _row(_COLUMNS)]
        lines += [_operation_row(op) for op in mode.operations]
        lines.append("")
    for check in checks:
        verdict = "TARGET MET" if check.met else "TARGET MISSED"
        seen = ", ".join(f"{mode}: {count}" for mode, count in check.measured.items())
        lines.append(f"{verdict}: {check.function_id} <= {check.max_requests} DynamoDB request per call (max {seen})")
    if imports is not None:
        lines += ["", *_import_lines(imports)]
    return "\n".join(lines)


def _import_lines(imports: ImportCost) -> list[str]:
    verdict = "met" if imports.met else "missed (informational, not enforced)"
    return [
        f"cold-start imports, median of {imports.runs} fresh interpreters:",
        f"  import boto3             {imports.boto3_median_ms:8.1f} ms",
        f"  import stream_functions  {imports.stream_functions_median_ms:8.1f} ms",
        f"  ratio                    {imports.ratio:8.2f}x   (target <= {imports.target_ratio}x: {verdict})",
    ]


def machine() -> str:
    return f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"


def write_json(
    modes: list[ModeResult], checks: list[TargetCheck], imports: ImportCost | None, name: str = "data_plane"
) -> Path:
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "modes": {mode.mode: dataclasses.asdict(mode) for mode in modes},
        "request_targets": [{**dataclasses.asdict(check), "met": check.met} for check in checks],
        "cold_start_imports": dataclasses.asdict(imports) if imports is not None else None,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


# --- results.md and the terminal's table ----------------------------------------------------------------
SYMBOLS: Final = {"<=": "≤", ">=": "≥"}


def number(value: float | None) -> str:
    """A figure for a table: three or four significant digits, thousands separated; whole numbers as such."""
    if value is None:
        return "n/a"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _value_cell(figure: Figure) -> str:
    if figure.value is None:
        return "not measured"
    if figure.spread is None or figure.spread[0] == figure.spread[1]:
        return number(figure.value)
    low, high = figure.spread
    return f"{number(figure.value)} ({number(low)}–{number(high)})"


def _target_cell(figure: Figure) -> str:
    if figure.target is None:
        return ""
    bound, text = figure.target["value"], figure.target["text"]
    relative = bool(figure.target["of"]) and bound is not None
    return f"{text}: {SYMBOLS[figure.target['op']]} {number(bound)}" if relative else text


def _met_cell(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: ""}[figure.met]


def _baseline_cell(figure: Figure) -> str:
    if figure.baseline_name is None:
        return ""
    return (
        f"{number(figure.baseline)} ({figure.baseline_name})" if figure.baseline is not None else figure.baseline_name
    )


def markdown(doc: Mapping[str, Any], figures: Sequence[Figure], tail: str = "") -> str:
    """results.md: the machine and date, a table of every figure, their notes, then ``tail`` (the envelope)."""
    machine_ = doc["machine"]
    when = datetime.fromisoformat(doc["generated_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = f"{doc['runs']} run{'s' * (doc['runs'] != 1)}"
    lines = [
        "# Benchmark results",
        "",
        f"`make bench`, {when}, {runs}, {doc['wall_s']:.0f} s wall time. Machine: {machine_['cores']} cores, "
        f"{machine_['cpu']}, Python {machine_['python']}, {machine_['platform']}.",
        "",
        "Value: the median of the runs (min–max). Baseline: measured in the same runs. Targets: PRODUCT.md.",
        "",
        "| figure | value (min–max) | unit | baseline | target | met |",
        "|---|---:|---|---|---|---|",
    ]
    for figure in figures:
        lines.append(
            f"| `{figure.key}` | {_value_cell(figure)} | {figure.unit} | {_baseline_cell(figure)} "
            f"| {_target_cell(figure)} | {_met_cell(figure)} |"
        )
    lines += ["", "What each figure is:", ""]
    for figure in figures:
        note = f" *{figure.note}*" if figure.note else ""
        lines.append(f"- `{figure.key}`: {figure.about}.{note}")
    if tail:
        lines += ["", tail]
    return "\n".join(lines) + "\n"


def summary(figures: Sequence[Figure]) -> str:
    """A plain-text table for the terminal."""
    width = max((len(figure.key) for figure in figures), default=10)
    lines = [f"{'figure':<{width}}  {'value (min-max)':>26}  {'unit':<9} met  target"]
    for figure in figures:
        met = {True: "yes", False: "NO", None: "-"}[figure.met]
        lines.append(
            f"{figure.key:<{width}}  {_value_cell(figure):>26}  {figure.unit:<9} {met:<4} {_target_cell(figure)}"
        )
    return "\n".join(lines)
