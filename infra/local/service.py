"""``iii-stream local``: the whole service on one machine, on embedded defaults.

Today it serves the embedded DynamoDB (moto, tables from template.yaml) and the Lambda invoke
endpoint for the stream functions; the WebSocket gateway, @connections endpoint and stream pumps
join it as the realtime and trigger layers land.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import boto3

from infra.embedded_dynamodb import EmbeddedDynamoDB
from infra.handlers import load_handler
from infra.local.lambda_endpoint import Handler, LambdaEndpoint
from infra.template import create_tables

log = logging.getLogger("iii_stream.local")

TABLES = {
    "ItemsTable": "iii-stream-items",
    "ConnectionsTable": "iii-stream-connections",
    "TriggersTable": "iii-stream-triggers",
}
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class LocalConfig:
    host: str = "127.0.0.1"
    lambda_port: int = 3001
    dynamodb_endpoint: str | None = None


class LocalService:
    """Starts the local stand-ins and points the real handlers at them (in this process)."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self._dynamodb: EmbeddedDynamoDB | None = None
        self.lambda_endpoint: LambdaEndpoint | None = None
        self.dynamodb_endpoint = config.dynamodb_endpoint or ""

    def start(self) -> None:
        for name, value in _FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if not self.dynamodb_endpoint:
            self._dynamodb = EmbeddedDynamoDB()
            self.dynamodb_endpoint = self._dynamodb.start()
        # Service-specific endpoints, so only DynamoDB goes local (boto3 reads them at client creation).
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
        os.environ["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = self.dynamodb_endpoint
        os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
        os.environ["ITEMS_TABLE"] = TABLES["ItemsTable"]
        os.environ["CONNECTIONS_TABLE"] = TABLES["ConnectionsTable"]
        os.environ["TRIGGERS_TABLE"] = TABLES["TriggersTable"]
        self._ensure_tables()
        from iii_stream import wiring

        wiring.reset()
        self.lambda_endpoint = LambdaEndpoint(self._functions(), self.config.host, self.config.lambda_port)
        self.lambda_endpoint.start()

    def _functions(self) -> dict[str, Handler]:
        return {
            "StreamFunction": load_handler("stream_functions.handler"),
            "RegistryFunction": load_handler("registry_functions.handler"),
        }

    def _ensure_tables(self) -> None:
        client: Any = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        existing = set(client.list_tables()["TableNames"])
        missing = {logical: name for logical, name in TABLES.items() if name not in existing}
        create_tables(client, missing)

    def describe(self) -> list[str]:
        assert self.lambda_endpoint is not None
        return [
            f"DynamoDB (embedded moto)   {self.dynamodb_endpoint}"
            if self._dynamodb
            else f"DynamoDB                   {self.dynamodb_endpoint}",
            f"Lambda invoke endpoint     {self.lambda_endpoint.endpoint_url}   (StreamFunction, RegistryFunction)",
            f"Tables                     {', '.join(TABLES.values())}",
        ]

    def stop(self) -> None:
        if self.lambda_endpoint:
            self.lambda_endpoint.stop()
        if self._dynamodb:
            self._dynamodb.stop()
