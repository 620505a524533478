"""The bench's figures: each the median of its runs with their spread, its baseline from the same runs, its
target; written to ``bench/results.json`` and ``bench/results.md``.

A ``Section`` measures some figures: ``measure(progress, runs)`` yields one mapping per run, figure key ->
value. ``collect`` runs the sections in order (``[i/N] title, run r of R ...`` on stderr), keeps what a
failing section measured before it failed and notes the failure, then computes the ``Derived`` figures
(functions of other figures, run by run). A section that cannot measure at all raises ``NotMeasured``: its
figures are reported with a null value and the reason.

``results.json``::

    {"generated_at": ..., "machine": {"cores", "cpu", "python", "platform"}, "runs": 3, "wall_s": ...,
     "<figure key>": {"value", "unit", "spread": [min, max], "runs": [...], "baseline", "baseline_name",
                      "target": {"op", "value", "text", "of": [{"key", "factor"}]}, "met", "note", "about"},
     ...,
     "envelope": {...}}

Figure keys are dotted (``broadcast.cpu_ms_per_post``); the other top-level keys have no dot.
``target.value`` is the bound, resolved against this run's figures named in ``target.of`` when it is relative
(null when one of them is missing); ``met`` is null when the value or the bound is.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_JSON: Final = BENCH_DIR / "results.json"
RESULTS_MD: Final = BENCH_DIR / "results.md"
DETAIL_DIR: Final = BENCH_DIR / "results"  # gitignored: each section's detail, and partial or quick runs

Samples = dict[str, list[float]]


class NotMeasured(Exception):
    """A section that cannot measure here (what it needs is missing): its figures are reported as null."""


class Progress:
    """One line per step on stderr: ``[3/9] local latency, run 2 of 3 ... (at 85 s)``; notes indented.

    The time is since the first step (``clock``: seconds, monotonic).
    """

    def __init__(self, total: int, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self._out = out
        self._clock = clock
        self._started: float | None = None

    def _print(self, line: str) -> None:
        print(line, file=self._out or sys.stderr, flush=True)

    def step(self, text: str) -> None:
        now = self._clock()
        self._started = now if self._started is None else self._started
        self.done += 1
        self._print(f"[{self.done}/{self.total}] {text} ... (at {now - self._started:.0f} s)")

    def note(self, text: str) -> None:
        self._print(f"      {text}")


class MetricLineFilter(io.TextIOBase):
    """Stands in for stdout while the sections run: CloudWatch metric lines (EMF JSON, ``{"_aws": ...}``, what
    Powertools Metrics prints when metrics are not disabled) are dropped and counted; any other text goes to
    ``out`` (stderr), so stdout carries only the report."""

    def __init__(self, out: TextIO) -> None:
        self.dropped = 0
        self._out = out
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._emit(line + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""
        self._out.flush()

    def _emit(self, line: str) -> None:
        if line.lstrip().startswith('{"_aws"'):
            self.dropped += 1
        else:
            self._out.write(line)


@contextlib.contextmanager
def report_only_on_stdout() -> Iterator[MetricLineFilter]:
    """While the sections run, stdout is not the report's: this process's goes through a ``MetricLineFilter``
    to stderr, and file descriptor 1 (what child processes inherit) points at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    guard = MetricLineFilter(sys.stderr)
    try:
        with contextlib.redirect_stdout(guard):
            yield guard
    finally:
        guard.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class Target:
    """``value op bound``: ``limit``, or relative to other figures: ``factor x`` each figure in ``of``, the tightest.

    >>> Target("<=", "≤ 1/3 of boto3's", of=(("boto3", 1 / 3),)).resolve({"boto3": 0.9})
    0.3
    """

    op: Literal["<=", ">="]
    text: str
    limit: float | None = None
    of: tuple[tuple[str, float], ...] = ()

    def resolve(self, values: Mapping[str, float | None]) -> float | None:
        if not self.of:
            return self.limit
        bounds = [values.get(key) for key, _ in self.of]
        scaled = [factor * bound for (_, factor), bound in zip(self.of, bounds, strict=True) if bound is not None]
        if len(scaled) < len(bounds):
            return None
        return min(scaled) if self.op == "<=" else max(scaled)

    def met(self, value: float | None, bound: float | None) -> bool | None:
        if value is None or bound is None:
            return None
        return value <= bound if self.op == "<=" else value >= bound


