"""``$connect``: run the auth function, refuse (401) or accept and echo the offered subprotocol."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from iii_stream import wiring
from iii_stream.core.connect import ConnectRequest

logger = Logger(service="iii-stream")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: Any) -> dict[str, Any]:
    request = ConnectRequest(
        connection_id=event.request_context.connection_id,
        headers=event.headers or {},
        query_params=event.multi_value_query_string_parameters or {},
        source_ip=event.request_context.identity.source_ip,
        connected_at=event.request_context.connected_at,
    )
    response = wiring.connect_service().connect(request)
    logger.info("connect", extra={"connection_id": request.connection_id, "status": response.status_code})
    return response.to_lambda()
