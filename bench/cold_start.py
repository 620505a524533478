"""Cold-start import cost: ``import boto3`` alone against ``import stream_functions``, in fresh interpreters."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Final

from iii_stream.infra.stack import FUNCTIONS_DIR

RUNS: Final = 5
TARGET_RATIO: Final = 1.5
# Times only the import, not interpreter start-up; functions/ is on sys.path for both, as on Lambda.
_SNIPPET: Final = (
    "import sys, time\n"
    "sys.path.insert(0, {path!r})\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "print((time.perf_counter() - t) * 1000)\n"
)


@dataclass(frozen=True)
class ImportCost:
    runs: int
    boto3_ms: list[float]
    stream_functions_ms: list[float]
    boto3_median_ms: float
    stream_functions_median_ms: float
    ratio: float
    target_ratio: float
    met: bool


def _import_ms(module: str) -> float:
    # -I: no PYTHON* variables, no user site, no current directory; the venv's site-packages stay.
    code = _SNIPPET.format(path=str(FUNCTIONS_DIR), module=module)
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    return round(float(done.stdout.strip().splitlines()[-1]), 2)


def measure(runs: int = RUNS) -> ImportCost:
    """Median of ``runs`` fresh interpreters each, interleaved; one discarded round first fills the .pyc caches."""
    for module in ("boto3", "stream_functions"):
        _import_ms(module)
    boto3_ms: list[float] = []
    handler_ms: list[float] = []
    for _ in range(runs):
        boto3_ms.append(_import_ms("boto3"))
        handler_ms.append(_import_ms("stream_functions"))
    boto3_median, handler_median = statistics.median(boto3_ms), statistics.median(handler_ms)
    ratio = handler_median / boto3_median
    return ImportCost(
        runs=runs,
        boto3_ms=boto3_ms,
        stream_functions_ms=handler_ms,
        boto3_median_ms=boto3_median,
        stream_functions_median_ms=handler_median,
        ratio=round(ratio, 3),
        target_ratio=TARGET_RATIO,
        met=ratio <= TARGET_RATIO,
    )
