"""Triggers at work: ``stream`` triggers on each change, the ``stream:join`` gate and ``stream:leave`` handlers.

The rules are the original's (section 6-7 of the spec): group/item filters where empty or missing
means any, a condition function that skips the handler only on ``false`` or a failed call, the
wrapper payload for ``stream`` and the snake_case payload for join/leave; plus ours: join/leave
filters, fail-closed join handlers (an unreadable registry included), each ``stream`` handler run once per
change, and each ``stream:leave`` handler retried until queued, once per subscription.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iii_stream.core.changes import Change
from iii_stream.core.errors import FunctionFailedError, StoreError
from iii_stream.core.ports import FunctionInvoker, Subscription, TriggerLedger
from iii_stream.core.registry import LifecycleTriggerConfig, RegistryStore, StreamTriggerConfig, TriggerRecord

log = logging.getLogger(__name__)


class TriggerCache:
    """Triggers and function targets, read once per ``ttl_seconds`` per container (no read per record when warm)."""

    def __init__(
        self, store: RegistryStore, ttl_seconds: float = 10.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._loaded_at: float | None = None
        self._triggers: list[TriggerRecord] = []
        self._targets: dict[str, str] = {}

    def _refresh(self) -> None:
        now = self._monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self._ttl:
            self._triggers = sorted(self._store.triggers(), key=lambda t: (t.created_at, t.trigger_id))
            self._targets = {record.function_id: record.target for record in self._store.functions()}
            self._loaded_at = now

    def of_type(self, trigger_type: str) -> list[TriggerRecord]:
        self._refresh()
        return [trigger for trigger in self._triggers if trigger.type == trigger_type]

    def target(self, function_id: str) -> str:
        self._refresh()
        try:
            return self._targets[function_id]
        except KeyError:
            raise FunctionFailedError(f"function {function_id} is not registered") from None


def stream_trigger_matches(config: StreamTriggerConfig, change: Change) -> bool:
    if config.stream_name != change.stream_name:
        return False
    if config.group_id and config.group_id != change.group_id:
        return False
    # A send without id counts as id "": it never matches an item filter.
    return not config.item_id or config.item_id == (change.item_id or "")


def lifecycle_trigger_matches(config: LifecycleTriggerConfig, subscription: Subscription) -> bool:
    if config.stream_name and config.stream_name != subscription.stream_name:
        return False
    return not config.group_id or config.group_id == subscription.group_id


def lifecycle_payload(subscription: Subscription) -> dict[str, Any]:
    """The original's join/leave payload: snake_case, every key present."""
    return {
        "subscription_id": subscription.subscription_id,
        "stream_name": subscription.stream_name,
        "group_id": subscription.group_id,
        "id": subscription.item_id,
        "context": subscription.context,
    }


class _Runner:
    def __init__(self, cache: TriggerCache, invoker: FunctionInvoker) -> None:
        self._cache = cache
        self._invoker = invoker

    def condition_allows(self, trigger: TriggerRecord, payload: Any) -> bool:
        """Run the condition function; only ``false`` or a failed call skips the handler."""
        return self._condition(trigger, payload, on_failure="handler skipped") is True

    def _condition(self, trigger: TriggerRecord, payload: Any, on_failure: str) -> bool | None:
        """True: run the handler; False: skip it; None: the condition call failed (logged with ``on_failure``)."""
        condition = trigger.condition()
        if condition is None:
            return True
        try:
            return self._invoker.invoke(self._cache.target(condition), payload) is not False
        except FunctionFailedError as exc:
            log.warning("condition %s of trigger %s failed; %s: %s", condition, trigger.trigger_id, on_failure, exc)
            return None


