"""The function registry and the triggers: validation and the ``registry::*`` functions.

A function id (``presence::on-change``) maps to what runs it: a Lambda name or ARN (on AWS, and in
the local service, whose Lambda endpoint serves the user's Python functions by name). Triggers bind a
registered function to ``stream``, ``stream:join`` or ``stream:leave``. Registration validates
everything synchronously, so a bad trigger is refused at once rather than failing at dispatch.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from iii_stream.core.errors import StreamError
from iii_stream.core.limits import MAX_NAME_BYTES, name_bytes_over
from iii_stream.core.models import parse_input
from iii_stream.core.ports import Clock
from iii_stream.core.router import Route, Router

TRIGGER_TYPES = ("stream", "stream:join", "stream:leave")
# Every string a registration adds is bounded, so its record always fits a DynamoDB item (400 KB; ids are sort
# keys, at most 1024 bytes).
MAX_ID_CHARS: Final = 256
MAX_DESCRIPTION_CHARS: Final = 1024


class RegistryError(StreamError):
    """A registration was refused."""

    code = "REGISTRY_ERROR"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class FunctionRecord(_Model):
    function_id: StrictStr = Field(min_length=1, max_length=MAX_ID_CHARS)
    target: StrictStr = Field(min_length=1, max_length=MAX_ID_CHARS)
    description: StrictStr = ""


class StreamTriggerConfig(_Model):
    """``stream``: stream_name is required; group_id/item_id empty or missing mean any."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    stream_name: StrictStr = Field(min_length=1)
    group_id: StrictStr | None = None
    item_id: StrictStr | None = None
    condition_function_id: StrictStr | None = None


class LifecycleTriggerConfig(_Model):
    """``stream:join``/``stream:leave``: every field narrows; an empty config means every subscription."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    stream_name: StrictStr | None = None
    group_id: StrictStr | None = None
    condition_function_id: StrictStr | None = None


@dataclass(frozen=True)
class TriggerRecord:
    """A registered trigger; its config model follows its type."""

    trigger_id: str
    type: str
    function_id: str
    config: StreamTriggerConfig | LifecycleTriggerConfig
    created_at: int = 0

    def condition(self) -> str | None:
        return self.config.condition_function_id or None

    def to_json(self) -> str:
        return json.dumps(
            {
                "trigger_id": self.trigger_id,
                "type": self.type,
                "function_id": self.function_id,
                "config": self.config.model_dump(exclude_none=True),
                "created_at": self.created_at,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TriggerRecord:
        raw = json.loads(text)
        return cls(
            raw["trigger_id"],
            raw["type"],
            raw["function_id"],
            parse_trigger_config(raw["type"], raw["config"]),
            raw.get("created_at", 0),
        )


class RegisterFunctionInput(FunctionRecord):
    """A registration: a record with a bounded description (records already stored are read as they are)."""

    description: StrictStr = Field(default="", max_length=MAX_DESCRIPTION_CHARS)


class RegisterTriggerInput(_Model):
    type: StrictStr
    function_id: StrictStr = Field(min_length=1)
    config: Any = None
    id: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)


class FunctionIdInput(_Model):
    function_id: StrictStr


class TriggerIdInput(_Model):
    id: StrictStr


class NoInput(_Model):
    pass


class RegistryStore(Protocol):
    def put_function(self, record: FunctionRecord) -> None:
        """Create or replace a function."""
        ...

    def delete_function(self, function_id: str) -> bool:
        """Remove a function; False when there was none."""
        ...

    def functions(self) -> list[FunctionRecord]:
        """Every registered function."""
        ...

    def put_trigger(self, record: TriggerRecord) -> None:
        """Create or replace a trigger (same id: replaced, never doubled)."""
        ...

    def delete_trigger(self, trigger_id: str) -> bool:
        """Remove a trigger; False when there was none."""
        ...

    def triggers(self) -> list[TriggerRecord]:
        """Every trigger, in registration order."""
        ...


def parse_trigger_config(trigger_type: str, config: Any) -> StreamTriggerConfig | LifecycleTriggerConfig:
    """Validate a trigger's config for its type, with a message that names the problem."""
    if trigger_type not in TRIGGER_TYPES:
        raise RegistryError(f"Unknown trigger type {trigger_type!r}: use one of {', '.join(TRIGGER_TYPES)}.")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise RegistryError(f"The config of a {trigger_type} trigger must be an object, got {type(config).__name__}.")
    if trigger_type == "stream" and config.get("stream_name", "") == "":
        raise RegistryError("A stream trigger needs a non-empty config.stream_name.")
    model = StreamTriggerConfig if trigger_type == "stream" else LifecycleTriggerConfig
    return parse_input(model, config, f"{trigger_type} trigger config")  # type: ignore[return-value]


