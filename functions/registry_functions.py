"""Lambda entry point for the ``registry::*`` functions: register functions and triggers.

Event: ``{"function_id": "registry::register_trigger", "payload": {...}}``; result as StreamFunction's.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from iii_stream import wiring
from iii_stream.core.models import invocation_error
from iii_stream.core.registry import REGISTRY_FUNCTIONS

logger = Logger(service="iii-stream")


@logger.inject_lambda_context(log_event=False)
def handler(event: Any, context: Any) -> dict[str, Any]:
    response = invocation_error(event) or REGISTRY_FUNCTIONS.invoke(wiring.registry_service(), event)
    if "error" in response:
        logger.info(
            "registry call refused",
            extra={"error_code": response["error"]["code"], "error_message": response["error"]["message"]},
        )
    return response
