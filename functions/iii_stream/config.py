"""Settings, read once from a mapping (``os.environ`` by default); tests pass plain dicts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from iii_stream.core.errors import SettingsError
from iii_stream.core.limits import MAX_MESSAGE_BYTES as _API_GATEWAY_MESSAGE_BYTES

ITEMS_TABLE: Final = "ITEMS_TABLE"
CONNECTIONS_TABLE: Final = "CONNECTIONS_TABLE"
CONNECTIONS_ENDPOINT: Final = "CONNECTIONS_ENDPOINT"
AUTH_FUNCTION: Final = "AUTH_FUNCTION"
AUTH_FAIL_OPEN: Final = "AUTH_FAIL_OPEN"
TRIGGERS_TABLE: Final = "TRIGGERS_TABLE"
JOIN_FAIL_OPEN: Final = "JOIN_FAIL_OPEN"
TRIGGER_CACHE_SECONDS: Final = "TRIGGER_CACHE_SECONDS"
BROADCAST_CONCURRENCY: Final = "BROADCAST_CONCURRENCY"
MAX_MESSAGE_BYTES: Final = "MAX_MESSAGE_BYTES"
FANOUT_FUNCTION: Final = "FANOUT_FUNCTION"
FANOUT_THRESHOLD: Final = "FANOUT_THRESHOLD"
FANOUT_CHUNK_SIZE: Final = "FANOUT_CHUNK_SIZE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True)
class Settings:
    items_table: str
    connections_table: str = ""
    connections_endpoint: str = ""
    auth_function: str = ""
    auth_fail_open: bool = False
    triggers_table: str = ""
    join_fail_open: bool = False
    trigger_cache_seconds: int = 10
    broadcast_concurrency: int = 128
    max_message_bytes: int = _API_GATEWAY_MESSAGE_BYTES
    # The broadcast hands a batch's posts to FanoutFunction (in chunks of connections, in parallel) when
    # there are more than this many; empty FANOUT_FUNCTION: it always posts them itself.
    fanout_function: str = ""
    fanout_threshold: int = 500
    fanout_chunk_size: int = 250

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if ITEMS_TABLE not in env:
            raise SettingsError(f"The environment variable {ITEMS_TABLE} (the items table name) is not set.")
        return cls(
            items_table=env[ITEMS_TABLE],
            connections_table=env.get(CONNECTIONS_TABLE, ""),
            connections_endpoint=env.get(CONNECTIONS_ENDPOINT, ""),
            auth_function=env.get(AUTH_FUNCTION, ""),
            auth_fail_open=_flag(env, AUTH_FAIL_OPEN),
            triggers_table=env.get(TRIGGERS_TABLE, ""),
            join_fail_open=_flag(env, JOIN_FAIL_OPEN),
            trigger_cache_seconds=_whole(env, TRIGGER_CACHE_SECONDS, 10, minimum=0),
            broadcast_concurrency=_whole(env, BROADCAST_CONCURRENCY, 128),
            max_message_bytes=_whole(env, MAX_MESSAGE_BYTES, _API_GATEWAY_MESSAGE_BYTES),
            fanout_function=env.get(FANOUT_FUNCTION, ""),
            fanout_threshold=_whole(env, FANOUT_THRESHOLD, 500),
            fanout_chunk_size=_whole(env, FANOUT_CHUNK_SIZE, 250),
        )

    def require(self, name: str) -> str:
        """A setting that this entry point cannot work without."""
        value = str(getattr(self, name.lower()))
        if not value:
            raise SettingsError(f"The environment variable {name} is not set.")
        return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise SettingsError(f"{name} must be true or false, got {raw!r}.")
    return raw in _TRUE


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw) if raw.isdecimal() else None  # isdecimal: no signs, spaces or superscripts
    except ValueError:  # more digits than int() converts
        value = None
    if value is None or value < minimum:
        raise SettingsError(f"{name} must be a whole number of at least {minimum}, got {raw!r}.")
    return value
