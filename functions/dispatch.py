"""DynamoDB Streams consumer of the items table: runs the ``stream`` triggers of each change, once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from iii_stream import wiring
from iii_stream.adapters.item_changes import change_from_record

logger = Logger(service="iii-stream")
metrics = Metrics(service="iii-stream")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def record_handler(record: DynamoDBRecord) -> None:
    change = change_from_record(record.raw_event)
    if change is None:
        return
    # The record's eventID identifies the change across redeliveries of the batch.
    invoked = wiring.dispatcher().dispatch(change, record.event_id or record.dynamodb.sequence_number)  # type: ignore[union-attr,arg-type]
    metrics.add_metric(name="HandlersInvoked", unit=MetricUnit.Count, value=invoked)
    if invoked:
        logger.debug("dispatched", extra={"stream": change.stream_name, "group": change.group_id, "handlers": invoked})


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="StreamRecords", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    # One failing record does not stop later ones: each (change, trigger) is claimed separately, and
    # a retried record skips the handlers it already reached.
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
