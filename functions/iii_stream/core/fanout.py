"""Posting a batch's frames: the plan (which connection gets which frames, in stream order), how it is
posted, and how it is split into chunks for the fan-out tier.

A plan is posted breadth first: every connection's post of frame 0, in parallel, then every post of frame
1, and so on, so each connection gets an item's frames in stream order. A frame one connection could not
get (after the poster's retries) ends the plan there: its later frames are not posted to anyone, and the
frame's record and every later one fail, to be retried in order, as when the broadcast posts them itself.

The broadcast posts a small plan itself. A large one is split by connection into chunks, each posted by a
``FanoutFunction`` invocation (``functions/fanout.py``) running this same code; the broadcast waits for
every chunk. A chunk travels as JSON: ``{"frames": {"<index>": "<frame text>"}, "targets": {"<connection
id>": [<index>, ...]}}``, and its outcome comes back as ``{"sent", "gone", "failed_at", "throttled",
"error"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from iii_stream.core.errors import ConnectionGoneError, PostError
from iii_stream.core.ports import Poster

log = logging.getLogger(__name__)

# A chunk's payload must fit Lambda's 6 MB synchronous request, JSON escaping of the frames included.
MAX_CHUNK_FRAME_BYTES: Final = 2 * 1024 * 1024


@dataclass
class PostPlan:
    """Frames by their record index, and for each connection the indices it gets, in order."""

    frames: dict[int, bytes] = field(default_factory=dict)
    targets: dict[str, list[int]] = field(default_factory=dict)

    @property
    def posts(self) -> int:
        return sum(len(indices) for indices in self.targets.values())

    def without(self, connection_ids: Iterable[str]) -> PostPlan:
        gone = set(connection_ids)
        return PostPlan(self.frames, {cid: idx for cid, idx in self.targets.items() if cid not in gone})

    def chunks(self, chunk_size: int) -> list[PostPlan]:
        """Split by connection (in the plan's order), each chunk with only the frames its connections get."""
        connection_ids = list(self.targets)
        result = []
        for start in range(0, len(connection_ids), chunk_size):
            targets = {cid: self.targets[cid] for cid in connection_ids[start : start + chunk_size]}
            needed = sorted({index for indices in targets.values() for index in indices})
            result.append(PostPlan({index: self.frames[index] for index in needed}, targets))
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": {str(index): frame.decode("utf-8") for index, frame in self.frames.items()},
            "targets": self.targets,
        }

    @classmethod
    def from_json(cls, raw: Any) -> PostPlan:
        """The chunk a broadcast sent; ValueError when it is not one."""
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("frames"), dict)
            or not isinstance(raw.get("targets"), dict)
        ):
            raise ValueError('a fan-out chunk is {"frames": {...}, "targets": {...}}')
        frames = {int(index): str(text).encode("utf-8") for index, text in raw["frames"].items()}
        targets: dict[str, list[int]] = {}
        for connection_id, indices in raw["targets"].items():
            if not isinstance(indices, list) or any(not isinstance(i, int) or i not in frames for i in indices):
                raise ValueError(f"the targets of {connection_id} name frames the chunk does not hold")
            targets[str(connection_id)] = indices
        return cls(frames, targets)


@dataclass
class PlanOutcome:
    """What posting a plan (or a chunk of it) did.

    ``failed``: the connections a frame could not reach; ``failed_at``: the first such frame (its record and
    every later one are to be retried); ``chunks``: the fan-out invocations it took (0: posted here).
    """

    sent: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    failed_at: int | None = None
    throttled: int = 0
    chunks: int = 0
    error: str = ""

    def merge(self, other: PlanOutcome) -> None:
        self.sent += other.sent
        self.gone.extend(other.gone)
        self.failed.extend(other.failed)
        self.throttled += other.throttled
        self.chunks += other.chunks
        if other.failed_at is not None and (self.failed_at is None or other.failed_at < self.failed_at):
            self.failed_at, self.error = other.failed_at, other.error

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "gone": self.gone,
            "failed": self.failed,
            "failed_at": self.failed_at,
            "throttled": self.throttled,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, raw: Any) -> PlanOutcome:
        """A fan-out invocation's answer; ValueError when it is not one."""
        if not isinstance(raw, dict) or not isinstance(raw.get("sent"), int):
            raise ValueError(f"not a fan-out outcome: {str(raw)[:200]}")
        failed_at = raw.get("failed_at")
        return cls(
            sent=raw["sent"],
            gone=[str(cid) for cid in raw.get("gone", [])],
            failed=[str(cid) for cid in raw.get("failed", [])],
            failed_at=None if failed_at is None else int(failed_at),
            throttled=int(raw.get("throttled", 0)),
            error=str(raw.get("error", "")),
        )


def post_plan(plan: PostPlan, poster: Poster, pool: Executor) -> PlanOutcome:
    """Post breadth first, frame by frame; stop after the first frame that some connection did not get."""
    outcome = PlanOutcome()
    pending = {cid: iter(indices) for cid, indices in plan.targets.items()}
    heads = {cid: next(it, None) for cid, it in pending.items()}
    for index in sorted(plan.frames):
        due = [cid for cid, head in heads.items() if head == index]
        if not due:
            continue
        results = pool.map(partial(_post, poster, data=plan.frames[index]), due)
        for connection_id, (result, why, throttles) in zip(due, results, strict=True):
            outcome.throttled += throttles
            if result == "sent":
                outcome.sent += 1
                heads[connection_id] = next(pending[connection_id], None)
            elif result == "gone":
                outcome.gone.append(connection_id)
                del heads[connection_id]
            else:
                outcome.failed.append(connection_id)
                if outcome.failed_at is None:
                    outcome.failed_at, outcome.error = index, why
        if outcome.failed_at is not None:
            return outcome
    return outcome


def _post(poster: Poster, connection_id: str, data: bytes) -> tuple[str, str, int]:
    """("sent" | "gone" | "failed", why it failed, throttled answers waited out)."""
    try:
        throttles = poster.post(connection_id, data)
    except ConnectionGoneError:
        return "gone", "", 0
    except PostError as exc:
        log.warning("post to %s failed: %s", connection_id, exc)
        return "failed", f"post to {connection_id} failed: {exc}", 0
    return "sent", "", throttles


def rounds(frames: dict[int, bytes], max_bytes: int = MAX_CHUNK_FRAME_BYTES) -> Iterator[list[int]]:
    """Consecutive frame indices whose frames together stay within ``max_bytes`` (a frame alone may not)."""
    current: list[int] = []
    size = 0
    for index in sorted(frames):
        length = len(frames[index])
        if current and size + length > max_bytes:
            yield current
            current, size = [], 0
        current.append(index)
        size += length
    if current:
        yield current


class ChunkPoster:
    """What a ``FanoutFunction`` invocation does: post one chunk and answer its outcome."""

    def __init__(self, poster: Poster, max_workers: int = 64) -> None:
        self._poster = poster
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fanout-post")

    def post(self, raw_chunk: Any) -> dict[str, Any]:
        """Raises ValueError for anything but a chunk (the invocation then fails, and so does the chunk)."""
        return post_plan(PostPlan.from_json(raw_chunk), self._poster, self._pool).to_json()
