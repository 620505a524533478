"""A fake AWS environment and Lambda context, so nothing the benchmark does can reach real AWS."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

# Installed before any boto3 client exists. The account-id endpoint mode is off because recent
# botocore routes some DynamoDB calls to endpoints moto does not know.
FAKE_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_SERVICE_NAME": "iii-stream",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "iii-stream-bench",
    # The handler logs only failed calls (the report counts those itself): keep stdout for the report.
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
_UNSET: Final = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")


def install_fake_env() -> None:
    """Point boto3 at fake credentials in us-east-1 and drop anything that could select a real account."""
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(FAKE_ENV)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_CONFIG_FILE"] = os.devnull


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of the Python Lambda runtime's context object."""

    function_name: str = "iii-stream-bench"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:iii-stream-bench"
    memory_limit_in_mb: str = "512"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/iii-stream-bench"
    log_stream_name: str = "2026/01/01/[$LATEST]00000000000000000000000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
