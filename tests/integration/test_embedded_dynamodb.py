"""The embedded DynamoDB (``infra.embedded_dynamodb``, what ``iii-stream local`` serves): each request atomic under
concurrency, and stream records trimmed behind the local stream pumps, with every change still delivered."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from iii_stream.infra import embedded_dynamodb
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB, check_moto_stream_layout
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.stream_pump import StreamPump
from iii_stream.infra.template import create_tables
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import StreamShard
from moto.dynamodbstreams.models import dynamodbstreams_backends

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})  # an internal error must not be hidden


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = EmbeddedDynamoDB()
    yield server.start()
    server.stop()


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads as often as ``iii-stream local`` does (service.py), which makes races in moto show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(before)


def dynamodb(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, config=NO_RETRIES)


def streams(endpoint: str) -> Any:
    return boto3.client(
        "dynamodbstreams",
        endpoint_url=endpoint,
        config=NO_RETRIES.merge(Config(account_id_endpoint_mode="disabled")),
    )


def new_table(endpoint: str) -> tuple[str, str]:
    """A fresh items table (its stream: NEW_AND_OLD_IMAGES); its name and stream ARN."""
    name = f"embedded-{uuid.uuid4().hex[:10]}"
    client = dynamodb(endpoint)
    create_tables(client, {"ItemsTable": name})
    return name, client.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def shard_of(table: str) -> StreamShard:
    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[table].stream_shard
    assert shard is not None
    return shard


def key(n: int = 0) -> dict[str, Any]:
    return {"pk": {"S": "counter"}, "sk": {"S": f"#{n}"}}


def count_of(image: dict[str, Any]) -> int:
    return int(image["n"]["N"])


class StreamReader:
    """Reads a stream from its trim horizon in a thread until told to stop (then until it is drained)."""

    def __init__(self, endpoint: str, stream_arn: str) -> None:
        self.client = streams(endpoint)
        shard = self.client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.records: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream-reader", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                page = self.client.get_records(ShardIterator=self.iterator, Limit=50)
                self.iterator = page["NextShardIterator"]
                self.records.extend(page["Records"])
                if not page["Records"]:
                    if self.stopping.is_set():
                        return
                    time.sleep(0.005)
        except BaseException as error:  # noqa: BLE001 - surfaced to the test thread
            self.errors.append(error)


# --- each request atomic ----------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("eager_thread_switches")
def test_concurrent_conditional_updates_and_puts_keep_every_increment_and_a_gapless_stream(endpoint: str) -> None:
    # GIVEN one item with a count, and a reader following the table's stream
    table, stream_arn = new_table(endpoint)
    dynamodb(endpoint).put_item(TableName=table, Item={**key(), "n": {"N": "0"}, "tag": {"S": "start"}})
    reader = StreamReader(endpoint, stream_arn)
    reader.thread.start()
    incrementers, increments_each, putters, puts_each = 6, 30, 3, 20
    errors: list[BaseException] = []
    olds: list[int] = []
    puts_done: list[int] = []
    start = threading.Barrier(incrementers + putters)

    def increment() -> None:
        client = dynamodb(endpoint)
        start.wait()
        try:
            for _ in range(increments_each):
                answer = client.update_item(
                    TableName=table,
                    Key=key(),
                    UpdateExpression="ADD n :one",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                    ReturnValues="ALL_OLD",
                )
                olds.append(count_of(answer["Attributes"]))
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    def put(worker: int) -> None:
        """Rewrite the item with the count it read (a conditional put: it must not undo an increment)."""
        client = dynamodb(endpoint)
        start.wait()
        try:
            done = 0
            while done < puts_each:
                seen = client.get_item(TableName=table, Key=key(), ConsistentRead=True)["Item"]["n"]
                try:
                    client.put_item(
                        TableName=table,
                        Item={**key(), "n": seen, "tag": {"S": f"put-{worker}-{done}"}},
                        ConditionExpression="n = :seen",
                        ExpressionAttributeValues={":seen": seen},
                    )
                    done += 1
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
            puts_done.append(done)
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    # WHEN incrementers and putters write the same item at once, while the stream is read
    pool = [threading.Thread(target=increment) for _ in range(incrementers)]
    pool += [threading.Thread(target=put, args=(n,)) for n in range(putters)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    reader.stopping.set()
    reader.thread.join(timeout=30)

    # THEN no request failed, and every increment landed exactly once
    assert not errors, errors[:3]
    assert not reader.errors, reader.errors[:3]
    total = incrementers * increments_each
    final = dynamodb(endpoint).get_item(TableName=table, Key=key(), ConsistentRead=True)["Item"]
    assert count_of(final) == total
    # ... each answered the count it replaced (no stale ReturnValues): every count from 0 to total - 1, once
    assert sorted(olds) == list(range(total))
    # ... and the stream is one chain: INSERT, then each MODIFY's OldImage is the previous NewImage
    records = reader.records
    assert len(records) == 1 + total + putters * puts_each
    assert [r["eventName"] for r in records] == ["INSERT"] + ["MODIFY"] * (len(records) - 1)
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert numbers == list(range(numbers[0], numbers[0] + len(records)))
    for previous, record in zip(records, records[1:], strict=False):
        assert record["dynamodb"]["OldImage"] == previous["dynamodb"]["NewImage"], record["dynamodb"]["SequenceNumber"]
    # ... in which the increments are the steps of one, the puts steps of none
    steps = [count_of(r["dynamodb"]["NewImage"]) - count_of(r["dynamodb"]["OldImage"]) for r in records[1:]]
    assert steps.count(1) == total and steps.count(0) == putters * puts_each


@pytest.mark.usefixtures("eager_thread_switches")
def test_reads_while_items_change_shape_do_not_fail(endpoint: str) -> None:
    # GIVEN a few items whose attributes come and go (moto changes an item's dict in place) while they are read
    table, _ = new_table(endpoint)
    for n in range(4):
        dynamodb(endpoint).put_item(TableName=table, Item={**key(n), "n": {"N": "0"}})
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        client = dynamodb(endpoint)
        try:
            while not stop.is_set():
                client.scan(TableName=table)
                client.get_item(TableName=table, Key=key(0))
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    def reshape(worker: int) -> None:
        client = dynamodb(endpoint)
        try:
            for n in range(150):
                names = {"#a": f"a{worker}_{n % 5}"}
                client.update_item(
                    TableName=table,
                    Key=key(0),
                    UpdateExpression="SET #a = :v ADD n :one",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":v": {"S": "x"}, ":one": {"N": "1"}},
                )
                client.update_item(
                    TableName=table, Key=key(0), UpdateExpression="REMOVE #a", ExpressionAttributeNames=names
                )
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=reshape, args=(n,)) for n in range(4)]
    # WHEN they run at once
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=30)
    # THEN every request was answered, and every increment landed
    assert not errors, errors[:3]
    items = dynamodb(endpoint).scan(TableName=table)["Items"]
    assert sum(count_of(item) for item in items) == 4 * 150
    assert all(set(item) == {"pk", "sk", "n"} for item in items)


# --- stream records trimmed behind the pumps ----------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.records.extend(event["Records"])
        return {"batchItemFailures": []}

    def numbers(self) -> list[int]:
        return [int(r["dynamodb"]["SequenceNumber"]) for r in self.records]


def pump(endpoint: str, stream_arn: str, handler: Recorder, start: str = "LATEST") -> StreamPump:
    return StreamPump(
        streams(endpoint),
        stream_arn,
        handler,
        start=start,
        batch_size=25,
        context_factory=lambda: LocalLambdaContext("trim-test"),
    )


def write(endpoint: str, table: str, count: int, first: int = 0) -> None:
    client = dynamodb(endpoint)
    for n in range(first, first + count):
        client.put_item(TableName=table, Item={**key(n % 7), "n": {"N": str(n)}, "pad": {"S": "x" * 200}})


def test_the_shard_keeps_only_what_a_pump_has_not_read_and_the_pumps_get_every_change(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two pumps on a table's stream, as ``iii-stream local`` runs them (broadcast and dispatch); used
    # iterators not kept for a retry, so what both read is trimmed at once
    monkeypatch.setattr(embedded_dynamodb, "ITERATOR_REUSE_SECONDS", 0.0)
    table, stream_arn = new_table(endpoint)
    fast, slow = Recorder(), Recorder()
    fast_pump, slow_pump = pump(endpoint, stream_arn, fast), pump(endpoint, stream_arn, slow)
    shard = shard_of(table)
    writes = 600
    # WHEN many writes are made and the fast pump keeps up while the slow one does not read
    for batch in range(writes // 50):
        write(endpoint, table, 50, first=batch * 50)
        fast_pump.drain()
    # THEN the shard keeps what the slow pump has not read: every record
    assert len(shard.items) == writes
    # WHEN the slow pump catches up too
    slow_pump.drain()
    fast_pump.drain()
    # THEN both got every change, once and in order, and the shard keeps a bounded number of records
    assert len(fast.records) == len(slow.records) == writes
    assert fast.numbers() == slow.numbers() == list(range(fast.numbers()[0], fast.numbers()[0] + writes))
    assert [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in fast.records] == list(range(writes))
    assert len(shard.items) == 0
    # ... and sequence numbers go on from where they were
    write(endpoint, table, 30, first=writes)
    fast_pump.drain()
    slow_pump.drain()
    base = fast.numbers()[0]
    assert fast.numbers() == slow.numbers() == list(range(base, base + writes + 30))
    assert len(shard.items) == 0


def test_under_steady_writes_the_shard_and_the_iterators_stay_bounded(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pump running as in the local service (woken by writes) and used iterators not kept for reuse
    monkeypatch.setattr(embedded_dynamodb, "ITERATOR_REUSE_SECONDS", 0.0)
    table, stream_arn = new_table(endpoint)
    recorder = Recorder()
    running = pump(endpoint, stream_arn, recorder)
    embedded_dynamodb.on_write(running.wake)
    thread = threading.Thread(target=running.run, kwargs={"idle_poll_seconds": 0.05}, daemon=True)
    thread.start()
    shard = shard_of(table)
    iterators = dynamodbstreams_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].shard_iterators
    most_records = 0
    try:
        # WHEN 1,000 writes are made
        for batch in range(20):
            write(endpoint, table, 50, first=batch * 50)
            most_records = max(most_records, len(shard.items))
        deadline = time.monotonic() + 30
        while len(recorder.records) < 1000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        running.stop()
        embedded_dynamodb.remove_write_listener(running.wake)
        thread.join(timeout=10)
    # THEN the pump delivered every change, and the shard never held more than a few pages of records
    assert [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in recorder.records] == list(range(1000))
    assert most_records < 300, most_records
    assert len(shard.items) < 50
    # ... nor does moto keep an iterator per GetRecords call (only the readers' and those recently used)
    assert len(iterators) < 50, len(iterators)


def test_a_trimmed_position_reads_from_the_oldest_record_kept(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN 40 writes, and a pump that has read the first 30 (the only reader: what it read is trimmed, its used
    # iterators not kept for a retry)
    monkeypatch.setattr(embedded_dynamodb, "ITERATOR_REUSE_SECONDS", 0.0)
    table, stream_arn = new_table(endpoint)
    recorder = Recorder()
    reader = pump(endpoint, stream_arn, recorder, start="TRIM_HORIZON")
    write(endpoint, table, 30)
    reader.drain()
    write(endpoint, table, 10, first=30)
    client = streams(endpoint)
    shard_id = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    first = recorder.numbers()[0]
    assert len(shard_of(table).items) == 10

    def read(kind: str, **extra: Any) -> list[int]:
        iterator = client.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType=kind, **extra)
        page = client.get_records(ShardIterator=iterator["ShardIterator"])
        return [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]

    expected_rest = list(range(first + 30, first + 40))
    # WHEN iterators are asked for at the horizon, and at or after a trimmed record
    # THEN each reads from the oldest record kept, numbered as when it was written
    assert read("TRIM_HORIZON") == expected_rest
    assert read("AT_SEQUENCE_NUMBER", SequenceNumber=str(first)) == expected_rest
    assert read("AFTER_SEQUENCE_NUMBER", SequenceNumber=str(first + 5)) == expected_rest
    assert read("AT_SEQUENCE_NUMBER", SequenceNumber=str(first + 35)) == expected_rest[5:]
    # ... and the shard still says where it started
    shard = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    assert shard["SequenceNumberRange"]["StartingSequenceNumber"] == str(first)
    # ... and the pump goes on with the rest
    reader.drain()
    assert recorder.numbers() == list(range(first, first + 40))


def test_a_used_iterator_expires_and_a_pump_whose_iterator_expired_carries_on(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pump that has read 5 records, and iterators that expire at once (used) or within a second (unused)
    table, stream_arn = new_table(endpoint)
    recorder = Recorder()
    reader = pump(endpoint, stream_arn, recorder)
    write(endpoint, table, 5)
    client = streams(endpoint)
    used = reader._iterators[next(iter(reader._iterators))]
    reader.drain()
    monkeypatch.setattr(embedded_dynamodb, "ITERATOR_REUSE_SECONDS", 0.0)
    monkeypatch.setattr(embedded_dynamodb, "ITERATOR_LIFETIME_SECONDS", 0.0)
    time.sleep(1.1)  # unused iterators are swept at most once a second
    write(endpoint, table, 5, first=5)
    # WHEN a used iterator is used again
    with pytest.raises(ClientError) as raised:
        client.get_records(ShardIterator=used)
    # THEN it has expired, as on DynamoDB
    assert raised.value.response["Error"]["Code"] == "ExpiredIteratorException"
    # WHEN the pump reads with its own iterator, expired too
    reader.drain()
    # THEN it went on after the last record it read: every record once, in order
    assert [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in recorder.records] == list(range(10))


def test_the_moto_layout_the_trimming_relies_on_is_checked() -> None:
    check_moto_stream_layout()  # what EmbeddedDynamoDB() runs at startup: raises on a moto that differs


def test_a_get_records_retried_with_the_same_iterator_gets_the_same_records(endpoint: str) -> None:
    # GIVEN a table with 5 changes and a reader that read them (the only reader of its shard)
    table, stream_arn = new_table(endpoint)
    client = dynamodb(endpoint)
    for n in range(5):
        client.put_item(TableName=table, Item={**key(), "n": {"N": str(n)}})
    reader = streams(endpoint)
    shard = reader.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = reader.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    first = reader.get_records(ShardIterator=iterator)
    # WHEN its answer is taken as lost: the next page is read, then the same iterator is used again (a retry)
    reader.get_records(ShardIterator=first["NextShardIterator"])
    again = reader.get_records(ShardIterator=iterator)
    # THEN the retry got the same records, as DynamoDB answers it (nothing trimmed from under it)
    numbers = [record["dynamodb"]["SequenceNumber"] for record in first["Records"]]
    assert len(numbers) == 5
    assert [record["dynamodb"]["SequenceNumber"] for record in again["Records"]] == numbers
