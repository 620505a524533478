"""CloudFormation custom resource ``Custom::IiiStreamRegistration``: a function or a trigger, owned by a stack.

Properties: ``{Kind: function, FunctionId, Target, Description?}`` or
``{Kind: trigger, TriggerId?, Type, FunctionId, Config?}``. Create and Update register through the
registry (the same id is replaced in place); Delete unregisters, and succeeds when it is already gone.
The physical id is the function id or the trigger id. Every request is answered by a PUT of the response
to the presigned ``ResponseURL`` (an unanswered request keeps the stack waiting for an hour).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Final

from aws_lambda_powertools import Logger
from iii_stream import wiring
from iii_stream.core import dispatch
from iii_stream.core.errors import StreamError

logger = Logger(service="iii-stream")

# The physical id of a resource whose Create failed: its rollback Delete has nothing to remove.
FAILED_PREFIX: Final = "iii-stream-registration-failed:"
_GONE: Final = frozenset({"function_not_found", "trigger_not_found"})
_REASON_LIMIT: Final = 1000  # the whole response must stay under CloudFormation's 4096 bytes
_PUT_ATTEMPTS: Final = 3


class RegistrationError(ValueError):
    """The resource's properties do not describe a registration."""


@logger.inject_lambda_context(log_event=False)  # the event holds a presigned URL: never log it
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        physical_id, data = _apply(event)
        response = _response(event, "SUCCESS", physical_id, f"{event['RequestType']} {physical_id}: done", data)
    except Exception as exc:  # whatever went wrong, CloudFormation must hear about it
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
        logger.warning("registration failed", extra={"request": event.get("RequestType"), "reason": reason})
        response = _response(event, "FAILED", _physical_id_after_failure(event), reason, {})
    _put(event["ResponseURL"], response)
    return response


def _apply(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    request, props = event["RequestType"], event.get("ResourceProperties") or {}
    if request == "Delete":
        return _delete(str(event.get("PhysicalResourceId", "")), props), {}
    kind = props.get("Kind")
    if kind == "function":
        payload = {"function_id": props.get("FunctionId"), "target": props.get("Target")}
        payload["description"] = props.get("Description", "")
        function_id = _call("registry::register_function", payload)["function_id"]
        return function_id, {"FunctionId": function_id}
    if kind == "trigger":
        payload = {"type": props.get("Type"), "function_id": props.get("FunctionId"), "config": props.get("Config")}
        payload["id"] = props.get("TriggerId") or _kept_trigger_id(event)
        trigger_id = _call("registry::register_trigger", payload)["id"]
        return trigger_id, {"TriggerId": trigger_id}
    raise RegistrationError(f"Kind must be 'function' or 'trigger', got {kind!r}.")


def _kept_trigger_id(event: dict[str, Any]) -> str | None:
    """An Update of a trigger without TriggerId keeps the id the registry gave it at Create."""
    old = event.get("OldResourceProperties") or {}
    physical_id = str(event.get("PhysicalResourceId", ""))
    if event["RequestType"] == "Update" and old.get("Kind") == "trigger" and not physical_id.startswith(FAILED_PREFIX):
        return physical_id
    return None


def _delete(physical_id: str, props: dict[str, Any]) -> str:
    kind = props.get("Kind")
    if not physical_id or physical_id.startswith(FAILED_PREFIX) or kind not in ("function", "trigger"):
        return physical_id  # nothing was registered
    try:
        if kind == "function":
            _call("registry::unregister_function", {"function_id": physical_id})
        else:
            _call("registry::unregister_trigger", {"id": physical_id})
    except StreamError as exc:
        if exc.code not in _GONE:
            raise
    return physical_id


def _call(function_id: str, payload: dict[str, Any]) -> Any:
    return dispatch.call(wiring.registry_service(), function_id, payload, dispatch.REGISTRY_FUNCTIONS)


def _physical_id_after_failure(event: dict[str, Any]) -> str:
    if event.get("RequestType") == "Create" or not event.get("PhysicalResourceId"):
        return FAILED_PREFIX + str(event.get("RequestId", ""))
    return str(event["PhysicalResourceId"])


def _response(
    event: dict[str, Any], status: str, physical_id: str, reason: str, data: dict[str, str]
) -> dict[str, Any]:
    return {
        "Status": status,
        "Reason": reason[:_REASON_LIMIT],
        "PhysicalResourceId": physical_id,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": data,
    }


def _put(url: str, response: dict[str, Any]) -> None:
    """PUT the response to the presigned S3 URL (no Content-Type: it is not part of the signature)."""
    body = json.dumps(response).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})
    for attempt in range(1, _PUT_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                reply.read()
            return
        except OSError:
            if attempt == _PUT_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
