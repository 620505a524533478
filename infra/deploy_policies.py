"""What each deployed function may do: the access its code needs, and the rules its IAM policy must follow.

``REQUIRED_ACCESS`` is derived from the adapters (functions/iii_stream/adapters/) and the services each
entry point builds (functions/iii_stream/wiring.py); tests/integration/test_template.py runs every handler
path on moto, records each AWS call per handler and asserts it is exactly this table.

Resources are written the way the template writes them, shortened: ``ItemsTable`` for
``!GetAtt ItemsTable.Arn``, ``ItemsTable/index/by_stream`` for ``!Sub "${ItemsTable.Arn}/index/by_stream"``,
``function:${UserFunctions}`` and ``execute-api:${WebSocketApi}/${Stage}/POST/@connections/*``
for the ARNs built with ``!Sub``.

The wildcard rule: no action may contain ``*``, and no resource may contain ``*`` outside a ``${...}``
reference, with two exceptions where nothing narrower exists:
- ``execute-api:${<Api>}/${Stage}/<METHOD>/@connections/*`` with a named method: connection ids are only
  known at run time;
- ``function:${UserFunctions}`` for ``lambda:InvokeFunction`` alone: the user's functions are
  registered at run time; the pattern is the deployer's choice (``UserFunctionNamePattern``, by default
  ``<stack name>-*``; ``*`` only with ``AllowAnyUserFunction=true``, see ``check_user_functions``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

ITEMS: Final = "ItemsTable"
BY_STREAM: Final = "ItemsTable/index/by_stream"
CONNECTIONS: Final = "ConnectionsTable"
BY_DUE: Final = "ConnectionsTable/index/by_due"
TRIGGERS: Final = "TriggersTable"
USER_FUNCTIONS: Final = "function:${UserFunctions}"
FANOUT_FUNCTION: Final = "FanoutFunction"
POST_TO_CONNECTION: Final = "execute-api:${WebSocketApi}/${Stage}/POST/@connections/*"
GET_CONNECTION: Final = "execute-api:${WebSocketApi}/${Stage}/GET/@connections/*"

_INVOKE: Final = frozenset({"lambda:InvokeFunction"})
_MANAGE: Final = frozenset({"execute-api:ManageConnections"})
_REGISTRY: Final = frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"})
# Leave handlers: the trigger cache's Query, the ledger's claim (PutItem) and complete (UpdateItem).
_LEAVES: Final = frozenset({"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"})


def _ddb(*actions: str) -> frozenset[str]:
    return frozenset(f"dynamodb:{action}" for action in actions)


Access = dict[str, frozenset[str]]

REQUIRED_ACCESS: Final[dict[str, Access]] = {
    # DynamoItemStore: set/delete UpdateItem, get GetItem, send PutItem, update GetItem + PutItem,
    # list Query; list_groups Query and list_all Scan on the by_stream index.
    "stream_functions.handler": {
        ITEMS: _ddb("GetItem", "PutItem", "UpdateItem", "Query"),
        BY_STREAM: _ddb("Query", "Scan"),
    },
    # DynamoRegistryStore: put_function/put_trigger PutItem, delete_* DeleteItem, functions()/triggers() Query.
    "registry_functions.handler": {TRIGGERS: _REGISTRY},
    "registry_resource.handler": {TRIGGERS: _REGISTRY},
    # ConnectService: save_connection PutItem; the auth function (LambdaInvoker.invoke).
    "ws_connect.handler": {CONNECTIONS: _ddb("PutItem"), USER_FUNCTIONS: _INVOKE},
    # Disconnector.disconnect: remove_connection DeleteItem (connection and rows); a handed-back leave
    # (Disconnector._hand_back): add_subscription UpdateItem + PutItem, save_connection PutItem, postpone
    # UpdateItem. The leave handlers (TriggerLeaveHandlers): TriggerCache Query, DynamoTriggerLedger claim
    # PutItem and complete UpdateItem, invoke_async.
    "ws_disconnect.handler": {
        CONNECTIONS: _ddb("DeleteItem", "PutItem", "UpdateItem"),
        TRIGGERS: _LEAVES,
        USER_FUNCTIONS: _INVOKE,
    },
    # join: get_connection GetItem, add_subscription UpdateItem + PutItem (+ DeleteItem of a replaced row),
    # the snapshot GetItem/Query on items, the join gate (Query triggers, invoke), the sync PostToConnection;
    # leave: remove_subscription UpdateItem + DeleteItem, leave handlers (and their ledger); a 410: disconnect.
    "ws_message.handler": {
        CONNECTIONS: _ddb("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
        ITEMS: _ddb("GetItem", "Query"),
        TRIGGERS: _LEAVES,
        USER_FUNCTIONS: _INVOKE,
        POST_TO_CONNECTION: _MANAGE,
    },
    # BroadcastService: subscribers Query, PostToConnection (or FanoutFunction for a large batch); a 410:
    # disconnect (DeleteItem, leave handlers and their ledger, a hand-back's PutItem + UpdateItem).
    "broadcast.handler": {
        CONNECTIONS: _ddb("Query", "DeleteItem", "PutItem", "UpdateItem"),
        TRIGGERS: _LEAVES,
        USER_FUNCTIONS: _INVOKE,
        FANOUT_FUNCTION: _INVOKE,
        POST_TO_CONNECTION: _MANAGE,
    },
    # ChunkPoster: PostToConnection only (gone connections are reported back to the broadcast, which removes them).
    "fanout.handler": {POST_TO_CONNECTION: _MANAGE},
    # StreamTriggers: TriggerCache Query; DynamoTriggerLedger claim PutItem, complete UpdateItem,
    # release DeleteItem; conditions (invoke) and handlers (invoke_async).
    "dispatch.handler": {TRIGGERS: _ddb("Query", "PutItem", "UpdateItem", "DeleteItem"), USER_FUNCTIONS: _INVOKE},
    # Sweeper: due_connections Query on by_due, alive GetConnection, postpone UpdateItem, disconnect (as
    # ws_disconnect: a hand-back's PutItem).
    "sweeper.handler": {
        BY_DUE: _ddb("Query"),
        CONNECTIONS: _ddb("UpdateItem", "DeleteItem", "PutItem"),
        TRIGGERS: _LEAVES,
        USER_FUNCTIONS: _INVOKE,
        GET_CONNECTION: _MANAGE,
    },
}

# Managed policies SAM attaches itself (logs, X-Ray with Tracing: Active, reading a DynamoDB stream event).
SAM_MANAGED_POLICIES: Final = frozenset(
    {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
    }
)
_ARN_PREFIX = re.compile(r"^arn:\$\{AWS::Partition\}:(lambda|execute-api):\$\{AWS::Region\}:\$\{AWS::AccountId\}:")
_CONNECTIONS_TAIL = re.compile(r"^execute-api:\$\{\w+\}/\$\{Stage\}/(POST|GET|DELETE)/@connections/\*$")
_AUTHORED_POLICY = re.compile(r"RolePolicy\d+$")
_ROUTE_SOURCE = re.compile(r"^execute-api:\$\{\w+\}/\$\{Stage\}/[^*/]+$")


def resource_texts(value: Any) -> list[str]:
    """A policy Resource as short texts (see the module docstring); both branches of an ``Fn::If``."""
    if isinstance(value, list):
        return [text for item in value for text in resource_texts(item)]
    if isinstance(value, str):
        return [_shorten(value)]
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::GetAtt" and isinstance(arg, list) and len(arg) == 2:
            return [arg[0] if arg[1] == "Arn" else f"{arg[0]}/{arg[1]}"]
        if key == "Ref":
            return [] if arg == "AWS::NoValue" else [f"${{{arg}}}"]
        if key == "Fn::Sub":
            return [_shorten(arg if isinstance(arg, str) else arg[0])]
        if key == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return resource_texts(arg[1]) + resource_texts(arg[2])
    return [f"<unreadable {value!r}>"]


def _shorten(text: str) -> str:
    text = re.sub(r"\$\{(\w+)\.Arn\}", r"\1", text)
    match = _ARN_PREFIX.match(text)
    if match:
        text = ("" if match.group(1) == "lambda" else "execute-api:") + text[match.end() :]
    return text


def statements(document: Any) -> Iterator[dict[str, Any]]:
    """Every statement of a policy document, both branches of an ``Fn::If`` included."""
    found = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in found if isinstance(found, list) else [found]:
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            yield from statements({"Statement": [b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]})
        elif isinstance(statement, dict):
            yield statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_problems(function: str, statement: dict[str, Any]) -> list[str]:
    """Broken wildcard rules of one statement (see the module docstring)."""
    if statement.get("Effect") != "Allow":
        return []
    problems = [
        f"{function}: {key} is not allowed; name the actions and resources"
        for key in ("NotAction", "NotResource")
        if key in statement
    ]
    actions = [str(action) for action in _as_list(statement.get("Action", []))]
    problems += [
        f"{function}: action {action!r} is a wildcard; name the actions" for action in actions if "*" in action
    ]
    for text in resource_texts(statement.get("Resource", [])):
        bare = re.sub(r"\$\{[^}]*\}", "", text)
        if text == USER_FUNCTIONS:
            others = sorted(set(actions) - _INVOKE)
            if others:
                problems.append(f"{function}: {text} may only be granted lambda:InvokeFunction, not {others}")
        elif "${UserFunctions}" in text or ("*" in bare and not _CONNECTIONS_TAIL.match(text)):
            problems.append(f"{function}: resource {text!r} is a wildcard where a narrower resource exists")
    return problems


def role_grants(role: dict[str, Any]) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """(every Allow statement of the role, the (action, resource) pairs of the policies the template wrote)."""
    every: list[dict[str, Any]] = []
    authored: set[tuple[str, str]] = set()
    for policy in role.get("Properties", {}).get("Policies", []):
        mine = bool(_AUTHORED_POLICY.search(str(policy.get("PolicyName", ""))))
        for statement in statements(policy.get("PolicyDocument")):
            every.append(statement)
            if mine and statement.get("Effect") == "Allow":
                for action in _as_list(statement.get("Action", [])):
                    authored.update((str(action), text) for text in resource_texts(statement.get("Resource", [])))
    return every, authored


def access_problems(function: str, handler: str, granted: set[tuple[str, str]]) -> list[str]:
    """Actions the code needs and lacks, and actions granted that the code never uses."""
    needed = {(action, resource) for resource, actions in REQUIRED_ACCESS[handler].items() for action in actions}
    missing = [
        f"{function} ({handler}) lacks {action} on {resource}: its code calls it"
        for action, resource in sorted(needed - granted)
    ]
    extra = [
        f"{function} ({handler}) is granted {action} on {resource}, which its code never uses"
        for action, resource in sorted(granted - needed)
    ]
    return missing + extra


def managed_policy_problems(function: str, role: dict[str, Any]) -> list[str]:
    arns = role.get("Properties", {}).get("ManagedPolicyArns", [])
    return [
        f"{function}: managed policy {arn!r} cannot be checked; write the statements instead"
        for arn in arns
        if arn not in SAM_MANAGED_POLICIES
    ]


def permission_problems(name: str, props: dict[str, Any]) -> list[str]:
    """A Lambda permission must name who may invoke: a SourceArn, for API Gateway the API, stage and route."""
    principal = props.get("Principal")
    if props.get("Action") != "lambda:InvokeFunction":
        return [f"{name}: grants {props.get('Action')!r}; only lambda:InvokeFunction is needed"]
    if "SourceArn" not in props:
        return [f"{name}: no SourceArn: any {principal} resource could invoke the function"]
    problems = []
    for text in resource_texts(props["SourceArn"]):
        if principal == "apigateway.amazonaws.com" and not _ROUTE_SOURCE.match(text):
            problems.append(f"{name}: SourceArn {text!r} must name the API, the stage and the route")
        elif "*" in re.sub(r"\$\{[^}]*\}", "", text):
            problems.append(f"{name}: SourceArn {text!r} is a wildcard")
    return problems
