"""Triggers at work: ``stream`` triggers on each change, the ``stream:join`` gate and ``stream:leave`` handlers.

The rules are the original's (section 6-7 of the spec): group/item filters where empty or missing
means any, a condition function that skips the handler only on ``false`` or a failed call, the
wrapper payload for ``stream`` and the snake_case payload for join/leave; plus ours: join/leave
filters, fail-closed join handlers, and each handler run once per change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from iii_stream.core.changes import Change
from iii_stream.core.errors import FunctionFailedError
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
            self._ledger.complete(change_id, trigger.trigger_id)
        if failures:
            raise FunctionFailedError(f"{len(failures)} handler(s) could not be queued: {'; '.join(failures)}")
        return invoked


class TriggerJoinGate(_Runner):
    """Runs every matching ``stream:join`` handler before the sync; any ``{"unauthorized": true}`` rejects."""

    def __init__(self, cache: TriggerCache, invoker: FunctionInvoker, fail_open: bool = False) -> None:
        super().__init__(cache, invoker)
        self._fail_open = fail_open

    def allows(self, subscription: Subscription) -> bool:
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


class TriggerLeaveHandlers(_Runner):
    """Queues every matching ``stream:leave`` handler; their results are ignored."""

    def left(self, subscription: Subscription) -> None:
        payload = lifecycle_payload(subscription)
        for trigger in self._cache.of_type("stream:leave"):
            config = trigger.config
            if not isinstance(config, LifecycleTriggerConfig) or not lifecycle_trigger_matches(config, subscription):
                continue
            if not self.condition_allows(trigger, payload):
                continue
            try:
                self._invoker.invoke_async(self._cache.target(trigger.function_id), payload)
            except FunctionFailedError as exc:
                log.error(
                    "leave handler %s for %s could not be queued: %s",
                    trigger.function_id,
                    subscription.subscription_id,
                    exc,
                )
