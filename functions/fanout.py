"""The fan-out tier (FanoutFunction): posts one chunk of a large broadcast, invoked by the broadcast.

Event: ``{"frames": {"<index>": "<frame>"}, "targets": {"<connection id>": [<index>, ...]}}``.
Result: ``{"sent", "gone", "failed", "failed_at", "throttled", "error"}`` (see ``iii_stream/core/fanout.py``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from iii_stream import wiring

logger = Logger(service="iii-stream")


@logger.inject_lambda_context(log_event=False)
def handler(event: Any, context: Any) -> dict[str, Any]:
    outcome = wiring.chunk_poster().post(event)
    if outcome["failed_at"] is not None or outcome["throttled"]:
        logger.warning("chunk posted with trouble", extra={k: v for k, v in outcome.items() if k != "gone"})
    return outcome
