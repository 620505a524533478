"""DynamoDB Streams consumer of the items table (DispatchFunction): runs each change's ``stream`` triggers, once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
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
    change_id = record.event_id or (record.dynamodb.sequence_number if record.dynamodb else None)
    if change_id is None:
        raise ValueError("a stream record without an eventID or a sequence number")
    invoked = wiring.stream_triggers().run(change, change_id)
    metrics.add_metric(name="HandlersInvoked", unit=MetricUnit.Count, value=invoked)
    if invoked:
        logger.debug("dispatched", extra={"stream": change.stream_name, "group": change.group_id, "handlers": invoked})


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    records = event.get("Records") or []
    metrics.add_metric(name="StreamRecords", unit=MetricUnit.Count, value=len(records))
    readable = [r for r in records if isinstance(r, dict) and isinstance(r.get("dynamodb"), dict)]
    if len(readable) < len(records):  # Lambda never sends these; without a sequence number: retry the batch
        logger.error("a stream record that is not an object", extra={"records": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    if not records:
        return {"batchItemFailures": []}
    # One failing record does not stop later ones: each (change, trigger) is claimed separately, and
    # a retried record skips the handlers it already reached.
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
