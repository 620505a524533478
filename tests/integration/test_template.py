"""``make validate`` catches a broken template: each test validates an edited copy of template.yaml.

The validator runs in-process (``infra.validate.validate``), on a copy in tmp_path; CodeUri is read
against the project root, so the copy validates the real handlers.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from iii_stream import wiring
from iii_stream.infra.deploy_checks import CHECKS, NEEDS_TRANSLATION, tables_used_outside
from iii_stream.infra.deploy_policies import FANOUT_FUNCTION, REQUIRED_ACCESS, USER_FUNCTIONS
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.local.context import LocalLambdaContext
from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint
from iii_stream.infra.stack import TEMPLATE_PATH
from iii_stream.infra.validate import Report, validate

from tests.integration import realtime
from tests.integration.test_registry_resource import ResponseBucket, Stack

FANOUT = "iii-fanout"  # the FanoutFunction of these tests, served by a local Lambda endpoint

pytestmark = pytest.mark.integration

ORIGINAL = TEMPLATE_PATH.read_text(encoding="utf-8")


def edited(tmp_path: Path, old: str, new: str, after: str = "") -> Path:
    """A copy of template.yaml with the first ``old`` after ``after`` replaced by ``new``."""
    start = ORIGINAL.index(after) if after else 0
    at = ORIGINAL.index(old, start)
    path = tmp_path / "template.yaml"
    path.write_text(ORIGINAL[:at] + new + ORIGINAL[at + len(old) :], encoding="utf-8")
    return path


def failed(report: Report) -> set[str]:
    return {check.name for check in report.failed()}


def test_the_template_passes_every_check(tmp_path: Path) -> None:
    report = validate(edited(tmp_path, "", ""))
    assert report.ok, report.all_problems()
    assert [check.name for check in report.checks] == [name for name, _ in CHECKS]


BROKEN = {
    # Done when: a wrong handler path, a missing permission, an invalid event type.
    "wrong handler path": (
        ("Handler: ws_message.handler", "Handler: ws_messages.handler", ""),
        {"handlers import", "iam least privilege", "websocket api"},
    ),
    "missing permission": (
        ("dynamodb:UpdateItem, dynamodb:Query]", "dynamodb:UpdateItem]", "StreamFunction:"),
        {"iam least privilege"},
    ),
    "invalid event type": (("Type: DynamoDB\n", "Type: DynamoDBX\n", "BroadcastFunction:"), {"sam translate"}),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_template_fails_validation(tmp_path: Path, case: str) -> None:
    (old, new, after), failing = BROKEN[case]
    report = validate(edited(tmp_path, old, new, after))
    assert not report.ok
    assert failed(report) == failing


def test_a_wrong_handler_path_names_the_missing_module(tmp_path: Path) -> None:
    report = validate(
        edited(tmp_path, "Handler: ws_message.handler", "Handler: ws_messages.handler"), only={"handlers import"}
    )
    assert report.problems("handlers import") == [
        "MessageFunction: handler ws_messages.handler: functions/ws_messages.py does not exist"
    ]


def test_a_handler_that_does_not_import_fails(tmp_path: Path) -> None:
    path = edited(tmp_path, "Handler: sweeper.handler", "Handler: sweeper.sweep")
    [problem] = validate(path, only={"handlers import"}).problems("handlers import")
    assert problem.startswith("SweeperFunction: handler sweeper.sweep does not import: AttributeError")


def test_a_missing_permission_names_the_action_and_the_resource(tmp_path: Path) -> None:
    # GIVEN the join route without dynamodb:Query on the triggers table (its join gate reads the triggers)
    path = edited(
        tmp_path,
        "              Action: [dynamodb:Query, dynamodb:PutItem, dynamodb:UpdateItem]\n"
        "              Resource: !GetAtt TriggersTable.Arn\n",
        "              Action: [dynamodb:PutItem, dynamodb:UpdateItem]\n"
        "              Resource: !GetAtt TriggersTable.Arn\n",
        after="MessageFunction:",
    )
    report = validate(path, only={"iam least privilege"})
    assert report.problems("iam least privilege") == [
        "MessageFunction (ws_message.handler) lacks dynamodb:Query on TriggersTable: its code calls it"
    ]


def test_an_invalid_event_type_is_refused_by_the_sam_translation(tmp_path: Path) -> None:
    report = validate(edited(tmp_path, "Type: DynamoDB\n", "Type: DynamoDBX\n"))
    [problem] = report.problems("sam translate")
    assert "Event Type is: DynamoDBX" in problem
    # cfn-lint alone misses it (aws-local-tooling.md 5); the checks that need the translation are skipped
    assert report.problems("cfn-lint template") == []
    assert {c.name for c in report.checks if c.skipped} == NEEDS_TRANSLATION


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "dynamodb:Query, dynamodb:Scan]",
            "dynamodb:*]",
            "StreamFunction: action 'dynamodb:*' is a wildcard; name the actions",
        ),
        (
            'Resource: !Sub "${ItemsTable.Arn}/index/by_stream"',
            'Resource: "*"',
            "StreamFunction: resource '*' is a wildcard where a narrower resource exists",
        ),
        (
            'Resource: !Sub "${ItemsTable.Arn}/index/by_stream"',
            'Resource: !Sub "${ItemsTable.Arn}/index/*"',
            "StreamFunction: resource 'ItemsTable/index/*' is a wildcard where a narrower resource exists",
        ),
    ],
)
def test_a_wildcard_is_refused(tmp_path: Path, old: str, new: str, problem: str) -> None:
    report = validate(edited(tmp_path, old, new, after="StreamFunction:"), only={"iam least privilege"})
    assert problem in report.problems("iam least privilege")


def test_post_to_connection_must_stay_on_the_stage_and_method(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        "${WebSocketApi}/${Stage}/POST/@connections/*",
        "${WebSocketApi}/*/*/@connections/*",
        after="BroadcastFunction:",
    )
    problems = validate(path, only={"iam least privilege"}).problems("iam least privilege")
    wide, post = (
        "execute-api:${WebSocketApi}/*/*/@connections/*",
        "execute-api:${WebSocketApi}/${Stage}/POST/@connections/*",
    )
    assert problems == [
        f"BroadcastFunction: resource '{wide}' is a wildcard where a narrower resource exists",
        f"BroadcastFunction (broadcast.handler) lacks execute-api:ManageConnections on {post}: its code calls it",
        f"BroadcastFunction (broadcast.handler) is granted execute-api:ManageConnections on {wide},"
        " which its code never uses",
    ]


def test_a_permission_the_code_never_uses_is_refused(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        "dynamodb:UpdateItem, dynamodb:Query]",
        "dynamodb:UpdateItem, dynamodb:Query, dynamodb:DeleteItem]",
        after="StreamFunction:",
    )
    assert validate(path, only={"iam least privilege"}).problems("iam least privilege") == [
        "StreamFunction (stream_functions.handler) is granted dynamodb:DeleteItem on ItemsTable,"
        " which its code never uses"
    ]


def test_a_managed_policy_is_refused(tmp_path: Path) -> None:
    path = edited(
        tmp_path, "      Policies:\n", "      Policies:\n        - AmazonDynamoDBFullAccess\n", after="StreamFunction:"
    )
    problems = validate(path, only={"iam least privilege"}).problems("iam least privilege")
    assert any(p.startswith("StreamFunction: managed policy") and "AmazonDynamoDBFullAccess" in p for p in problems)


def test_every_setting_the_code_reads_must_be_set(tmp_path: Path) -> None:
    report = validate(edited(tmp_path, '        BROADCAST_CONCURRENCY: "128"\n', ""), only={"environment"})
    problems = report.problems("environment")
    assert len(problems) == 10  # one per function of functions/
    assert "BroadcastFunction: BROADCAST_CONCURRENCY is not set (functions/iii_stream/config.py reads it)" in problems


def test_an_index_the_code_queries_must_exist(tmp_path: Path) -> None:
    report = validate(edited(tmp_path, "IndexName: by_due", "IndexName: by_due_at"), only={"tables"})
    assert report.problems("tables") == ["ConnectionsTable has no index by_due, which the code queries"]


def test_the_tests_and_the_local_service_create_the_template_tables() -> None:
    assert set(tables_used_outside()) == {"ItemsTable", "ConnectionsTable", "TriggersTable"}


REGISTRATIONS = """
  PresenceRegistration:
    Type: Custom::IiiStreamRegistration
    Properties:
      ServiceToken: !GetAtt RegistrationFunction.Arn
      Kind: function
      FunctionId: presence::on-change
      Target: !Sub "${AWS::StackName}-presence"
  PresenceTrigger:
    Type: Custom::IiiStreamRegistration
    Properties:
      ServiceToken: !GetAtt RegistrationFunction.Arn
      Kind: trigger
      TriggerId: presence-changes
      Type: stream
      FunctionId: !Ref PresenceRegistration
      Config:
        stream_name: presence

