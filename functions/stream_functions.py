"""Lambda entry point for every ``stream::*`` function.

Event: ``{"function_id": "stream::set", "payload": {...}}``.
Result: ``{"result": <upstream result>}`` or ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from iii_stream import wiring
from iii_stream.core.models import invocation_error
from iii_stream.core.service import STREAM_FUNCTIONS

logger = Logger(service="iii-stream")


@logger.inject_lambda_context(log_event=False)
def handler(event: Any, context: Any) -> dict[str, Any]:
    response = invocation_error(event) or STREAM_FUNCTIONS.invoke(wiring.stream_service(), event)
    if "error" in response:
        error = response["error"]
        logger.info(
            "stream function failed",
            extra={"function_id": _function_id(event), "error_code": error["code"], "error_message": error["message"]},
        )
    return response


def _function_id(event: Any) -> Any:
    function_id = event.get("function_id") if isinstance(event, dict) else None
    # A lone surrogate (refused above) would make the log line unwritable: escape it.
    return function_id.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(function_id, str) else None
