"""Shared test set-up: a fake AWS environment that can never reach real AWS."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

# Set before any boto3 client exists. The account-id endpoint mode is off because botocore
# >= 1.44.4 routes DynamoDB Streams calls to an endpoint moto does not know (aws-local-tooling.md 2).
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "iii-stream-tests",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@dataclass
class FakeLambdaContext:
    """The attributes of the Python runtime's context object (aws-wire-shapes.md 6)."""

    function_name: str = "iii-stream-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:iii-stream-test"
    memory_limit_in_mb: str = "512"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/iii-stream-test"
    log_stream_name: str = "2026/11/27/[$LATEST]00000000000000000000000000000000"
    remaining_ms: int = field(default=30_000)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
