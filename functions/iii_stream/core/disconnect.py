"""Ending subscriptions: a leave, a closed or vanished connection. Each removed subscription gets exactly one
``stream:leave``, whoever removes it (the routes, a broadcast that met a 410, the sweeper): the connection
store's conditional deletes decide who removed it, and only that caller runs the leave hook.

A leave hook that cannot queue a leave now (its handlers' invocations throttled even after its retries) raises
FunctionFailedError. The removal already decided that this caller owns the leave, and nobody else will fire it,
so the subscription is handed back: put back in the store (with its connection, if that was removed too, due at
the sweeper's next run). The next removal (the sweeper for a closed connection, a 410 on a broadcast post,
``$disconnect``) then runs the hook again, and the hook's ledger keeps it from queueing a handler twice.
"""

from __future__ import annotations

import logging

from iii_stream.core.clock import SystemClock
from iii_stream.core.errors import FunctionFailedError, RemovalStoppedError, StoreError
from iii_stream.core.ports import Clock, Connection, ConnectionStore, LeaveHook, Subscription

log = logging.getLogger(__name__)


class NoLeaveHandlers:
    """The leave hook when no ``stream:leave`` handler is registered."""

    def left(self, subscription: Subscription) -> None:
        log.debug("subscription %s left", subscription.subscription_id)


class Disconnector:
    """The connection store plus the leave hook."""

    def __init__(
        self, connections: ConnectionStore, leave_hook: LeaveHook | None = None, clock: Clock | None = None
    ) -> None:
        self._connections = connections
        self._leave_hook = leave_hook or NoLeaveHandlers()
        self._clock = clock or SystemClock()

    def leave(self, connection_id: str, subscription_id: str) -> Subscription | None:
        """End one subscription; None when it was not there (already left, or never joined) or was handed back."""
        removed = self._connections.remove_subscription(connection_id, subscription_id)
        if removed is None or not self._left(removed):
            return None
        return removed

    def disconnect(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        """Remove a connection (closed, gone or stale) and its subscriptions; ``known`` are subscriptions the
        caller already read (a broadcast's subscriber query), removed too even if the connection row is gone.
        Returns the subscriptions that left (not those handed back)."""
        try:
            removed = self._connections.remove_connection(connection_id, known)
        except RemovalStoppedError as exc:
            # Stopped half-way: the leaves of what it did remove are fired now (nobody else will), then it fails.
            for subscription in exc.removed:
                self._left(subscription)
            raise
        return [subscription for subscription in removed if self._left(subscription)]

    def _left(self, subscription: Subscription) -> bool:
        """Run the leave hook; False when the leave could not be queued and the subscription was handed back."""
        try:
            self._leave_hook.left(subscription)
        except FunctionFailedError as exc:
            self._hand_back(subscription, exc)
            return False
        return True

    def _hand_back(self, subscription: Subscription, why: FunctionFailedError) -> None:
        """Put the subscription back so that the next removal fires its leave (never raises: callers go on)."""
        try:
            if not self._connections.add_subscription(subscription):
                # Its connection row is gone too: put it back, due for the sweeper's next check (it asks the
                # gateway, gets a 410 and removes it again), unless a broadcast's 410 removes it first.
                now = self._clock.now_ms()
                self._connections.save_connection(Connection(subscription.connection_id, now))
                self._connections.postpone(subscription.connection_id, now)  # due at the sweeper's next run
                self._connections.add_subscription(subscription)
        except StoreError as exc:
            log.error(
                "the leave of %s could not be queued (%s) nor handed back (%s): it is lost",
                subscription.subscription_id,
                why,
                exc,
            )
            return
        log.warning("the leave of %s is handed back to its next removal: %s", subscription.subscription_id, why)
