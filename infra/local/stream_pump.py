"""Read a DynamoDB stream (moto's or any) and call a handler with Lambda's exact event, as an event source mapping.

Honours ``ReportBatchItemFailures``: a batch is retried from its lowest failed sequence number, at
most ``max_retries`` times; then the failed records are set aside (``dropped``), as an on-failure
destination would receive them. Never create a real event source mapping under moto: it empties the
stream (aws-local-tooling.md 4).

Where the pump stands is the iterator it holds: it asks for the next page only once the last one is delivered
(or set aside), so the embedded DynamoDB may trim every record before it (infra/embedded_dynamodb.py). An
iterator that has expired (or whose records were trimmed, on DynamoDB) is replaced by one after the last record
read, as an event source mapping does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger("iii_stream.local.pump")

Handler = Callable[[dict[str, Any], Any], Any]


def lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda delivers it (epoch-second times, the stream ARN added)."""
    body = dict(record["dynamodb"])
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        body["ApproximateCreationDateTime"] = int(created.timestamp())
    elif isinstance(created, float):
        body["ApproximateCreationDateTime"] = int(created)
    out: dict[str, Any] = {
        key: record[key] for key in ("eventID", "eventName", "eventVersion", "eventSource") if key in record
    }
    out.update(awsRegion=region, dynamodb=body, eventSourceARN=stream_arn)
    if "userIdentity" in record:
        out["userIdentity"] = {
            "type": record["userIdentity"].get("Type"),
            "principalId": record["userIdentity"].get("PrincipalId"),
        }
    return out


class StreamPump:
    """Drains a stream into a handler; ``drain()`` once (tests) or ``run()`` in a thread (the local service)."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        handler: Handler,
        *,
        context_factory: Callable[[], Any],
        batch_size: int = 100,
        max_retries: int = 3,
        region: str = "us-east-1",
        start: str = "TRIM_HORIZON",
    ) -> None:
        self._client = streams_client
        self.stream_arn = stream_arn
        self._handler = handler
        self._context = context_factory
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._region = region
        self.dropped: list[dict[str, Any]] = []
        self.delivered = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._start = start
        self._last_read: dict[str, str] = {}  # shard -> the sequence number of the last record read
        shards = streams_client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self._iterators = {shard["ShardId"]: self._iterator(shard["ShardId"], start) for shard in shards}

    def _iterator(self, shard: str, kind: str, sequence_number: str | None = None) -> str:
        request = {"StreamArn": self.stream_arn, "ShardId": shard, "ShardIteratorType": kind}
        if sequence_number is not None:
            request["SequenceNumber"] = sequence_number
        iterator: str = self._client.get_shard_iterator(**request)["ShardIterator"]
        return iterator

    def drain(self) -> int:
        """Deliver everything written so far; return how many records the handler accepted."""
        accepted = 0
        try:
            for shard in list(self._iterators):
                while True:
                    response = self._get_records(shard)
                    records = [lambda_record(r, self.stream_arn, self._region) for r in response["Records"]]
                    # Kept at once: a page is read once, whatever happens to its delivery or to the next read.
                    self._iterators[shard] = response.get("NextShardIterator") or self._iterators[shard]
                    if not records:
                        break
                    self._last_read[shard] = records[-1]["dynamodb"]["SequenceNumber"]
                    accepted += self._deliver(records)
        finally:
            self.delivered += accepted
        return accepted

    def _get_records(self, shard: str) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.get_records(
                ShardIterator=self._iterators[shard], Limit=self._batch_size
            )
            return response
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                raise
        # As an event source mapping: carry on after the last record read (from the trim horizon if that is gone).
        last = self._last_read.get(shard)
        log.warning("%s on %s: a new iterator after %s", code, shard, last or self._start)
        try:
            self._iterators[shard] = (
                self._iterator(shard, "AFTER_SEQUENCE_NUMBER", last) if last else self._iterator(shard, self._start)
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TrimmedDataAccessException":
                raise
            self._iterators[shard] = self._iterator(shard, "TRIM_HORIZON")
        response = self._client.get_records(ShardIterator=self._iterators[shard], Limit=self._batch_size)
        return response

    def _deliver(self, records: list[dict[str, Any]]) -> int:
        done, attempt = 0, 0
        while records:
            try:
                result = self._handler({"Records": records}, self._context()) or {}
                failures = [f.get("itemIdentifier") for f in result.get("batchItemFailures") or []]
            except Exception:  # noqa: BLE001 - a raising handler fails the whole batch, as on Lambda
                log.exception("handler failed the whole batch")
                failures = [records[0]["dynamodb"]["SequenceNumber"]]
            if not failures:
                return done + len(records)
            first = min(int(f) if f else 0 for f in failures) or int(records[0]["dynamodb"]["SequenceNumber"])
            done += sum(1 for r in records if int(r["dynamodb"]["SequenceNumber"]) < first)
            records = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= first]
            attempt += 1
            if attempt > self._max_retries:
                log.error("set aside %d record(s) after %d retries", len(records), self._max_retries)
                self.dropped.extend(records)
                return done
        return done

    def wake(self) -> None:
        """Tell the pump something was written (it also polls, in case nobody says)."""
        self._wake.set()

    def run(self, idle_poll_seconds: float = 0.25, settle_seconds: float = 0.0) -> None:
        """Drain until stopped; after a wake-up, wait ``settle_seconds`` first (to yield to a more urgent pump)."""
        while not self._stopped.is_set():
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - keep pumping; the error is logged
                log.exception("stream pump failed")
            if self._wake.wait(idle_poll_seconds) and settle_seconds:
                self._stopped.wait(settle_seconds)
            self._wake.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
