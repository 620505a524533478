"""Read a DynamoDB stream (moto's or any) and call a handler with Lambda's exact event, as an event source mapping.

Honours ``ReportBatchItemFailures``: a batch is retried from its lowest failed sequence number, at
most ``max_retries`` times; then the failed records are set aside (``dropped``), as an on-failure
destination would receive them. Never create a real event source mapping under moto: it empties the
stream (aws-local-tooling.md 4).

Where the pump stands is the iterator it holds: it asks for the next page only once the last one is delivered
(or set aside), so the embedded DynamoDB may trim every record before it (infra/embedded_dynamodb.py). An
iterator that has expired (or whose records were trimmed, on DynamoDB) is replaced by one after the last record
read, as an event source mapping does.

One log line per handler call (per batch): the pump's name, how many records, the duration and the outcome; a
failure names the first record retried (eventID, event name, its item: stream, group and item) and why (what the
handler raised, or, for the records its ``batchItemFailures`` named, what ``reasons()`` says about them). Records set
aside are logged one by one (the first ten of a batch), each with its change and its reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger("iii_stream.local.pump")

Handler = Callable[[dict[str, Any], Any], Any]
# Why the records of the last batch failed, by sequence number (for what the handler's answer does not say).
Reasons = Callable[[], dict[str, str]]
_SET_ASIDE_LINES = 10  # records set aside logged one by one, per batch
_MAX_REASON = 300


def describe_record(record: dict[str, Any]) -> str:
    """``eventID …, INSERT, stream "s" group "g" item "i"`` (the items table's key read back), or the raw key."""
    body = record.get("dynamodb")
    return f"eventID {record.get('eventID', '?')}, {record.get('eventName', '?')}, {_key_text(body)}"


def _key_text(body: Any) -> str:
    """The change's item (or ``stream::send`` event) named as the items table's key says, else the key itself."""
    from iii_stream.adapters.keys import EVENT_TAG, ITEM_TAG, parse_partition, unprefix

    keys = body.get("Keys") if isinstance(body, dict) else None
    if not isinstance(keys, dict):
        return "no key"
    pk, sk = (keys[name].get("S") if isinstance(keys.get(name), dict) else None for name in ("pk", "sk"))
    try:
        tag, stream_name, group_id = parse_partition(pk) if isinstance(pk, str) else ("", "", "")
    except (ValueError, TypeError):
        tag = ""
    if tag in (ITEM_TAG, EVENT_TAG) and isinstance(sk, str):
        names = [json.dumps(name, ensure_ascii=False) for name in (stream_name, group_id)]
        if tag == ITEM_TAG:
            return f"stream {names[0]} group {names[1]} item {json.dumps(unprefix(sk), ensure_ascii=False)}"
        return f"stream {names[0]} group {names[1]} event (sort key {sk})"
    return "key " + json.dumps(keys, ensure_ascii=False, separators=(",", ":"), default=str)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _reason(record: dict[str, Any], failures: list[Any], why: dict[str, str], raised: Exception | None) -> str:
    """Why ``record`` is retried (or set aside)."""
    if raised is not None:
        return _short(f"the handler raised {type(raised).__name__}: {raised}")
    sequence_number = str(record.get("dynamodb", {}).get("SequenceNumber", ""))
    if sequence_number in why:
        return _short(why[sequence_number])
    if sequence_number in {str(f) for f in failures}:
        return "named in the handler's batchItemFailures"
    return "after a failed record of its batch (retried from the first failure, as Lambda does)"


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
        name: str = "stream",
        reasons: Reasons | None = None,
    ) -> None:
        self._client = streams_client
        self.stream_arn = stream_arn
        self._handler = handler
        self.name = name  # in its log lines
        self._reasons = reasons
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

    def drain(self, short_page_ends: bool = False) -> int:
        """Deliver everything written so far; return how many records the handler accepted. An empty page ends it;
        with ``short_page_ends``, so does a page shorter than the batch size (for a stream whose every write wakes
        the pump, as the embedded DynamoDB's does: it saves reading an empty page after each write)."""
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
                    if short_page_ends and len(records) < self._batch_size:
                        break
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
            started = time.perf_counter()
            why: dict[str, str] = {}
            raised: Exception | None = None
            try:
                result = self._handler({"Records": records}, self._context()) or {}
                failures = [f.get("itemIdentifier") for f in result.get("batchItemFailures") or []]
                if failures and self._reasons is not None:
                    why = self._reasons()
            except Exception as exc:  # noqa: BLE001 - a raising handler fails the whole batch, as on Lambda
                raised, failures = exc, [records[0]["dynamodb"]["SequenceNumber"]]
            milliseconds = (time.perf_counter() - started) * 1000
            if not failures:
                log.info("pump %s %d record(s) %.1f ms -> ok", self.name, len(records), milliseconds)
                return done + len(records)
            count = len(records)
            first = min(int(f) if f else 0 for f in failures) or int(records[0]["dynamodb"]["SequenceNumber"])
            done += sum(1 for r in records if int(r["dynamodb"]["SequenceNumber"]) < first)
            records = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= first]
            attempt += 1
            reason = _reason(records[0], failures, why, raised) if records else "?"
            outcome = "raised" if raised is not None else f"{len(failures)} failed"
            log.warning(
                "pump %s %d record(s) %.1f ms -> %s (attempt %d of %d), from %s: %s",
                self.name,
                count,
                milliseconds,
                outcome,
                attempt,
                self._max_retries + 1,
                describe_record(records[0]) if records else "?",
                reason,
                exc_info=raised,
            )
            if attempt > self._max_retries:
                self._set_aside(records, failures, why, raised)
                return done
        return done

    def _set_aside(
        self, records: list[dict[str, Any]], failures: list[Any], why: dict[str, str], raised: Exception | None
    ) -> None:
        for record in records[:_SET_ASIDE_LINES]:
            log.error(
                "pump %s set aside %s after %d retries: %s",
                self.name,
                describe_record(record),
                self._max_retries,
                _reason(record, failures, why, raised),
            )
        if len(records) > _SET_ASIDE_LINES:
            log.error("pump %s set aside %d more record(s) of that batch", self.name, len(records) - _SET_ASIDE_LINES)
        self.dropped.extend(records)

    def wake(self) -> None:
        """Tell the pump something was written (it also polls, in case nobody says)."""
        self._wake.set()

    def run(self, idle_poll_seconds: float = 0.25, settle_seconds: float = 0.0, woken: bool = False) -> None:
        """Drain until stopped; after a wake-up, wait ``settle_seconds`` first (to yield to a more urgent pump).
        ``woken``: every write wakes this pump (``drain(short_page_ends=True)``). The wake-up is cleared before the
        drain, so a write that lands while it reads wakes the next one."""
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                self.drain(short_page_ends=woken)
            except Exception:  # noqa: BLE001 - keep pumping; the error is logged
                log.exception("stream pump failed")
            if self._wake.wait(idle_poll_seconds) and settle_seconds:
                self._stopped.wait(settle_seconds)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
