"""The scheduled sweeper: connections that API Gateway closed without a ``$disconnect`` get their leaves.

``$disconnect`` is best effort, and API Gateway closes idle sockets after 10 minutes and every socket
after 2 hours. Each connection is due for a check 10 minutes after it opened: the sweeper asks the
gateway (``GetConnection``) whether it still holds it; a gone one is removed (its leaves fire once,
as for any removal), a live one is checked again later. So a connection that is merely quiet but
still open is never cut off by the sweeper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from iii_stream.core.disconnect import Disconnector
from iii_stream.core.errors import PostError
from iii_stream.core.limits import API_GATEWAY_IDLE_TIMEOUT_MS
from iii_stream.core.ports import Clock, ConnectionStore, Poster

log = logging.getLogger(__name__)

RECHECK_MS: Final = API_GATEWAY_IDLE_TIMEOUT_MS


@dataclass
class SweepReport:
    checked: int = 0
    removed: list[str] = field(default_factory=list)
    leaves: int = 0
    errors: int = 0


class Sweeper:
    def __init__(
        self,
        connections: ConnectionStore,
        poster: Poster,
        disconnector: Disconnector,
        clock: Clock,
        batch_limit: int = 200,
    ) -> None:
        self._connections = connections
        self._poster = poster
        self._disconnector = disconnector
        self._clock = clock
        self._limit = batch_limit

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now_ms()
        for connection_id in self._connections.due_connections(now, self._limit):
            report.checked += 1
            try:
                alive = self._poster.alive(connection_id)
            except PostError as exc:
                log.warning("could not check %s: %s", connection_id, exc)
                report.errors += 1
                continue
            if alive:
                self._connections.postpone(connection_id, now + RECHECK_MS)
            else:
                report.removed.append(connection_id)
                report.leaves += len(self._disconnector.disconnect(connection_id))
        return report