Outputs:
"""


def test_registrations_declared_in_the_template_validate(tmp_path: Path) -> None:
    report = validate(edited(tmp_path, "\nOutputs:\n", REGISTRATIONS))
    assert report.ok, report.all_problems()
    assert report.checks[-2].detail.startswith("2 Custom::IiiStreamRegistration")


def test_a_malformed_registration_is_refused(tmp_path: Path) -> None:
    broken = REGISTRATIONS.replace("      Config:\n        stream_name: presence\n", "").replace("Target: ", "Targt: ")
    problems = validate(edited(tmp_path, "\nOutputs:\n", broken), only={"registrations"}).problems("registrations")
    assert problems == [
        "PresenceRegistration: Target is missing",
        "PresenceTrigger: A stream trigger needs a non-empty config.stream_name.",
    ]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "${WebSocketApi}/${Stage}/join",
            "${WebSocketApi}/${Stage}/*",
            "JoinPermission: SourceArn 'execute-api:${WebSocketApi}/${Stage}/*' must name the API, the stage and"
            " the route",
        ),
        (
            "${WebSocketApi}/${Stage}/$connect",
            "${WebSocketApi}/*/$connect",
            "ConnectPermission: SourceArn 'execute-api:${WebSocketApi}/*/$connect' must name the API, the stage and"
            " the route",
        ),
        (
            '      SourceArn: !Sub "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:'
            '${WebSocketApi}/${Stage}/$disconnect"\n',
            "",
            "DisconnectPermission: no SourceArn: any apigateway.amazonaws.com resource could invoke the function",
        ),
    ],
)
def test_an_invoke_permission_must_name_its_source(tmp_path: Path, old: str, new: str, problem: str) -> None:
    report = validate(edited(tmp_path, old, new), only={"invoke permissions"})
    assert report.problems("invoke permissions") == [problem]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "ProtocolType: WEBSOCKET",
            "ProtocolType: WEBSOCKETS",
            "WebSocketApi: ProtocolType is 'WEBSOCKETS', not 'WEBSOCKET'",
        ),
        ("RouteKey: leave", "RouteKey: leaves", "no route leave"),
        (
            'Target: !Sub "integrations/${MessageIntegration}"',
            'Target: !Sub "integrations/${ConnectIntegration}"',
            "JoinRoute (join): integrates ws_connect.handler, not ws_message.handler",
        ),
        (
            "IntegrationType: AWS_PROXY",
            "IntegrationType: AWS_PROXYY",
            "ConnectRoute ($connect): IntegrationType is 'AWS_PROXYY', not 'AWS_PROXY'",
        ),
        ("LeaveRoute, DefaultRoute]", "LeaveRoute]", "Deployment does not DependsOn route DefaultRoute"),
        (
            "${WebSocketApi}/${Stage}/leave",
            "${WebSocketApi}/${Stage}/leav",
            "LeaveRoute (leave): no AWS::Lambda::"
            "Permission with SourceArn ...:${WebSocketApi}/${Stage}/leave lets it invoke MessageFunction",
        ),
    ],
)
def test_the_websocket_api_is_wired_as_the_protocol_needs(tmp_path: Path, old: str, new: str, problem: str) -> None:
    # cfn-lint has no enums for ApiGatewayV2 and moto skips it: these only our check sees
    report = validate(edited(tmp_path, old, new), only={"websocket api"})
    assert report.problems("websocket api") == [problem]


# -- The access table (infra/deploy_policies.py) against what the handlers really call ------------------


class CallRecorder:
    """Attributes every AWS call of the handlers' clients to the handler running (as its IAM action and resource)."""

    TABLES = {
        realtime.ITEMS: "ItemsTable",
        realtime.CONNECTIONS: "ConnectionsTable",
        realtime.TRIGGERS: "TriggersTable",
    }

    def __init__(self, posts: realtime.PostRecorder) -> None:
        self.handler = ""
        self.seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._thread = threading.local()  # a handler running in another thread (the fan-out tier's)
        for service, client in [("dynamodb", wiring.dynamodb_client()), ("lambda", wiring.lambda_client())]:
            client.meta.events.register(f"before-parameter-build.{service}", self._record)
        posts.listeners.append(self._record_connections_call)

    def run_as(self, handler: str, function: Any, event: Any, context: Any) -> Any:
        """Run a handler invoked through the Lambda endpoint (another thread), its calls counted as its own."""
        self._thread.handler = handler
        try:
            return function(event, context)
        finally:
            self._thread.handler = ""

    @contextmanager
    def acting_as(self, handler: str) -> Iterator[None]:
        self.handler = handler
        try:
            yield
        finally:
            self.handler = ""

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        if service == "dynamodb":
            resource = self.TABLES[params["TableName"]] + (
                f"/index/{params['IndexName']}" if "IndexName" in params else ""
            )
            action = f"dynamodb:{operation}"
        else:
            fanout = params.get("FunctionName") == FANOUT
            resource, action = FANOUT_FUNCTION if fanout else USER_FUNCTIONS, "lambda:InvokeFunction"
        self._add(action, resource)

    def _record_connections_call(self, method: str) -> None:
        """A request of the handlers' @connections poster (POST: PostToConnection, GET: GetConnection). The
        fan-out tier posts from its own pool's threads (``fanout-post-*``): those are FanoutFunction's calls."""
        if threading.current_thread().name.startswith("fanout-post"):
            self._thread.handler = "fanout.handler"
        self._add("execute-api:ManageConnections", f"execute-api:${{WebSocketApi}}/${{Stage}}/{method}/@connections/*")

    def _add(self, action: str, resource: str) -> None:
        handler = getattr(self._thread, "handler", "") or self.handler
        with self._lock:
            self.seen[handler or "(no handler)"].add((action, resource))

    def access(self) -> dict[str, dict[str, frozenset[str]]]:
        by_handler: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for handler, calls in self.seen.items():
            for action, resource in calls:
                by_handler[handler][resource].add(action)
        return {h: {r: frozenset(a) for r, a in resources.items()} for h, resources in by_handler.items()}