class StreamTriggers(_Runner):
    """Invokes every matching ``stream`` trigger's handler once per change, asynchronously."""

    def __init__(self, cache: TriggerCache, invoker: FunctionInvoker, ledger: TriggerLedger) -> None:
        super().__init__(cache, invoker)
        self._ledger = ledger

    def run(self, change: Change, change_id: str) -> int:
        """Return how many handlers were invoked; raise FunctionFailedError (after trying every trigger) if any
        could not be queued, so the record is retried for those alone."""
        payload = change.message()
        invoked = 0
        failures: list[str] = []
        for trigger in self._cache.of_type("stream"):
            config = trigger.config
            if not isinstance(config, StreamTriggerConfig) or not stream_trigger_matches(config, change):
                continue
            if not self._ledger.claim(change_id, trigger.trigger_id):
                continue  # a redelivered change: this handler already has it
            try:
                if self.condition_allows(trigger, payload):
                    self._invoker.invoke_async(self._cache.target(trigger.function_id), payload)
                    invoked += 1
            except FunctionFailedError as exc:
                self._ledger.release(change_id, trigger.trigger_id)
                failures.append(f"{trigger.trigger_id}: {exc}")
                continue
            try:
                self._ledger.complete(change_id, trigger.trigger_id)
            except StoreError as exc:  # queued: failing the record would queue it again when retried
                log.error("trigger %s queued for %s but not marked done: %s", trigger.trigger_id, change_id, exc)
        if failures:
            raise FunctionFailedError(f"{len(failures)} handler(s) could not be queued: {'; '.join(failures)}")
        return invoked


class TriggerJoinGate(_Runner):
    """Runs every matching ``stream:join`` handler before the sync; any ``{"unauthorized": true}`` rejects."""

    def __init__(self, cache: TriggerCache, invoker: FunctionInvoker, fail_open: bool = False) -> None:
        super().__init__(cache, invoker)
        self._fail_open = fail_open

    def allows(self, subscription: Subscription) -> bool:
        try:
            return self._allows(subscription)
        except StoreError as exc:  # the registry could not be read: no one can vouch for this subscription
            log.warning("join triggers could not be read (%s): %s", "allowed" if self._fail_open else "rejected", exc)
            return self._fail_open

    def _allows(self, subscription: Subscription) -> bool:
        payload = lifecycle_payload(subscription)
        allowed = True
        for trigger in self._cache.of_type("stream:join"):
            config = trigger.config
            if not isinstance(config, LifecycleTriggerConfig) or not lifecycle_trigger_matches(config, subscription):
                continue
            decision = self._condition(trigger, payload, on_failure="allowed" if self._fail_open else "rejected")
            if decision is None:  # the condition failed: no one can vouch for this subscription
                allowed = self._fail_open and allowed
                continue
            if not decision:
                continue
            # Every handler runs, even after one has said no (as the original does).
            allowed = self._ask(trigger, payload) and allowed
        return allowed

    def _ask(self, trigger: TriggerRecord, payload: dict[str, Any]) -> bool:
        try:
            result = self._invoker.invoke(self._cache.target(trigger.function_id), payload)
        except FunctionFailedError as exc:
            log.warning(
                "join handler %s failed (%s): %s",
                trigger.function_id,
                "allowed" if self._fail_open else "rejected",
                exc,
            )
            return self._fail_open
        return not (isinstance(result, dict) and result.get("unauthorized") is True)


@dataclass(frozen=True)
class LeaveRetry:
    """How a ``stream:leave`` handler's ``Event`` invocation is retried before its leave is handed back.

    ``attempts`` tries per invocation, with full-jitter exponential backoff (``base_seconds`` doubling up to
    ``cap_seconds``); once an invocation has failed after its attempts, the next ``cooldown_seconds`` try each
    invocation once (a storm of leaves must not wait out a throttle leave by leave). A leave is handed back at
    most ``hand_backs`` times, then set aside (logged).
    """

    attempts: int = 4
    base_seconds: float = 0.1
    cap_seconds: float = 1.0
    cooldown_seconds: float = 10.0
    hand_backs: int = 5


def leave_change_id(subscription: Subscription) -> str:
    """The ledger's id of a subscription's leave (stream changes use their eventID: no overlap). The join id tells
    a leave from the leave of a later join that reuses the subscription id."""
    return "L" + json.dumps([subscription.connection_id, subscription.subscription_id, subscription.join_id])


