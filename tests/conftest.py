"""Shared test set-up: a fake AWS environment that can never reach real AWS."""

from __future__ import annotations

from functools import partial

import pytest
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.offline_env import go_offline

go_offline(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="iii-stream-tests")

# The attributes of the Python runtime's context object (aws-wire-shapes.md 6).
FakeLambdaContext = partial(LocalLambdaContext, function_name="iii-stream-test")


@pytest.fixture
def lambda_context() -> LocalLambdaContext:
    return FakeLambdaContext()
