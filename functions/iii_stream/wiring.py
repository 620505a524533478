"""The one place that builds clients, adapters and services; lazily, cached per container.

Each getter imports what it builds when first called, so an entry point pays at cold start only for
the modules it uses (the stream functions never load the realtime or trigger code).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3

from iii_stream.config import CONNECTIONS_ENDPOINT, CONNECTIONS_TABLE, TRIGGERS_TABLE, Settings
from iii_stream.core.clock import SystemClock

if TYPE_CHECKING:
    from iii_stream.adapters.dynamodb_connections import DynamoConnectionStore
    from iii_stream.adapters.dynamodb_registry import DynamoRegistryStore
    from iii_stream.adapters.signed_poster import SignedConnectionsPoster
    from iii_stream.core.broadcast import BroadcastService
    from iii_stream.core.connect import ConnectService
    from iii_stream.core.disconnect import Disconnector
    from iii_stream.core.fanout import ChunkPoster
    from iii_stream.core.ports import JoinGate
    from iii_stream.core.registry import RegistryService
    from iii_stream.core.service import StreamService
    from iii_stream.core.subscriptions import SubscriptionService
    from iii_stream.core.sweeper import Sweeper
    from iii_stream.core.triggers import StreamTriggers, TriggerCache


def build_stream_service(dynamodb_client: Any, settings: Settings) -> StreamService:
    """Compose the stream functions over a DynamoDB client (moto, a local endpoint or AWS)."""
    from iii_stream.adapters.dynamodb_items import DynamoItemStore
    from iii_stream.core.service import StreamService

    store = DynamoItemStore(dynamodb_client, settings.items_table)
    return StreamService(store, SystemClock(), max_message_bytes=settings.max_message_bytes)


@cache
def settings() -> Settings:
    return Settings.from_env()


# Clients are created on first use, never at import: boto3 then honours AWS_ENDPOINT_URL_* for local endpoints.
@cache
def dynamodb_client() -> Any:
    return boto3.client("dynamodb")


@cache
def lambda_client() -> Any:
    return boto3.client("lambda")


@cache
def connections_poster() -> SignedConnectionsPoster:
    """The one ``@connections`` client of a container: SigV4 with a cached key over a keep-alive pool."""
    from iii_stream.adapters.signed_poster import SignedConnectionsPoster

    endpoint = settings().require(CONNECTIONS_ENDPOINT)
    return SignedConnectionsPoster.from_endpoint(endpoint, max_connections=settings().broadcast_concurrency)


@cache
def stream_service() -> StreamService:
    return build_stream_service(dynamodb_client(), settings())


@cache
def connection_store() -> DynamoConnectionStore:
    from iii_stream.adapters.dynamodb_connections import DynamoConnectionStore

    return DynamoConnectionStore(dynamodb_client(), settings().require(CONNECTIONS_TABLE))


@cache
def connect_service() -> ConnectService:
    from iii_stream.adapters.lambda_invoker import LambdaInvoker
    from iii_stream.core.connect import AuthPolicy, ConnectService

    policy = AuthPolicy(settings().auth_function or None, settings().auth_fail_open)
    invoker = LambdaInvoker(lambda_client()) if policy.function_ref else None
    return ConnectService(connection_store(), invoker, SystemClock(), policy)


@cache
def registry_store() -> DynamoRegistryStore:
    from iii_stream.adapters.dynamodb_registry import DynamoRegistryStore

    return DynamoRegistryStore(dynamodb_client(), settings().require(TRIGGERS_TABLE))


@cache
def registry_service() -> RegistryService:
    from iii_stream.core.registry import RegistryService

    return RegistryService(registry_store(), SystemClock())


@cache
def trigger_cache() -> TriggerCache:
    from iii_stream.core.triggers import TriggerCache

    return TriggerCache(registry_store(), ttl_seconds=settings().trigger_cache_seconds)


@cache
def stream_triggers() -> StreamTriggers:
    from iii_stream.adapters.dynamodb_registry import DynamoTriggerLedger
    from iii_stream.adapters.lambda_invoker import LambdaInvoker
    from iii_stream.core.triggers import StreamTriggers

    ledger = DynamoTriggerLedger(dynamodb_client(), settings().require(TRIGGERS_TABLE))
    return StreamTriggers(trigger_cache(), LambdaInvoker(lambda_client()), ledger)


def _join_gate() -> JoinGate:
    from iii_stream.adapters.lambda_invoker import LambdaInvoker
    from iii_stream.core.subscriptions import AllowAll
    from iii_stream.core.triggers import TriggerJoinGate

    if not settings().triggers_table:
        return AllowAll()
    return TriggerJoinGate(trigger_cache(), LambdaInvoker(lambda_client()), fail_open=settings().join_fail_open)


@cache
def disconnector() -> Disconnector:
    """Ends subscriptions for every caller ($disconnect, leave frames, broadcast's 410s, the sweeper)."""
    from iii_stream.core.disconnect import Disconnector

    if not settings().triggers_table:
        return Disconnector(connection_store())
    from iii_stream.adapters.dynamodb_registry import DynamoTriggerLedger
    from iii_stream.adapters.lambda_invoker import LambdaInvoker
    from iii_stream.core.triggers import TriggerLeaveHandlers

    # The ledger lets a leave whose handlers could not all be queued be handed back and retried, never twice.
    ledger = DynamoTriggerLedger(dynamodb_client(), settings().triggers_table)
    leaves = TriggerLeaveHandlers(trigger_cache(), LambdaInvoker(lambda_client()), ledger)
    return Disconnector(connection_store(), leaves)


@cache
def subscription_service() -> SubscriptionService:
    from iii_stream.adapters.dynamodb_items import DynamoItemStore
    from iii_stream.core.subscriptions import SubscriptionService

    items = DynamoItemStore(dynamodb_client(), settings().items_table)
    return SubscriptionService(
        connection_store(),
        items,
        connections_poster(),
        SystemClock(),
        gate=_join_gate(),
        disconnector=disconnector(),
        max_message_bytes=settings().max_message_bytes,
    )


@cache
def broadcast_service() -> BroadcastService:
    from iii_stream.adapters.lambda_invoker import LambdaInvoker
    from iii_stream.core.broadcast import BroadcastService, FanoutSettings

    config = settings()
    fanout = FanoutSettings(config.fanout_function, config.fanout_threshold, config.fanout_chunk_size)
    return BroadcastService(
        connection_store(),
        connections_poster(),
        disconnector(),
        max_workers=config.broadcast_concurrency,
        invoker=LambdaInvoker(lambda_client()) if config.fanout_function else None,
        fanout=fanout,
    )


@cache
def chunk_poster() -> ChunkPoster:
    from iii_stream.core.fanout import ChunkPoster

    return ChunkPoster(connections_poster(), max_workers=settings().broadcast_concurrency)


@cache
def sweeper() -> Sweeper:
    from iii_stream.core.sweeper import Sweeper

    return Sweeper(connection_store(), connections_poster(), disconnector(), SystemClock())


def reset() -> None:
    """Forget every cached object (tests, and the local service after a settings change)."""
    for getter in (
        settings,
        dynamodb_client,
        lambda_client,
        connections_poster,
        chunk_poster,
        stream_service,
        connection_store,
        connect_service,
        disconnector,
        subscription_service,
        broadcast_service,
        registry_store,
        registry_service,
        trigger_cache,
        stream_triggers,
        sweeper,
    ):
        getter.cache_clear()
