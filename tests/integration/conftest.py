"""Integration fixtures: moto in-process (mock_aws), and a moto server on loopback for socket tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from iii_stream.infra.template import create_tables
from moto import mock_aws

ITEMS_TABLE = "iii-stream-items-test"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    """A DynamoDB client on moto, with the template's items table created."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_tables(client, {"ItemsTable": ITEMS_TABLE})
    return client


class RequestCounter:
    """Counts the AWS operations a client sends (a botocore event hook; it changes nothing)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
