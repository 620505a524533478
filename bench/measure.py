"""Request counting (a botocore event hook) and latency summaries."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class RequestCounter:
    """Counts the operations a client sends, and botocore's retries of them; it changes nothing.

    ``service`` is the client's event name (``dynamodb``; ``dynamodb-streams`` for a streams client).
    """

    def __init__(self, client: Any, service: str = "dynamodb") -> None:
        self.calls: Counter[str] = Counter()
        self.retries = 0
        client.meta.events.register(f"before-call.{service}.*", self._count)
        client.meta.events.register(f"after-call.{service}.*", self._count_retries)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _count_retries(self, parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict):
            self.retries += int(parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0))

    def take(self) -> Counter[str]:
        """The operations counted since the last take (retries are kept as a running total)."""
        calls, self.calls = self.calls, Counter()
        return calls


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Latency:
        ms = [sample / 1e6 for sample in samples_ns]
        cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
        figures = (cuts[49], cuts[94], cuts[98], statistics.fmean(ms), max(ms))
        return cls(*(round(figure, 3) for figure in figures))


@dataclass(frozen=True)
class Requests:
    """DynamoDB requests per handler call: the spread, and the mean per operation name."""

    min: int
    max: int
    mean: float
    by_operation: dict[str, float]
    retries: int

    @classmethod
    def of(cls, per_call: Sequence[Counter[str]], retries: int) -> Requests:
        totals = [sum(calls.values()) for calls in per_call]
        merged: Counter[str] = Counter()
        for counted in per_call:
            merged.update(counted)
        calls = len(per_call)
        return cls(
            min=min(totals),
            max=max(totals),
            mean=sum(totals) / calls,
            by_operation={name: count / calls for name, count in sorted(merged.items())},
            retries=retries,
        )
