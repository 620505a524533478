"""The ``join``, ``leave`` and ``$default`` routes: one client frame each; bad frames are ignored."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from iii_stream import wiring

logger = Logger(service="iii-stream")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: Any) -> dict[str, Any]:
    connection_id = event.request_context.connection_id
    try:
        wiring.subscription_service().message(connection_id, event.decoded_body)
    except Exception:
        # A failing integration makes API Gateway send the client {"message": "Internal server error"}, a frame
        # the published clients cannot parse (no "event"): log it here and answer normally instead.
        logger.exception("frame handling failed", extra={"connection_id": connection_id})
    # The route's return value is not sent to the client (no route responses): always 200.
    return {"statusCode": 200}