def _check_config(config: StreamTriggerConfig | LifecycleTriggerConfig) -> None:
    """A new trigger's names: no longer than the names they match (a longer one could never fire)."""
    for field in ("stream_name", "group_id", "item_id"):
        size = name_bytes_over(getattr(config, field, None) or "")
        if size is not None:
            raise RegistryError(f"config.{field} is {size} bytes long; at most {MAX_NAME_BYTES} bytes are allowed.")


class RegistryService:
    def __init__(self, store: RegistryStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def register_function(self, payload: RegisterFunctionInput) -> dict[str, Any]:
        record = FunctionRecord(**payload.model_dump())
        self._store.put_function(record)
        return record.model_dump()

    def unregister_function(self, payload: FunctionIdInput) -> dict[str, Any]:
        users = [t.trigger_id for t in self._store.triggers() if payload.function_id in (t.function_id, t.condition())]
        if users:
            raise RegistryError(
                f"Function {payload.function_id} is used by trigger(s) {', '.join(users)}; remove them first."
            )
        if not self._store.delete_function(payload.function_id):
            raise RegistryError(f"Function {payload.function_id} is not registered.", "function_not_found")
        return {"function_id": payload.function_id}

    def list_functions(self, payload: NoInput) -> list[dict[str, Any]]:
        return [record.model_dump() for record in sorted(self._store.functions(), key=lambda r: r.function_id)]

    def register_trigger(self, payload: RegisterTriggerInput) -> dict[str, Any]:
        config = parse_trigger_config(payload.type, payload.config)
        _check_config(config)
        known = {record.function_id for record in self._store.functions()}
        for function_id in filter(None, (payload.function_id, config.condition_function_id)):
            if function_id not in known:
                raise RegistryError(
                    f"Function {function_id} is not registered; register it first.", "function_not_found"
                )
        # Registration order is dispatch order: stamp after every existing trigger, even within one ms.
        latest = max((t.created_at for t in self._store.triggers()), default=0)
        record = TriggerRecord(
            payload.id or str(uuid.uuid4()),
            payload.type,
            payload.function_id,
            config,
            max(self._clock.now_ms(), latest + 1),
        )
        self._store.put_trigger(record)
        return _trigger_view(record)

    def unregister_trigger(self, payload: TriggerIdInput) -> dict[str, Any]:
        if not self._store.delete_trigger(payload.id):
            raise RegistryError(f"Trigger {payload.id} is not registered.", "trigger_not_found")
        return {"id": payload.id}

    def list_triggers(self, payload: NoInput) -> list[dict[str, Any]]:
        return [_trigger_view(record) for record in self._store.triggers()]


def _trigger_view(record: TriggerRecord) -> dict[str, Any]:
    return {
        "id": record.trigger_id,
        "type": record.type,
        "function_id": record.function_id,
        "config": record.config.model_dump(exclude_none=True),
    }


REGISTRY_FUNCTIONS: Final = Router[RegistryService](
    {
        "registry::register_function": Route(RegisterFunctionInput, RegistryService.register_function),
        "registry::unregister_function": Route(FunctionIdInput, RegistryService.unregister_function),
        "registry::list_functions": Route(NoInput, RegistryService.list_functions),
        "registry::register_trigger": Route(RegisterTriggerInput, RegistryService.register_trigger),
        "registry::unregister_trigger": Route(TriggerIdInput, RegistryService.unregister_trigger),
        "registry::list_triggers": Route(NoInput, RegistryService.list_triggers),
    }
)