@dataclass(frozen=True)
class Spec:
    """What a figure is: its unit, what it is measured against (``baseline``: another figure's key) and its goal.

    ``hard``: a deterministic target (a request count) the bench exits 1 on; timings are never asserted.
    """

    key: str
    unit: str
    about: str
    target: Target | None = None
    baseline: str | None = None
    baseline_name: str | None = None
    hard: bool = False


@dataclass(frozen=True)
class Figure:
    key: str
    unit: str
    about: str
    value: float | None
    spread: tuple[float, float] | None
    runs: list[float]
    baseline: float | None
    baseline_name: str | None
    target: dict[str, Any] | None
    met: bool | None
    note: str
    hard: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "spread": list(self.spread) if self.spread else None,
            "runs": self.runs,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "target": self.target,
            "met": self.met,
            "note": self.note,
            "about": self.about,
        }


Measure = Callable[[Progress, int], Iterable[Mapping[str, float]]]


@dataclass(frozen=True)
class Section:
    """A step of the bench: ``measure`` yields one mapping of figure values per run, and reports its steps.

    ``steps(runs)``: how many ``progress.step`` lines it prints (for the ``[i/N]`` counter).
    """

    title: str
    specs: tuple[Spec, ...]
    measure: Measure
    steps: Callable[[int], int] = field(default=lambda runs: runs)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(spec.key for spec in self.specs)


def repeated(title: str, once: Callable[[Callable[[str], None]], Mapping[str, float]]) -> Measure:
    """A section's measure from a function measuring one run (it gets the step's ``note`` for its own lines)."""

    def measure(progress: Progress, runs: int) -> Iterator[Mapping[str, float]]:
        for run in range(1, runs + 1):
            progress.step(f"{title}, run {run} of {runs}")
            yield once(progress.note)

    return measure


@dataclass(frozen=True)
class Derived:
    """A figure computed from others, run by run (the i-th run of each input).

    An input without runs leaves the figure null; if every missing input has a ``fallbacks`` value, the note
    says what the figure would be with it.
    """

    spec: Spec
    inputs: tuple[str, ...]
    compute: Callable[[Mapping[str, float]], float]
    fallbacks: Mapping[str, float] = field(default_factory=dict)

    def runs(self, samples: Samples) -> tuple[list[float], str]:
        missing = [key for key in self.inputs if not samples.get(key)]
        if not missing:
            count = min(len(samples[key]) for key in self.inputs)
            return [self.compute({key: samples[key][i] for key in self.inputs}) for i in range(count)], ""
        note = f"not measured: needs {', '.join(missing)}"
        if all(key in self.fallbacks for key in missing):
            medians = {key: statistics.median(samples[key]) for key in self.inputs if key not in missing}
            assumed = {key: self.fallbacks[key] for key in missing}
            would_be = self.compute({**medians, **assumed})
            with_ = ", ".join(f"{key} = {value:g}" for key, value in assumed.items())
            note += f" (with the model's assumed {with_} it would be {would_be:.3g} {self.spec.unit})"
        return [], note


@dataclass
class Collected:
    samples: Samples
    notes: dict[str, str]
    errors: list[str]  # sections that failed unexpectedly (not NotMeasured)
    unlisted: dict[str, list[str]] = field(default_factory=dict)  # section title -> keys it reported beyond its specs


def collect(sections: Sequence[Section], runs: int, progress: Progress | None = None) -> Collected:
    """Run every section ``runs`` times (as each section counts them), keeping what each measured."""
    progress = progress or Progress(sum(section.steps(runs) for section in sections))
    collected = Collected({}, {}, [])
    for section in sections:
        first_step = progress.done
        with _environment_kept():
            _run(section, runs, progress, collected)
        progress.done = first_step + section.steps(runs)  # a section that stopped early keeps the count right
    return collected


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """A section's changes to os.environ (table names, settings) end with it: the next starts as this one did."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(section: Section, runs: int, progress: Progress, collected: Collected) -> None:
    """One section's runs into ``collected``; a failure is noted on its figures, after the runs it completed."""
    done, first_step = 0, progress.done
    try:
        for values in section.measure(progress, runs):
            for key, value in values.items():
                collected.samples.setdefault(key, []).append(float(value))
                unlisted = collected.unlisted.setdefault(section.title, [])
                if key not in section.keys and key not in unlisted:
                    unlisted.append(key)
            done += 1
    except NotMeasured as reason:
        report = progress.step if progress.done == first_step else progress.note
        report(f"{section.title}: not measured: {reason}")
        collected.notes.update({key: f"not measured: {reason}" for key in section.keys})
    except Exception as error:  # a failed section must not lose the others' figures
        progress.note(f"{section.title} failed after {done} run(s):\n{traceback.format_exc()}")
        collected.errors.append(f"{section.title}: {type(error).__name__}: {error}")
        collected.notes.update({key: f"{done} of {runs} runs: {type(error).__name__}: {error}" for key in section.keys})


