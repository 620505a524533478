"""``Custom::IiiStreamRegistration``: CloudFormation's Create/Update/Delete of a function or a trigger.

Properties: ``{Kind: function, FunctionId, Target, Description?}`` or
``{Kind: trigger, TriggerId?, Type, FunctionId, Config?}``. Create and Update register through the
registry (the same id is replaced in place); Delete unregisters, and succeeds when it is already gone.
The physical id is the function id or the trigger id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from iii_stream.core.errors import StreamError

# The physical id of a resource whose Create failed: its rollback Delete has nothing to remove.
FAILED_PREFIX: Final = "iii-stream-registration-failed:"
_GONE: Final = frozenset({"function_not_found", "trigger_not_found"})
_REASON_LIMIT: Final = 1000  # characters
_RESPONSE_LIMIT: Final = 4096  # bytes: CloudFormation refuses a larger response, so the Reason is cut to fit

RegistryCall = Callable[[str, dict[str, Any]], Any]


class RegistrationError(ValueError):
    """The resource's properties do not describe a registration."""


def answer(event: dict[str, Any], call: RegistryCall) -> dict[str, Any]:
    """Carry out one custom-resource request; return the response to send CloudFormation (never raises)."""
    try:
        physical_id, data = _apply(event, call)
        return _response(event, "SUCCESS", physical_id, f"{event['RequestType']} {physical_id}: done", data)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, CloudFormation must hear about it
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
        return _response(event, "FAILED", _physical_id_after_failure(event), reason, {})


def _apply(event: dict[str, Any], call: RegistryCall) -> tuple[str, dict[str, str]]:
    request, props = event["RequestType"], event.get("ResourceProperties") or {}
    if request == "Delete":
        return _delete(str(event.get("PhysicalResourceId", "")), props, call), {}
    kind = props.get("Kind")
    if kind == "function":
        payload = {"function_id": props.get("FunctionId"), "target": props.get("Target")}
        payload["description"] = props.get("Description", "")
        function_id = call("registry::register_function", payload)["function_id"]
        return function_id, {"FunctionId": function_id}
    if kind == "trigger":
        payload = {"type": props.get("Type"), "function_id": props.get("FunctionId"), "config": props.get("Config")}
        payload["id"] = props.get("TriggerId") or _kept_trigger_id(event)
        trigger_id = call("registry::register_trigger", payload)["id"]
        return trigger_id, {"TriggerId": trigger_id}
    raise RegistrationError(f"Kind must be 'function' or 'trigger', got {kind!r}.")


def _kept_trigger_id(event: dict[str, Any]) -> str | None:
    """An Update of a trigger without TriggerId keeps the id the registry gave it at Create."""
    old = event.get("OldResourceProperties") or {}
    physical_id = str(event.get("PhysicalResourceId", ""))
    if event["RequestType"] == "Update" and old.get("Kind") == "trigger" and not physical_id.startswith(FAILED_PREFIX):
        return physical_id
    return None


def _delete(physical_id: str, props: dict[str, Any], call: RegistryCall) -> str:
    kind = props.get("Kind")
    if not physical_id or physical_id.startswith(FAILED_PREFIX) or kind not in ("function", "trigger"):
        return physical_id  # nothing was registered
    try:
        if kind == "function":
            call("registry::unregister_function", {"function_id": physical_id})
        else:
            call("registry::unregister_trigger", {"id": physical_id})
    except StreamError as exc:
        if exc.code not in _GONE:
            raise
    return physical_id


def _physical_id_after_failure(event: dict[str, Any]) -> str:
    if event.get("RequestType") == "Create" or not event.get("PhysicalResourceId"):
        return FAILED_PREFIX + str(event.get("RequestId", ""))
    return str(event["PhysicalResourceId"])


def encode_response(response: dict[str, Any]) -> bytes:
    """The response as sent: JSON in UTF-8 (non-ASCII kept in one to four bytes; a lone surrogate stays an escape)."""
    return json.dumps(response, ensure_ascii=False).encode("utf-8", "backslashreplace")


def _response(
    event: dict[str, Any], status: str, physical_id: str, reason: str, data: dict[str, str]
) -> dict[str, Any]:
    reason = reason[:_REASON_LIMIT]
    response: dict[str, Any] = {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": data,
    }
    over = len(encode_response(response)) - _RESPONSE_LIMIT
    if over > 0:  # every character cut saves at least one byte
        response["Reason"] = reason[: max(0, len(reason) - over)]
    return response
