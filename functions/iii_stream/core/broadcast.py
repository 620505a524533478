"""Broadcast: one frame per subscribed connection per change.

A batch of changes becomes one post plan (``core/fanout.py``): each subscribed connection and the frames it
gets, in stream order. The broadcast posts a small plan itself, with a bounded pool; a plan of more than
``FanoutSettings.threshold`` posts goes to the fan-out tier, in chunks of connections posted in parallel by
``FanoutFunction`` invocations, and the broadcast waits for every chunk before it answers for the batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import FunctionFailedError, PostError
from iii_stream.core.fanout import PlanOutcome, PostPlan, post_plan, rounds
from iii_stream.core.ports import ConnectionStore, FunctionInvoker, Poster, Subscription

log = logging.getLogger(__name__)

Delivery = PlanOutcome  # what one change's (or one batch's) broadcast did


@dataclass(frozen=True)
class FanoutSettings:
    """When and how to hand posts to the fan-out tier; no ``function``: never."""

    function: str = ""
    threshold: int = 500
    chunk_size: int = 250
    max_parallel_chunks: int = 100


class BroadcastService:
    """Finds a change's subscribers with one keyed query per (stream, group) per batch, then posts."""

    def __init__(
        self,
        connections: ConnectionStore,
        poster: Poster,
        disconnector: Disconnector,
        max_workers: int = 64,
        invoker: FunctionInvoker | None = None,
        fanout: FanoutSettings | None = None,
    ) -> None:
        self._connections = connections
        self._poster = poster
        self._disconnector = disconnector
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="post")
        self._invoker = invoker
        self._fanout = fanout or FanoutSettings()
        self._chunk_pool: ThreadPoolExecutor | None = None
        self._subscribers: dict[tuple[str, str], list[Subscription]] = {}

    def new_batch(self) -> None:
        """Forget the subscribers read for the previous batch."""
        self._subscribers = {}

    def subscribers(self, stream_name: str, group_id: str) -> list[Subscription]:
        key = (stream_name, group_id)
        if key not in self._subscribers:
            self._subscribers[key] = self._connections.subscribers(stream_name, group_id)
        return self._subscribers[key]

    def deliver(self, change: Change) -> Delivery:
        """Post one change to every connection with a matching subscription; PostError if any post failed."""
        delivery = self.deliver_batch([change])
        if delivery.failed_at is not None:
            tried = delivery.sent + len(delivery.gone) + len(delivery.failed)
            first = delivery.failed[0] if delivery.failed else delivery.error
            raise PostError(f"{len(delivery.failed)} of {tried} posts failed; first: {first}")
        return delivery

    def deliver_batch(self, changes: Sequence[Change | None]) -> Delivery:
        """Post a batch's changes (None: a record with nothing to post) in order. ``failed_at`` of the result is
        the index of the first change some connection did not get; that change and every later one are to be
        retried. Gone connections (410) are removed, their leaves fired once, and get nothing more."""
        plan, known = self._plan(changes)
        delivery = Delivery()
        for indices in rounds(plan.frames):
            part = PostPlan({index: plan.frames[index] for index in indices}, _only(plan.targets, set(indices)))
            outcome = self._post(part.without(delivery.gone))
            delivery.merge(outcome)
            for connection_id in outcome.gone:
                self._forget(connection_id, known[connection_id])
            if delivery.failed_at is not None:
                break
        return delivery

    def _plan(self, changes: Sequence[Change | None]) -> tuple[PostPlan, dict[str, list[Subscription]]]:
        plan = PostPlan()
        known: dict[str, list[Subscription]] = defaultdict(list)
        for index, change in enumerate(changes):
            if change is None:
                continue
            targets = _connections_for(change, self.subscribers(change.stream_name, change.group_id))
            if not targets:
                continue
            plan.frames[index] = change.frame_bytes()
            for connection_id, subscriptions in targets.items():
                plan.targets.setdefault(connection_id, []).append(index)
                known[connection_id].extend(s for s in subscriptions if s not in known[connection_id])
        return plan, known

    def _post(self, plan: PostPlan) -> PlanOutcome:
        if not self._fanout.function or self._invoker is None or plan.posts <= self._fanout.threshold:
            return post_plan(plan, self._poster, self._pool)
        chunks = plan.chunks(self._fanout.chunk_size)
        if self._chunk_pool is None:
            self._chunk_pool = ThreadPoolExecutor(self._fanout.max_parallel_chunks, thread_name_prefix="fanout")
        outcome = PlanOutcome()
        for part in self._chunk_pool.map(self._post_chunk, chunks):
            outcome.merge(part)
        return outcome

    def _post_chunk(self, chunk: PostPlan) -> PlanOutcome:
        """One FanoutFunction invocation; if it fails, none of the chunk's frames count as delivered."""
        assert self._invoker is not None
        try:
            outcome = PlanOutcome.from_json(self._invoker.invoke(self._fanout.function, chunk.to_json()))
        except (FunctionFailedError, ValueError) as exc:
            log.warning("a fan-out chunk of %d connections failed: %s", len(chunk.targets), exc)
            outcome = PlanOutcome(failed=list(chunk.targets), failed_at=min(chunk.frames), error=str(exc))
        outcome.chunks = 1
        return outcome

    def _forget(self, connection_id: str, known: list[Subscription]) -> None:
        """A 410: the connection is gone; remove it (its leaves fire once) and stop posting to it this batch."""
        self._disconnector.disconnect(connection_id, known)
        for key, subscribers in self._subscribers.items():
            self._subscribers[key] = [s for s in subscribers if s.connection_id != connection_id]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._chunk_pool is not None:
            self._chunk_pool.shutdown(wait=True)


def _only(targets: dict[str, list[int]], indices: set[int]) -> dict[str, list[int]]:
    """Each connection's frames among ``indices`` (connections with none left out)."""
    kept = {cid: [i for i in wanted if i in indices] for cid, wanted in targets.items()}
    return {cid: wanted for cid, wanted in kept.items() if wanted}


def _connections_for(change: Change, subscribers: list[Subscription]) -> dict[str, list[Subscription]]:
    """Connection id -> its subscriptions to this group, for connections with at least one match."""
    by_connection: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in subscribers:
        by_connection[subscription.connection_id].append(subscription)
    return {cid: subs for cid, subs in by_connection.items() if any(_wants(s, change) for s in subs)}


def _wants(subscription: Subscription, change: Change) -> bool:
    """A matching subscription wants the change unless its sync already held this write of the item (or a newer
    one: a delete older than the item the sync carried must not remove it), or will (a join in progress).
    Custom events are in no snapshot: they always go."""
    if not subscription.matches(change.item_id):
        return False
    if change.kind == "event" or subscription.synced is None:
        return True
    return not subscription.synced.holds(change.item_id, change.timestamp)