class TriggerLeaveHandlers(_Runner):
    """Queues every matching ``stream:leave`` handler, once per subscription; their results are ignored.

    A failed ``Event`` invocation (Lambda throttling) is retried here (``LeaveRetry``). With a ``ledger``, a leave
    whose handlers still could not all be queued (or whose triggers could not be read) raises
    FunctionFailedError after the others were queued: the Disconnector then hands the subscription back, and the
    next removal calls ``left`` again. Each (subscription, trigger) pair is claimed in the ledger before its
    handler is queued, as for ``stream`` triggers, so a handed-back leave queues only what is missing: never a
    handler twice. Without a ledger there is no memory of what was queued, so nothing is handed back: it is
    logged.
    """

    def __init__(
        self,
        cache: TriggerCache,
        invoker: FunctionInvoker,
        ledger: TriggerLedger | None = None,
        retry: LeaveRetry = LeaveRetry(),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(cache, invoker)
        self._ledger = ledger
        self._retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self._jitter = jitter
        self._patient_after = 0.0  # until then (a cooldown), each invocation is tried once
        self._lock = threading.Lock()

    def left(self, subscription: Subscription) -> None:
        key = leave_change_id(subscription)
        try:
            triggers = [
                trigger
                for trigger in self._cache.of_type("stream:leave")
                if isinstance(trigger.config, LifecycleTriggerConfig)
                and lifecycle_trigger_matches(trigger.config, subscription)
            ]
        except StoreError as exc:
            self._not_queued(subscription, key, [], [f"the leave triggers could not be read: {exc}"])
            return
        payload = lifecycle_payload(subscription)
        done: list[str] = []
        failures: list[str] = []
        for trigger in triggers:
            try:
                if self._ledger is not None and not self._ledger.claim(key, trigger.trigger_id):
                    continue  # queued by an earlier attempt at this leave
                if self.condition_allows(trigger, payload):
                    self._queue(self._cache.target(trigger.function_id), payload)
            except (FunctionFailedError, StoreError) as exc:
                failures.append(f"{trigger.trigger_id}: {exc}")
                continue
            done.append(trigger.trigger_id)
        if failures:
            self._not_queued(subscription, key, done, failures)

    def _queue(self, target: str, payload: dict[str, Any]) -> None:
        """One ``Event`` invocation, retried with backoff (once only during a cooldown)."""
        attempts = max(1, self._retry.attempts) if self._monotonic() >= self._patient_after else 1
        for attempt in range(attempts):
            try:
                self._invoker.invoke_async(target, payload)
                return
            except FunctionFailedError:
                if attempt + 1 >= attempts:
                    with self._lock:
                        self._patient_after = self._monotonic() + self._retry.cooldown_seconds
                    raise
                self._sleep(self._jitter() * min(self._retry.cap_seconds, self._retry.base_seconds * 2**attempt))

    def _not_queued(self, subscription: Subscription, key: str, done: list[str], failures: list[str]) -> None:
        """Record what was queued and raise (the leave is handed back), or log when that cannot be done safely."""
        what = f"leave handlers for {subscription.subscription_id} could not be queued: {'; '.join(failures)}"
        if self._ledger is None:
            log.error("%s", what)
            return
        try:
            for trigger_id in done:
                self._ledger.complete(key, trigger_id)
            hand_back = self._next_hand_back(self._ledger, key)
        except StoreError as exc:
            # Without a record of what was queued, a retry could queue a handler twice: give up on the rest.
            log.error("%s; what was queued could not be recorded (%s), so it is not retried", what, exc)
            return
        if hand_back is None:
            log.error("%s; set aside after %d hand-backs", what, self._retry.hand_backs)
            return
        raise FunctionFailedError(f"{what} (hand-back {hand_back} of {self._retry.hand_backs})")

    def _next_hand_back(self, ledger: TriggerLedger, key: str) -> int | None:
        """Count this hand-back in the ledger; None when the leave has been handed back enough times."""
        for number in range(1, self._retry.hand_backs + 1):
            if ledger.claim(key, f"#hand-back-{number}"):
                ledger.complete(key, f"#hand-back-{number}")
                return number
        return None
