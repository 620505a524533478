"""DynamoDB Streams consumer of the items table: every change to every subscribed connection.

The whole batch is delivered at once (``BroadcastService.deliver_batch``), posted here or, when it is large,
by the fan-out tier (``fanout.py``). The records from the first one some connection did not get (or the
first that could not be read) are reported as failed, so Lambda retries them, in order.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from iii_stream import wiring
from iii_stream.adapters.item_changes import change_from_record
from iii_stream.core.changes import Change

logger = Logger(service="iii-stream")
metrics = Metrics(service="iii-stream")


def _changes(records: list[dict[str, Any]]) -> tuple[list[Change | None], int | None]:
    """The records' changes, up to the first record that cannot be read (its index, or None)."""
    changes: list[Change | None] = []
    for index, record in enumerate(records):
        try:
            changes.append(change_from_record(record))
        except Exception:  # a poison record: it and every later one are retried, then set aside by Lambda
            event_id = record.get("eventID") if isinstance(record, dict) else None
            logger.exception("unreadable stream record", extra={"event_id": event_id})
            return changes, index
    return changes, None


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    records: list[dict[str, Any]] = event.get("Records") or []
    metrics.add_metric(name="StreamRecords", unit=MetricUnit.Count, value=len(records))
    service = wiring.broadcast_service()
    service.new_batch()
    changes, failed_at = _changes(records)
    try:
        delivery = service.deliver_batch(changes)
    except Exception:
        logger.exception("broadcast failed", extra={"records": len(records)})
        failed_at = 0
    else:
        if delivery.failed_at is not None:
            logger.warning("changes not delivered", extra={"from_record": delivery.failed_at, "error": delivery.error})
            failed_at = delivery.failed_at if failed_at is None else min(failed_at, delivery.failed_at)
        metrics.add_metric(name="FramesPosted", unit=MetricUnit.Count, value=delivery.sent)
        metrics.add_metric(name="PostsThrottled", unit=MetricUnit.Count, value=delivery.throttled)
        metrics.add_metric(name="FanoutInvocations", unit=MetricUnit.Count, value=delivery.chunks)
        if delivery.gone:
            metrics.add_metric(name="ConnectionsGone", unit=MetricUnit.Count, value=len(delivery.gone))
    failed = records[failed_at:] if failed_at is not None else []
    if failed:
        metrics.add_metric(name="ChangesNotDelivered", unit=MetricUnit.Count, value=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": _sequence_number(record)} for record in failed]}


def _sequence_number(record: Any) -> str:
    body = record.get("dynamodb") if isinstance(record, dict) else None
    return str(body.get("SequenceNumber", "")) if isinstance(body, dict) else ""
