"""The one place that builds clients, adapters and services; lazily, cached per container."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3

from iii_stream.adapters.dynamodb_items import DynamoItemStore
from iii_stream.config import Settings
from iii_stream.core.clock import SystemClock
from iii_stream.core.service import StreamService


def build_stream_service(dynamodb_client: Any, settings: Settings) -> StreamService:
    """Compose the stream functions over a DynamoDB client (moto, a local endpoint or AWS)."""
    store = DynamoItemStore(dynamodb_client, settings.items_table)
    return StreamService(store, SystemClock(), max_message_bytes=settings.max_message_bytes)


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def dynamodb_client() -> Any:
    # Created on first use, never at import: boto3 honours AWS_ENDPOINT_URL for local endpoints.
    return boto3.client("dynamodb")


@cache
def stream_service() -> StreamService:
    return build_stream_service(dynamodb_client(), settings())


def reset() -> None:
    """Forget every cached object (tests, and the local service after a settings change)."""
    for getter in (settings, dynamodb_client, stream_service):
        getter.cache_clear()