def _user_function(event: Any, context: Any) -> Any:
    """Every user function at once: the auth function (it gets headers) answers a context, the others null."""
    return {"context": {"user": "u"}} if "headers" in event else None


def test_the_access_table_is_exactly_what_the_handlers_call(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the real handlers on moto, user functions behind a local Lambda endpoint (one target missing),
    # and every AWS call of theirs recorded per handler
    recorders: list[CallRecorder] = []
    fanout = load_handler("fanout.handler")
    users = dict.fromkeys(("auth", "gate", "cond", "on_change", "on_leave"), _user_function)
    users[FANOUT] = lambda event, context: recorders[0].run_as("fanout.handler", fanout, event, context)
    endpoint = LambdaEndpoint(users, port=0)
    endpoint.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.endpoint_url)
    try:
        # a batch of more than 20 posts goes to the fan-out tier
        rt = realtime.Realtime(monkeypatch, AUTH_FUNCTION="auth", FANOUT_FUNCTION=FANOUT, FANOUT_THRESHOLD="20")
        calls = CallRecorder(rt.posts)
        recorders.append(calls)
        _exercise_every_path(rt, calls)
    finally:
        endpoint.stop()
    # THEN each handler called exactly the actions on exactly the resources the access table grants it
    assert calls.access() == REQUIRED_ACCESS


