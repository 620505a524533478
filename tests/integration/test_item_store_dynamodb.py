"""The DynamoDB item store on moto: paging, request counts, failures, the change feed, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from iii_stream.adapters.dynamodb_items import DynamoItemStore
from iii_stream.core.clock import SystemClock
from iii_stream.core.errors import StreamError
from iii_stream.core.service import STREAM_FUNCTIONS, StreamService
from iii_stream.infra import botocore_answers
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.template import create_tables

from tests.fakes import FixedClock
from tests.integration.conftest import ITEMS_TABLE, RequestCounter

pytestmark = pytest.mark.integration


@pytest.fixture
def service(dynamodb: Any) -> StreamService:
    return StreamService(DynamoItemStore(dynamodb, ITEMS_TABLE), FixedClock())


def call(service: StreamService, function_id: str, **payload: Any) -> Any:
    return STREAM_FUNCTIONS.call(service, function_id, payload)


KEY = {"stream_name": "s", "group_id": "g", "item_id": "i"}


class TestRequestCounts:
    def test_set_and_get_cost_one_request_each(self, dynamodb: Any, service: StreamService) -> None:
        counter = RequestCounter(dynamodb)
        call(service, "stream::set", **KEY, data={"a": 1})
        assert dict(counter.calls) == {"UpdateItem": 1}
        counter.reset()
        service._clock.advance(1)  # type: ignore[attr-defined]
        call(service, "stream::set", **KEY, data={"a": 2})
        assert dict(counter.calls) == {"UpdateItem": 1}
        counter.reset()
        call(service, "stream::get", **KEY)
        assert dict(counter.calls) == {"GetItem": 1}

    def test_delete_send_and_update_request_counts(self, dynamodb: Any, service: StreamService) -> None:
        call(service, "stream::set", **KEY, data={"a": 1})
        counter = RequestCounter(dynamodb)
        call(service, "stream::update", **KEY, ops=[{"type": "increment", "path": "a", "by": 1}])
        assert dict(counter.calls) == {"GetItem": 1, "PutItem": 1}
        counter.reset()
        call(service, "stream::send", stream_name="s", group_id="g", type="t", data=1)
        assert dict(counter.calls) == {"PutItem": 1}
        counter.reset()
        service._clock.advance(10)  # type: ignore[attr-defined]  # (in the ms of the last write: a second try)
        call(service, "stream::delete", **KEY)
        assert dict(counter.calls) == {"UpdateItem": 1}  # the tombstone


def test_list_returns_every_item_across_one_megabyte_pages(dynamodb: Any, service: StreamService) -> None:
    # GIVEN 30 items of ~100 KB: about 3 MB, so DynamoDB (and moto) must page the Query
    blob = "x" * 100_000
    for n in range(30):
        call(service, "stream::set", stream_name="s", group_id="big", item_id=f"{n:03d}", data={"n": n, "b": blob})
    counter = RequestCounter(dynamodb)
    # WHEN the group is listed
    values = call(service, "stream::list", stream_name="s", group_id="big")
    # THEN every item comes back, in item-id order, and it took more than one page
    assert [v["n"] for v in values] == list(range(30))
    assert counter.calls["Query"] >= 3


def test_list_groups_skips_through_many_groups_without_a_scan(dynamodb: Any, service: StreamService) -> None:
    for group in range(40):
        for item in range(3):
            call(service, "stream::set", stream_name="s", group_id=f"g{group:02d}", item_id=str(item), data=item)
    counter = RequestCounter(dynamodb)
    assert call(service, "stream::list_groups", stream_name="s") == [f"g{n:02d}" for n in range(40)]
    assert "Scan" not in counter.calls


class TestStoreFailures:
    """moto does not fail on its own: the fault is injected at the client boundary (a botocore hook)."""

    @pytest.fixture
    def failing(self, dynamodb: Any) -> Iterator[None]:
        def throttle(**_: Any) -> tuple[Any, dict[str, Any]]:
            return botocore_answers.error(500, "InternalServerError", "injected fault")

        dynamodb.meta.events.register_first("before-call.dynamodb.*", throttle, unique_id="inject-fault")
        yield
        dynamodb.meta.events.unregister("before-call.dynamodb.*", unique_id="inject-fault")

    @pytest.mark.parametrize(
        ("function_id", "payload", "code", "prefix"),
        [
            ("stream::set", {**KEY, "data": 1}, "STREAM_SET_ERROR", "Failed to set value: "),
            ("stream::get", KEY, "STREAM_GET_ERROR", "Failed to get value: "),
            ("stream::delete", KEY, "STREAM_DELETE_ERROR", "Failed to delete value: "),
            ("stream::update", {**KEY, "ops": []}, "STREAM_UPDATE_ERROR", "Failed to update value: "),
            ("stream::list", {"stream_name": "s", "group_id": "g"}, "STREAM_GET_GROUP_ERROR", "Failed to get group: "),
            ("stream::list_groups", {"stream_name": "s"}, "STREAM_LIST_GROUPS_ERROR", "Failed to list groups: "),
            ("stream::list_all", {}, "STREAM_LIST_ALL_ERROR", "Failed to list stream: "),
            (
                "stream::send",
                {"stream_name": "s", "group_id": "g", "type": "t", "data": 1},
                "STREAM_SEND_ERROR",
                "Failed to send event: ",
            ),
        ],
    )
    def test_dynamodb_failure_maps_to_the_functions_error_code(
        self,
        service: StreamService,
        failing: None,
        function_id: str,
        payload: dict[str, Any],
        code: str,
        prefix: str,
    ) -> None:
        with pytest.raises(StreamError) as caught:
            STREAM_FUNCTIONS.call(service, function_id, payload)
        assert caught.value.code == code
        assert caught.value.message.startswith(prefix)
        assert "InternalServerError" in caught.value.message


def test_bad_input_writes_nothing(dynamodb: Any, service: StreamService) -> None:
    counter = RequestCounter(dynamodb)
    for payload in [{**KEY}, {**KEY, "data": 1, "item_id": 7}, {**KEY, "ops": [{"type": "increment", "path": "a"}]}]:
        for function_id in ("stream::set", "stream::update"):
            with pytest.raises(StreamError):
                STREAM_FUNCTIONS.call(service, function_id, payload)
    assert counter.total() == 0
    assert dynamodb.scan(TableName=ITEMS_TABLE)["Count"] == 0


def _stream_records(dynamodb: Any) -> list[dict[str, Any]]:
    arn = dynamodb.describe_table(TableName=ITEMS_TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]  # type: ignore[no-any-return]


def test_writes_and_sends_reach_one_ordered_change_feed(dynamodb: Any, service: StreamService) -> None:
    # WHEN an item is created, updated, an event is sent, and the item is deleted
    call(service, "stream::set", **KEY, data={"n": 1})
    call(service, "stream::update", **KEY, ops=[{"type": "increment", "path": "n", "by": 1}])
    call(service, "stream::send", stream_name="s", group_id="g", type="typing", data={"who": "ana"}, id="i")
    call(service, "stream::delete", **KEY)
    # THEN the table's stream holds the four changes in order, with full images (a delete writes a tombstone).
    # moto quirk: an UpdateItem that creates an item first emits a keys-only INSERT (real DynamoDB
    # does not); consumers skip records without data, and so does this check.
    records = [
        r
        for r in _stream_records(dynamodb)
        if "data" in r["dynamodb"].get("NewImage", r["dynamodb"].get("OldImage", {}))
    ]
    records += [
        r for r in _stream_records(dynamodb) if r["eventName"] == "MODIFY" and "data" not in r["dynamodb"]["NewImage"]
    ]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT", "MODIFY"]
    event = records[2]["dynamodb"]["NewImage"]
    assert event["kind"] == {"S": "event"}
    assert event["event_type"] == {"S": "typing"} and event["event_id"] == {"S": "i"}
    assert event["data"] == {"S": '{"who":"ana"}'}
    assert int(event["expires_at"]["N"]) > int(event["ts"]["N"]) // 1000
    assert records[1]["dynamodb"]["NewImage"]["version"] == {"N": "2"}
    assert records[3]["dynamodb"]["OldImage"]["data"] == {"S": '{"n":2}'}


def test_delete_leaves_a_tombstone_so_a_re_create_continues_its_timestamps(dynamodb: Any) -> None:
    # GIVEN a writer whose clock does not move
    clock = FixedClock()
    service = StreamService(DynamoItemStore(dynamodb, ITEMS_TABLE), clock)
    store = DynamoItemStore(dynamodb, ITEMS_TABLE)
    from iii_stream.core.ports import ItemAddress

    address = ItemAddress(**KEY)
    # WHEN it sets, deletes and re-creates one item within one millisecond
    call(service, "stream::set", **KEY, data=1)
    first = store.get(address)
    assert call(service, "stream::delete", **KEY) == {"old_value": 1}
    tombstone = store.get(address)
    assert call(service, "stream::delete", **KEY) == {"old_value": None}
    assert call(service, "stream::set", **KEY, data=2) == {"old_value": None, "new_value": 2}
    again = store.get(address)
    # THEN every stamp is later than the one before, and the tombstone is invisible to every read
    assert first is not None and tombstone is not None and again is not None
    assert tombstone.deleted and first.ts < tombstone.ts < again.ts
    assert first.version < tombstone.version < again.version
    call(service, "stream::delete", **KEY)
    assert call(service, "stream::get", **KEY) is None
    assert call(service, "stream::list", stream_name="s", group_id="g") == []
    assert call(service, "stream::list_groups", stream_name="s") == []
    assert call(service, "stream::list_all") == {"stream": [], "count": 0}


def test_failed_put_race_moves_the_timestamp_past_the_stored_one(dynamodb: Any) -> None:
    # GIVEN an item stamped in the future by another writer's clock
    ahead, behind = FixedClock(2_000_000_000_000), FixedClock(1_000_000_000_000)
    call(StreamService(DynamoItemStore(dynamodb, ITEMS_TABLE), ahead), "stream::set", **KEY, data=1)
    counter = RequestCounter(dynamodb)
    # WHEN a writer with a slow clock sets it
    result = call(StreamService(DynamoItemStore(dynamodb, ITEMS_TABLE), behind), "stream::set", **KEY, data=2)
    # THEN it still wins, one ms after the stored timestamp, at the cost of one retried request
    assert dict(counter.calls) == {"UpdateItem": 2}
    item = dynamodb.get_item(TableName=ITEMS_TABLE, Key={"pk": {"S": 'I["s","g"]'}, "sk": {"S": "#i"}})["Item"]
    assert result == {"old_value": 1, "new_value": 2}
    assert item["ts"] == {"N": "2000000000001"} and item["version"] == {"N": "2"}


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = EmbeddedDynamoDB()
    endpoint = server.start()
    yield endpoint
    server.stop()


def test_concurrent_updates_over_real_sockets_never_lose_a_write(moto_server: str) -> None:
    # GIVEN a moto server on loopback and 8 threads, each with its own client and service
    table = "concurrency-items"
    admin = boto3.client("dynamodb", endpoint_url=moto_server)
    create_tables(admin, {"ItemsTable": table})
    threads, per_thread = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker() -> None:
        client = boto3.client("dynamodb", endpoint_url=moto_server)
        service = StreamService(DynamoItemStore(client, table), SystemClock())
        start.wait()
        try:
            for _ in range(per_thread):
                call(
                    service,
                    "stream::update",
                    **KEY,
                    ops=[
                        {"type": "increment", "path": "n", "by": 1},
                        {"type": "append", "path": "log", "value": 1},
                    ],
                )
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test thread below
            errors.append(exc)

    # WHEN they all increment one item at once
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=90)
    # THEN every increment and append landed exactly once
    assert not errors
    final = call(StreamService(DynamoItemStore(admin, table), SystemClock()), "stream::get", **KEY)
    assert final["n"] == threads * per_thread
    assert len(final["log"]) == threads * per_thread
