"""DynamoDB Streams consumer of the items table: every change to every subscribed connection."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from iii_stream import wiring
from iii_stream.adapters.item_changes import change_from_record
from iii_stream.core.errors import PostError

logger = Logger(service="iii-stream")
metrics = Metrics(service="iii-stream")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class _InOrder:
    """Fail every record after the first failure, so a retry re-delivers them in their order."""

    failed = False


def record_handler(record: DynamoDBRecord) -> None:
    if _InOrder.failed:
        raise PostError("an earlier record of this batch failed")
    change = change_from_record(record.raw_event)
    if change is None:
        return
    try:
        delivery = wiring.broadcast_service().deliver(change)
    except PostError:
        _InOrder.failed = True
        metrics.add_metric(name="ChangesNotDelivered", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        _InOrder.failed = True
        raise
    metrics.add_metric(name="FramesPosted", unit=MetricUnit.Count, value=delivery.sent)
    if delivery.gone:
        metrics.add_metric(name="ConnectionsGone", unit=MetricUnit.Count, value=len(delivery.gone))
    logger.debug("delivered", extra={"stream": change.stream_name, "group": change.group_id, "sent": delivery.sent})


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    _InOrder.failed = False
    wiring.broadcast_service().new_batch()
    metrics.add_metric(name="StreamRecords", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
