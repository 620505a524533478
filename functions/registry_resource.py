"""CloudFormation custom resource ``Custom::IiiStreamRegistration``: a function or a trigger, owned by a stack."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from iii_stream import wiring
from iii_stream.adapters import cfn_response
from iii_stream.core import registration
from iii_stream.core.registry import REGISTRY_FUNCTIONS

logger = Logger(service="iii-stream")


def _call(function_id: str, payload: dict[str, Any]) -> Any:
    return REGISTRY_FUNCTIONS.call(wiring.registry_service(), function_id, payload)


@logger.inject_lambda_context(log_event=False)  # the event holds a presigned URL: never log it
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = registration.answer(event, _call)
    if response["Status"] != "SUCCESS":
        logger.warning("registration failed", extra={"request": event.get("RequestType"), "reason": response["Reason"]})
    cfn_response.send(event["ResponseURL"], response)
    return response