def _rounded(value: float) -> float:
    return float(f"{value:.4g}") if value and math.isfinite(value) else value


def build_figures(specs: Sequence[Spec], samples: Samples, notes: Mapping[str, str]) -> list[Figure]:
    """One figure per spec: the median of its runs, the spread, the baseline's median, the target resolved."""
    medians: dict[str, float | None] = {
        key: statistics.median(values) if values else None for key, values in samples.items()
    }
    figures = []
    for spec in specs:
        runs = [_rounded(value) for value in samples.get(spec.key, [])]
        value = _rounded(statistics.median(runs)) if runs else None
        baseline = medians.get(spec.baseline) if spec.baseline else None
        target = bound = met = None
        if spec.target is not None:
            bound = spec.target.resolve(medians)
            met = spec.target.met(value, bound)
            target = {
                "op": spec.target.op,
                "value": _rounded(bound) if bound is not None else None,
                "text": spec.target.text,
                "of": [{"key": key, "factor": _rounded(factor)} for key, factor in spec.target.of],
            }
        baseline_name = spec.baseline_name or spec.baseline
        figures.append(
            Figure(
                key=spec.key,
                unit=spec.unit,
                about=spec.about,
                value=value,
                spread=(min(runs), max(runs)) if runs else None,
                runs=runs,
                baseline=_rounded(baseline) if baseline is not None else None,
                baseline_name=baseline_name,
                target=target,
                met=met,
                note=notes.get(spec.key, "" if runs else "not measured"),
                hard=spec.hard,
            )
        )
    return figures


def figures_of(sections: Sequence[Section], derived: Sequence[Derived], collected: Collected) -> list[Figure]:
    """Every section's figures and the derived ones, in order."""
    samples, notes = dict(collected.samples), dict(collected.notes)
    for figure in derived:
        runs, note = figure.runs(samples)
        if runs:
            samples[figure.spec.key] = runs
        elif figure.spec.key not in notes:
            notes[figure.spec.key] = note
    specs: list[Spec] = []
    for section in sections:
        specs += section.specs
        specs += [_unlisted(key) for key in collected.unlisted.get(section.title, [])]
    return build_figures(specs + [figure.spec for figure in derived], samples, notes)


def _unlisted(key: str) -> Spec:
    """A figure a section reported without a spec: kept, its unit guessed from the key's suffix."""
    units = {"_ms": "ms", "_s": "s", "_ratio": "×"}
    unit = next((unit for suffix, unit in units.items() if key.endswith(suffix)), "")
    return Spec(key, unit, "reported by its section, not described in the suite")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def document(
    figures: Sequence[Figure], runs: int, wall_s: float, extra: Mapping[str, Any], when: datetime | None = None
) -> dict[str, Any]:
    """The results.json document: the run's facts at the top, then one object per figure, then ``extra``."""
    head: dict[str, Any] = {
        "generated_at": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": runs,
        "wall_s": round(wall_s, 1),
    }
    return {**head, **{figure.key: figure.to_json() for figure in figures}, **extra}


def write(doc: Mapping[str, Any], md: str, json_path: Path = RESULTS_JSON, md_path: Path = RESULTS_MD) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(md, encoding="utf-8")


def write_detail(name: str, detail: Any) -> Path:
    """A section's detail (bench/results/<name>.json, not committed)."""
    DETAIL_DIR.mkdir(parents=True, exist_ok=True)
    path = DETAIL_DIR / f"{name}.json"
    path.write_text(json.dumps(detail, indent=2, default=str) + "\n", encoding="utf-8")
    return path
