"""The environment that keeps boto3 offline: fake credentials in us-east-1, for tests, benchmarks and subprocesses.

Set before any boto3 client exists. The account-id endpoint mode is off because botocore >= 1.44.4
routes DynamoDB Streams calls to an endpoint moto does not know (aws-local-tooling.md 2).
"""

from __future__ import annotations

import os
from typing import Final

OFFLINE_AWS_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


def _selects_real_aws(name: str) -> bool:
    """A variable that could pick a real account (a profile) or another endpoint."""
    return name == "AWS_PROFILE" or name.startswith("AWS_ENDPOINT_URL")


def offline_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) made offline, for a subprocess."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not _selects_real_aws(k)}
    env.update(OFFLINE_AWS_ENV)
    env.update(extra)
    return env


def go_offline(**extra: str) -> None:
    """Make this process's environment offline (before any boto3 client exists)."""
    for name in [name for name in os.environ if _selects_real_aws(name)]:
        del os.environ[name]
    os.environ.update(OFFLINE_AWS_ENV)
    os.environ.update(extra)
