"""The RegistryStore and TriggerLedger ports on DynamoDB (the Triggers table of template.yaml).

- functions: ``pk`` = ``F``, ``sk`` = function id; ``target``, ``description``;
- triggers: ``pk`` = ``T``, ``sk`` = trigger id; ``record`` (the trigger as JSON text);
- dispatch claims: ``pk`` = ``D`` + change id, ``sk`` = trigger id; ``status`` claimed/done, TTL a day.
Functions and triggers are few: each kind is one partition, read whole by one Query.
"""

from __future__ import annotations

import time
from typing import Any, Final

from iii_stream.adapters.dynamodb_common import mapped_errors, s
from iii_stream.core.errors import ConflictError
from iii_stream.core.registry import FunctionRecord, TriggerRecord

CLAIM_TTL_SECONDS: Final = 24 * 3600


class DynamoRegistryStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put_function(self, record: FunctionRecord) -> None:
        item = {
            "pk": s("F"),
            "sk": s(record.function_id),
            "target": s(record.target),
            "description": s(record.description),
        }
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=item)

    def delete_function(self, function_id: str) -> bool:
        return self._delete("F", function_id)

    def functions(self) -> list[FunctionRecord]:
        return [
            FunctionRecord(
                function_id=raw["sk"]["S"],
                target=raw["target"]["S"],
                description=raw.get("description", {}).get("S", ""),
            )
            for raw in self._partition("F")
        ]

    def put_trigger(self, record: TriggerRecord) -> None:
        item = {"pk": s("T"), "sk": s(record.trigger_id), "record": s(record.to_json())}
        with mapped_errors():
            self._client.put_item(TableName=self._table, Item=item)

    def delete_trigger(self, trigger_id: str) -> bool:
        return self._delete("T", trigger_id)

    def triggers(self) -> list[TriggerRecord]:
        records = [TriggerRecord.from_json(raw["record"]["S"]) for raw in self._partition("T")]
        return sorted(records, key=lambda record: (record.created_at, record.trigger_id))

    def _delete(self, pk: str, sk: str) -> bool:
        with mapped_errors():
            response = self._client.delete_item(
                TableName=self._table, Key={"pk": s(pk), "sk": s(sk)}, ReturnValues="ALL_OLD"
            )
        return bool(response.get("Attributes"))

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s(pk)},
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while True:
            with mapped_errors():
                page = self._client.query(**request)
            found.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoTriggerLedger:
    """Claims are conditional writes: a pair marked done is never taken again within a day."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _key(self, change_id: str, trigger_id: str) -> dict[str, Any]:
        return {"pk": s("D" + change_id), "sk": s(trigger_id)}

    def claim(self, change_id: str, trigger_id: str) -> bool:
        # A claim left "claimed" belongs to an attempt that died before invoking (a shard's batches run
        # one at a time, so it is not still running): take it again rather than lose the handler call.
        try:
            with mapped_errors():
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        **self._key(change_id, trigger_id),
                        "status": s("claimed"),
                        "expires_at": {"N": str(int(time.time()) + CLAIM_TTL_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR #status = :claimed",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":claimed": s("claimed")},
                )
        except ConflictError:
            return False
        return True

    def complete(self, change_id: str, trigger_id: str) -> None:
        with mapped_errors():
            self._client.update_item(
                TableName=self._table,
                Key=self._key(change_id, trigger_id),
                UpdateExpression="SET #status = :done",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":done": s("done")},
            )

    def release(self, change_id: str, trigger_id: str) -> None:
        with mapped_errors():
            self._client.delete_item(TableName=self._table, Key=self._key(change_id, trigger_id))
