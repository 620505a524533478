"""A fake AWS environment and Lambda context, so nothing the benchmark does can reach real AWS."""

from __future__ import annotations

import os
from functools import partial

from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.offline_env import go_offline

FakeLambdaContext = partial(LocalLambdaContext, function_name="iii-stream-bench")


def install_fake_env() -> None:
    """Point boto3 at fake credentials in us-east-1 and drop anything that could select a real account."""
    go_offline(
        POWERTOOLS_SERVICE_NAME="iii-stream",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_NAMESPACE="iii-stream-bench",
        # The handler logs only failed calls (the report counts those itself): keep stdout for the report.
        POWERTOOLS_LOG_LEVEL="WARNING",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
    )
