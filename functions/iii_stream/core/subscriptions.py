"""Join, leave and disconnect: the subscription lifecycle and the initial ``sync``.

A join is recorded *before* its snapshot is read, so every change committed after the read is
broadcast to it; a second read after the ``sync`` is posted catches the changes committed between
the two reads (their broadcast may have reached the client before its ``sync`` and been lost).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

from iii_stream.core import frames
from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import BadFrameError, ConnectionGoneError, NameTooLongError, PostError, StoreError
from iii_stream.core.limits import MAX_MESSAGE_BYTES
from iii_stream.core.ports import (
    PENDING_SYNC,
    SYNC_WINDOW_MS,
    Clock,
    ConnectionStore,
    ItemAddress,
    ItemStore,
    JoinGate,
    Poster,
    StoredItem,
    Subscription,
    SyncMark,
)
from iii_stream.core.ws_frames import SubscriptionData, parse_client_frame

log = logging.getLogger(__name__)

# How far behind our clock another writer's clock may be; an item sync of a missing item is
# stamped this far back so that a create right after it is never dropped by the client.
CLOCK_SKEW_MS: Final = 1000

Snapshot = dict[str, StoredItem]


class AllowAll:
    """The join gate when no ``stream:join`` handler is registered."""

    def allows(self, subscription: Subscription) -> bool:
        return True


class SubscriptionService:
    def __init__(
        self,
        connections: ConnectionStore,
        items: ItemStore,
        poster: Poster,
        clock: Clock,
        gate: JoinGate | None = None,
        disconnector: Disconnector | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._connections = connections
        self._items = items
        self._poster = poster
        self._clock = clock
        self._gate = gate or AllowAll()
        self._disconnector = disconnector or Disconnector(connections)
        self._max_bytes = max_message_bytes

    def message(self, connection_id: str, body: Any) -> None:
        """Handle one client frame (any route); malformed frames are logged and ignored."""
        try:
            frame = parse_client_frame(body)
        except BadFrameError as exc:
            log.info("ignored a frame from %s: %s", connection_id, exc)
            return
        if frame.type == "join":
            self.join(connection_id, frame.data)
        else:
            self.leave(connection_id, frame.data)

    def join(self, connection_id: str, data: SubscriptionData) -> None:
        connection = self._connections.get_connection(connection_id)
        if connection is None:
            log.info("join from unknown connection %s ignored", connection_id)
            return
        subscription = Subscription(
            connection_id,
            data.subscription_id,
            data.stream_name,
            data.group_id,
            data.id,
            connection.context,
            # Until its snapshot is read, broadcasts skip a group subscription: that snapshot, or the catch-up
            # read after its sync, carries the change (else an older write could land after the sync).
            synced=PENDING_SYNC if data.id is None else None,
            join_id=uuid.uuid4().hex,
        )
        try:
            self._join(subscription)
        except StoreError as exc:
            # A table failing mid-join: no half-made subscription may stay (a pending one would get nothing).
            log.error("join of %s on %s failed: %s", subscription.subscription_id, connection_id, exc)
            self._undo_join(connection_id, data)
        except NameTooLongError as exc:
            # Names within 512 bytes whose key still would not fit (escaped control characters): as a malformed frame.
            log.info("ignored a frame from %s: %s", connection_id, exc)
        except ConnectionGoneError:
            self._disconnector.disconnect(connection_id)
        except PostError as exc:
            # The client would wait for a sync that never comes: end the subscription (its leave fires) instead.
            log.error("sync for %s on %s could not be delivered: %s", subscription.subscription_id, connection_id, exc)
            self.leave(connection_id, data)

    def _join(self, subscription: Subscription) -> None:
        if not self._gate.allows(subscription):
            self._post(
                subscription,
                frames.wrapper(
                    subscription.stream_name,
                    subscription.group_id,
                    subscription.item_id,
                    self._clock.now_ms(),
                    {"type": "unauthorized"},
                ),
            )
            return
        if not self._connections.add_subscription(subscription):
            return
        read_at = self._clock.now_ms()
        first = self._snapshot(subscription)
        if subscription.item_id is None:
            # Before the sync goes out: from here on broadcast skips writes this snapshot already holds (the
            # published group client would apply them over the sync). Item clients skip them by timestamp.
            recent = {item_id: item.ts for item_id, item in first.items() if item.ts >= read_at - SYNC_WINDOW_MS}
            self._connections.mark_synced(subscription, SyncMark(read_at, recent))
        for frame in self._sync_frames(subscription, first):
            self._post(subscription, frame)
        for frame in self._catch_up_frames(subscription, first, self._snapshot(subscription)):
            self._post(subscription, frame)

    def leave(self, connection_id: str, data: SubscriptionData) -> None:
        self._disconnector.leave(connection_id, data.subscription_id)

    def _undo_join(self, connection_id: str, data: SubscriptionData) -> None:
        try:
            self.leave(connection_id, data)
        except StoreError as exc:
            # Left to the connection's end ($disconnect or the sweeper), which removes every row it has.
            log.error("the failed join of %s could not be undone: %s", data.subscription_id, exc)

    def _post(self, subscription: Subscription, frame: dict[str, Any]) -> None:
        self._poster.post(subscription.connection_id, frames.dumps(frame).encode("utf-8"))

    def _snapshot(self, subscription: Subscription) -> Snapshot:
        now = self._clock.now_ms()
        if subscription.item_id is not None:
            address = ItemAddress(subscription.stream_name, subscription.group_id, subscription.item_id)
            item = self._items.get(address)
            # Kept even when not live: a tombstone's (or an expired version's) stamp dates the item's sync.
            return {subscription.item_id: item} if item is not None else {}
        return dict(self._items.group_items(subscription.stream_name, subscription.group_id, now))

    def _sync_frames(self, subscription: Subscription, snapshot: Snapshot) -> list[dict[str, Any]]:
        wrap = _wrapper_for(subscription)
        if subscription.item_id is not None:
            now = self._clock.now_ms()
            item = snapshot.get(subscription.item_id)
            if item is not None and item.live(now):
                return [wrap(subscription.item_id, item.ts, _sync(json.loads(item.data)))]
            # Gone: stamped at its delete (or just after its expired version), so a client that saw the item
            # applies this null; never seen at all: a little in the past, so a create right after still lands.
            stamp = (item.ts + (0 if item.deleted else 1)) if item is not None else max(1, now - CLOCK_SKEW_MS)
            return [wrap(subscription.item_id, stamp, _sync(None))]
        stamp = max([self._clock.now_ms(), *(item.ts for item in snapshot.values())])
        values = [(item_id, item, json.loads(item.data)) for item_id, item in snapshot.items()]
        kept, rest = self._split_group(subscription, stamp, [value for _, _, value in values])
        result = [wrap(None, stamp, _sync(kept))]
        # What does not fit one message follows as creates (a client appends them without a timestamp check).
        result += [wrap(item_id, item.ts, {"type": "create", "data": value}) for item_id, item, value in values[rest:]]
        return result

    def _split_group(self, subscription: Subscription, stamp: int, values: list[Any]) -> tuple[list[Any], int]:
        """The longest prefix of ``values`` whose sync frame fits one message."""
        empty = frames.wrapper(subscription.stream_name, subscription.group_id, None, stamp, _sync([]))
        size = len(frames.dumps(empty).encode("utf-8"))
        for index, value in enumerate(values):
            size += len(frames.dumps(value).encode("utf-8")) + (1 if index else 0)
            if size > self._max_bytes:
                return values[:index], index
        return values, len(values)

    def _catch_up_frames(self, subscription: Subscription, before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
        wrap = _wrapper_for(subscription)
        now = self._clock.now_ms()
        before = {item_id: item for item_id, item in before.items() if item.live(now)}
        after = {item_id: item for item_id, item in after.items() if item.live(now)}
        result = []
        for item_id, item in after.items():
            old = before.get(item_id)
            if old is None or item.ts > old.ts:
                kind = "create" if old is None else "update"
                result.append(wrap(item_id, item.ts, {"type": kind, "data": json.loads(item.data)}))
        for item_id, old in before.items():
            if item_id not in after:
                result.append(wrap(item_id, old.ts + 1, {"type": "delete", "data": json.loads(old.data)}))
        return result


def _sync(data: Any) -> dict[str, Any]:
    return {"type": "sync", "data": data}


def _wrapper_for(subscription: Subscription) -> Callable[[str | None, int, dict[str, Any]], dict[str, Any]]:
    def wrap(item_id: str | None, timestamp: int, event: dict[str, Any]) -> dict[str, Any]:
        return frames.wrapper(subscription.stream_name, subscription.group_id, item_id, timestamp, event)

    return wrap
