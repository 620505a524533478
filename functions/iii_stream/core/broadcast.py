"""Broadcast: one frame per subscribed connection per change, posted concurrently with a bounded pool."""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from iii_stream.core.changes import Change
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import ConnectionGoneError, PostError
from iii_stream.core.ports import ConnectionStore, Poster, Subscription

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """What one change's broadcast did."""

    sent: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class BroadcastService:
    """Finds a change's subscribers with one keyed query per (stream, group) per batch, then posts."""

    def __init__(
        self, connections: ConnectionStore, poster: Poster, disconnector: Disconnector, max_workers: int = 64
    ) -> None:
        self._connections = connections
        self._poster = poster
        self._disconnector = disconnector
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="post")
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
        """Post the change to every connection with a matching subscription; raise PostError if any post failed."""
        targets = _connections_for(change, self.subscribers(change.stream_name, change.group_id))
        data = change.frame_bytes()
        delivery = Delivery()
        outcomes = self._pool.map(lambda cid: (cid, self._post(cid, data)), list(targets))
        for connection_id, outcome in outcomes:
            if outcome == "sent":
                delivery.sent += 1
            elif outcome == "gone":
                delivery.gone.append(connection_id)
            else:
                delivery.failed.append(connection_id)
        for connection_id in delivery.gone:
            self._forget(connection_id, targets[connection_id])
        if delivery.failed:
            raise PostError(f"{len(delivery.failed)} of {len(targets)} posts failed; first: {delivery.failed[0]}")
        return delivery

    def _post(self, connection_id: str, data: bytes) -> str:
        try:
            self._poster.post(connection_id, data)
        except ConnectionGoneError:
            return "gone"
        except PostError as exc:
            log.warning("post to %s failed: %s", connection_id, exc)
            return "failed"
        return "sent"

    def _forget(self, connection_id: str, known: list[Subscription]) -> None:
        """A 410: the connection is gone; remove it (its leaves fire once) and stop posting to it this batch."""
        self._disconnector.disconnect(connection_id, known)
        for key, subscribers in self._subscribers.items():
            self._subscribers[key] = [s for s in subscribers if s.connection_id != connection_id]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _connections_for(change: Change, subscribers: list[Subscription]) -> dict[str, list[Subscription]]:
    """Connection id -> its subscriptions to this group, for connections with at least one match."""
    by_connection: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in subscribers:
        by_connection[subscription.connection_id].append(subscription)
    return {cid: subs for cid, subs in by_connection.items() if any(_wants(s, change) for s in subs)}


def _wants(subscription: Subscription, change: Change) -> bool:
    """A matching subscription wants the change unless its sync already held this write of the item."""
    if not subscription.matches(change.item_id):
        return False
    stale = change.kind in ("create", "update") and subscription.synced is not None
    return not (stale and subscription.synced.holds(change.item_id, change.timestamp))  # type: ignore[union-attr]
