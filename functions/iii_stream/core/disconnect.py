"""Ending subscriptions: a leave, a closed or vanished connection. Each removed subscription gets exactly one
``stream:leave``, whoever removes it (the routes, a broadcast that met a 410, the sweeper): the connection
store's conditional deletes decide who removed it, and only that caller runs the leave hook."""

from __future__ import annotations

import logging

from iii_stream.core.ports import ConnectionStore, LeaveHook, Subscription

log = logging.getLogger(__name__)


class NoLeaveHandlers:
    """The leave hook when no ``stream:leave`` handler is registered."""

    def left(self, subscription: Subscription) -> None:
        log.debug("subscription %s left", subscription.subscription_id)


class Disconnector:
    """The connection store plus the leave hook."""

    def __init__(self, connections: ConnectionStore, leave_hook: LeaveHook | None = None) -> None:
        self._connections = connections
        self._leave_hook = leave_hook or NoLeaveHandlers()

    def leave(self, connection_id: str, subscription_id: str) -> Subscription | None:
        """End one subscription; None when it was not there (already left, or never joined)."""
        removed = self._connections.remove_subscription(connection_id, subscription_id)
        if removed is not None:
            self._leave_hook.left(removed)
        return removed

    def disconnect(self, connection_id: str, known: list[Subscription] | None = None) -> list[Subscription]:
        """Remove a connection (closed, gone or stale) and its subscriptions; ``known`` are subscriptions the
        caller already read (a broadcast's subscriber query), removed too even if the connection row is gone."""
        removed = self._connections.remove_connection(connection_id, known)
        for subscription in removed:
            self._leave_hook.left(subscription)
        return removed
