"""Settings, read once from a mapping (``os.environ`` by default); tests pass plain dicts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

ITEMS_TABLE: Final = "ITEMS_TABLE"
MAX_MESSAGE_BYTES: Final = "MAX_MESSAGE_BYTES"


class SettingsError(KeyError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    items_table: str
    max_message_bytes: int = 131072

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        try:
            items_table = env[ITEMS_TABLE]
        except KeyError:
            raise SettingsError(f"The environment variable {ITEMS_TABLE} (the items table name) is not set.") from None
        raw_max = env.get(MAX_MESSAGE_BYTES, "131072")
        if not raw_max.isdigit():
            raise SettingsError(f"{MAX_MESSAGE_BYTES} must be a whole number of bytes, got {raw_max!r}.")
        return cls(items_table=items_table, max_message_bytes=int(raw_max))
