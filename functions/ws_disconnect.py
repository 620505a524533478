"""``$disconnect``: remove the connection and its subscriptions; each gets its ``stream:leave``."""

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
    removed = wiring.disconnector().disconnect(connection_id)
    logger.info("disconnect", extra={"connection_id": connection_id, "subscriptions": len(removed)})
    return {"statusCode": 200}
