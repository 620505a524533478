"""Scheduled (every few minutes): remove connections the gateway already closed, firing their leaves."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from iii_stream import wiring

logger = Logger(service="iii-stream")


@logger.inject_lambda_context
def handler(event: Any, context: Any) -> dict[str, Any]:
    report = wiring.sweeper().sweep()
    logger.info("sweep", extra={"checked": report.checked, "removed": len(report.removed), "leaves": report.leaves})
    return {"checked": report.checked, "removed": report.removed, "leaves": report.leaves, "errors": report.errors}
