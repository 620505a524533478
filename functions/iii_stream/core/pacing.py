"""Backpressure: slow the posts down when API Gateway throttles them, and speed back up when it stops.

API Gateway's account quota (10,000 requests/s, PostToConnection included, shared by every API of the
account and region) and a slow consumer's full buffer both answer 429 ``LimitExceededException``. Retrying
each throttled post on its own keeps hitting the limit; so the posts of one container share an
``AdaptiveRate``: additive increase, multiplicative decrease (as TCP's congestion control). Unthrottled, it
costs a lock and nothing else. On a throttle the rate falls to half of what was being sent; each post that
goes through raises it a little, and once it is back above ``ceiling_rps`` the limit is lifted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

# The account's steady quota: one container never needs to send faster than this.
DEFAULT_CEILING_RPS: Final = 10_000.0
DEFAULT_FLOOR_RPS: Final = 10.0
# How fast the rate climbs back: this many requests per second, per second of posting at the current rate.
DEFAULT_RECOVERY_RPS: Final = 200.0
_WINDOW_SECONDS: Final = 1.0


class AdaptiveRate:
    """A shared pace for the posts of one container (thread-safe)."""

    def __init__(
        self,
        ceiling_rps: float = DEFAULT_CEILING_RPS,
        floor_rps: float = DEFAULT_FLOOR_RPS,
        recovery_rps: float = DEFAULT_RECOVERY_RPS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ceiling = ceiling_rps
        self._floor = floor_rps
        self._recovery = recovery_rps
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._limit: float | None = None  # requests per second; None: not limited
        self._next = 0.0
        self._recent: deque[float] = deque()  # send times within the last window (only while unlimited)

    @property
    def limit(self) -> float | None:
        """The current limit in requests per second (None: none)."""
        return self._limit

    def wait(self) -> None:
        """Before a request: wait for its turn when a limit is in force."""
        with self._lock:
            now = self._clock()
            if self._limit is None:
                self._recent.append(now)
                while self._recent and self._recent[0] < now - _WINDOW_SECONDS:
                    self._recent.popleft()
                return
            slot = max(now, self._next)
            self._next = slot + 1.0 / self._limit
        if slot > now:
            self._sleep(slot - now)

    def throttled(self) -> None:
        """A request was throttled: halve the rate that was being sent."""
        with self._lock:
            sending = self._limit if self._limit is not None else max(len(self._recent) / _WINDOW_SECONDS, 1.0)
            self._limit = max(self._floor, sending / 2.0)
            self._recent.clear()

    def succeeded(self) -> None:
        """A request went through: raise the limit a little (lift it above the ceiling)."""
        with self._lock:
            if self._limit is None:
                return
            self._limit += self._recovery / self._limit
            if self._limit >= self._ceiling:
                self._limit = None
