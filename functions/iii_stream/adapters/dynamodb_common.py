"""What every DynamoDB adapter shares: the one place botocore errors become StoreError, and attribute helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from iii_stream.core.errors import StoreError

CONDITION_FAILED: Final = "ConditionalCheckFailedException"


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Translate botocore failures into StoreError (the cause stays attached)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StoreError(f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}") from exc
    except BotoCoreError as exc:
        raise StoreError(str(exc)) from exc


def is_condition_failure(exc: BaseException) -> bool:
    """Did a conditional write fail its condition (directly, or as the cause of a StoreError)?"""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == CONDITION_FAILED


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}