def _exercise_every_path(rt: realtime.Realtime, calls: CallRecorder) -> None:
    with calls.acting_as("registry_functions.handler"):
        for name in ("gate", "cond", "on_change", "on_leave", "missing"):
            rt.register("registry::register_function", function_id=f"app::{name}", target=name)
        rt.register("registry::register_trigger", type="stream:join", function_id="app::gate", config={})
        rt.register("registry::register_trigger", type="stream:leave", function_id="app::on_leave", config={})
        # a leave handler that can never be queued: every leave is handed back (its rows put back, the ledger)
        rt.register("registry::register_trigger", type="stream:leave", function_id="app::missing", config={})
        stream = {"stream_name": "chat", "condition_function_id": "app::cond"}
        rt.register("registry::register_trigger", type="stream", function_id="app::on_change", config=stream)
        rt.register(
            "registry::register_trigger",
            type="stream",
            function_id="app::missing",
            config={"stream_name": "chat"},
            id="gone",
        )
        rt.register("registry::unregister_trigger", id="nothing-there")
    with ResponseBucket() as bucket, calls.acting_as("registry_resource.handler"):
        stack = Stack(bucket)
        stack.send("Create", "Fn", {"Kind": "function", "FunctionId": "app::extra", "Target": "on_change"})
        stack.send(
            "Create", "Tr", {"Kind": "trigger", "TriggerId": "t", "Type": "stream:leave", "FunctionId": "app::extra"}
        )
        stack.send("Delete", "Tr", {"Kind": "trigger"}, PhysicalResourceId="t")
    with calls.acting_as("ws_connect.handler"):
        group, item, gone, quiet, stale = (rt.connect()[0] for _ in range(5))
    with calls.acting_as("ws_message.handler"):
        rt.join(group, "chat", "room")
        rt.join(item, "chat", "room", item="m1")
        left = rt.join(quiet, "chat", "room")
        rt.send(quiet, {"type": "leave", "data": {"subscriptionId": left, "streamName": "chat", "groupId": "room"}})
        rt.join(gone, "chat", "room")
        rt.join(stale, "chat", "room")
    with calls.acting_as("stream_functions.handler"):
        rt.call("stream::set", stream_name="chat", group_id="room", item_id="m1", data={"n": 1})
        rt.call(
            "stream::update",
            stream_name="chat",
            group_id="room",
            item_id="m1",
            ops=[{"type": "increment", "path": "n", "by": 1}],
        )
        rt.call("stream::get", stream_name="chat", group_id="room", item_id="m1")
        rt.call("stream::list", stream_name="chat", group_id="room")
        rt.call("stream::list_groups", stream_name="chat")
        rt.call("stream::list_all")
        rt.call("stream::send", stream_name="chat", group_id="room", type="typing", data={})
        rt.call("stream::delete", stream_name="chat", group_id="room", item_id="m1")
    rt.posts.gone.add(gone)  # its next post answers 410: broadcast removes it and fires its leave
    with calls.acting_as("broadcast.handler"):
        rt.pump.drain()
    # a crowd: one change, more posts than the fan-out threshold (20): FanoutFunction posts them
    with calls.acting_as("ws_connect.handler"):
        crowd = [rt.connect()[0] for _ in range(21)]
    with calls.acting_as("ws_message.handler"):
        for connection_id in crowd:
            rt.join(connection_id, "chat", "crowd")
    with calls.acting_as("stream_functions.handler"):
        rt.call("stream::set", stream_name="chat", group_id="crowd", item_id="c1", data={"n": 1})
    with calls.acting_as("broadcast.handler"):
        rt.pump.drain()
    assert all(rt.events(connection_id) == [("sync", None), ("create", "c1")] for connection_id in crowd)
    with calls.acting_as("dispatch.handler"):
        rt.dispatch.drain()  # app::missing cannot be queued: its claim is released
    with calls.acting_as("ws_disconnect.handler"):
        rt.disconnect(group)
    rt.posts.gone.add(stale)  # the gateway lost it without a $disconnect; `item` and `quiet` are still open
    with calls.acting_as("sweeper.handler"):
        rt.sweeper({}, LocalLambdaContext("sweeper"))


