"""What every DynamoDB adapter shares: the one place botocore errors become ours, and attribute helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from iii_stream.core.errors import ConflictError, StoreError

CONDITION_FAILED: Final = "ConditionalCheckFailedException"


@contextmanager
def mapped_errors() -> Iterator[None]:
    """A failed condition becomes ConflictError (with the record DynamoDB returned, if any); any other
    botocore failure becomes StoreError. The botocore exception stays attached as the cause."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "ClientError"), error.get("Message", "")
        if code == CONDITION_FAILED:
            raise ConflictError(f"{code}: {message}", exc.response.get("Item")) from exc
        raise StoreError(f"{code}: {message}") from exc
    except BotoCoreError as exc:
        raise StoreError(str(exc)) from exc


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}