# --- which Lambdas the stack may invoke for its users --------------------------------------------------------
def test_user_functions_default_to_the_stacks_own_prefix() -> None:
    report = validate(TEMPLATE_PATH, only={"user functions"})
    assert report.problems("user functions") == []


@pytest.mark.parametrize("pattern", ["*", "**", "?*"])
def test_a_wildcard_only_pattern_by_default_fails_validation(tmp_path: Path, pattern: str) -> None:
    path = edited(tmp_path, 'Default: ""', f'Default: "{pattern}"', after="UserFunctionNamePattern:")
    problems = validate(path, only={"user functions"}).problems("user functions")
    assert problems == [f"UserFunctionNamePattern defaults to {pattern!r}, any Lambda of the account"]


def test_a_wildcard_only_pattern_is_allowed_with_consent(tmp_path: Path) -> None:
    path = edited(tmp_path, 'Default: ""', 'Default: "*"', after="UserFunctionNamePattern:")
    consented = tmp_path / "consented.yaml"
    text = path.read_text(encoding="utf-8")
    at = text.index("AllowAnyUserFunction:")
    consented.write_text(text[:at] + text[at:].replace('Default: "false"', 'Default: "true"', 1), encoding="utf-8")
    assert validate(consented, only={"user functions"}).problems("user functions") == []


def test_the_consent_rule_must_stay(tmp_path: Path) -> None:
    path = edited(tmp_path, "AnyUserFunctionNeedsConsent:", "SomethingElse:")
    problems = validate(path, only={"user functions"}).problems("user functions")
    assert "Rules.AnyUserFunctionNeedsConsent must apply when UserFunctionNamePattern is '*'" in problems


def test_every_invoke_of_a_user_function_is_bound_to_the_pattern() -> None:
    # the six policies that invoke user functions all name the stack's prefix unless a pattern is given
    bound = 'UserFunctions: !If [StackFunctionPattern, !Sub "${AWS::StackName}-*", !Ref UserFunctionNamePattern]'
    granted = ORIGINAL.count(bound)
    assert granted == ORIGINAL.count("function:${UserFunctions}") == 6
    assert "function:*" not in ORIGINAL
