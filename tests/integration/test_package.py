"""``iii-stream package``: an app's declarations become a SAM project (the core stack nested, a Lambda per function,
the HTTP API and its authorizer, registrations), checked offline; an app that could not deploy is refused."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from iii_stream.app import lambda_name
from iii_stream.infra import package as package_module
from iii_stream.infra.cli import main
from iii_stream.infra.deploy_checks import CHECKS
from iii_stream.infra.local.http_api import authorize_in_process
from iii_stream.infra.local.http_events import HttpRequest, RouteTable, auth_input, build_event
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.package import Packaged, check_app, lambda_requirements, load_app, package
from iii_stream.infra.package_template import PackageError
from iii_stream.infra.stack import FUNCTIONS_DIR, TEMPLATE_PATH
from iii_stream.infra.template import load_template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TODO_APP = ROOT / "examples" / "todo" / "app.py"
STREAM_FUNCTION_ARN = {"Fn::GetAtt": ["IiiStream", "Outputs.StreamFunctionArn"]}
SERVICE_TOKEN = {"Fn::GetAtt": ["IiiStream", "Outputs.RegistrationServiceToken"]}

SHOP_APP = '''
"""A small app: an auth function, a join gate with a condition, a stream trigger, an auth route and an open one."""
from helpers import allowed

from iii_stream.app import App

shop = App()


@shop.auth("shop::auth")
def authenticate(event, context):
    token = (event["query_params"].get("token") or [""])[0]
    token = token or event["headers"].get("authorization", "").removeprefix("Bearer ")
    if token == "boom":
        raise RuntimeError("the auth function failed")
    if token == "odd":
        return {"context": "not an object"}
    if not allowed(token):
        return {"unauthorized": True}
    headers = event["headers"]
    return {"context": {"user": token, "path": event["path"], "addr": event["addr"], "cookie": headers.get("cookie"),
                        "tags": event["query_params"].get("tag", [])}}


@shop.function("shop::is-member")
def is_member(event, context):
    return True


@shop.function("shop::join-gate")
def join_gate(event, context):
    return {"unauthorized": False}


@shop.function("shop::on-order")
def on_order(event, context):
    return None


@shop.http("GET", "/orders/{id}", auth=True)
def get_order(event, context):
    return {"id": event["pathParameters"]["id"], "user": event["requestContext"]["authorizer"]["lambda"]["user"]}


@shop.http("ANY", "/ping")
def ping(event, context):
    return {"ok": True}


shop.trigger("stream:join", "shop::join-gate", {"stream_name": "orders", "condition_function_id": "shop::is-member"},
             id="orders-gate")
shop.trigger("stream", "shop::on-order", {"stream_name": "orders", "group_id": None})
'''
HELPERS = "def allowed(token):\n    return token in ('alice', 'bob', 'odd', 'boom')\n"


def write_app(directory: Path, source: str, name: str = "app.py", **siblings: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for module, text in siblings.items():
        (directory / f"{module}.py").write_text(text)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture(scope="module")
def todo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example app, packaged (and checked, the core stack too) through the command line."""
    out = tmp_path_factory.mktemp("todo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["package", "--app", str(TODO_APP), "--out", str(out)]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def todo(todo_run: tuple[Path, str]) -> Path:
    return todo_run[0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Packaged]:
    """A small app, packaged; its template checked (the core stack's checks are the example's: the same copy)."""
    app = write_app(tmp_path_factory.mktemp("shop-src"), SHOP_APP, "shop_app.py", helpers=HELPERS)
    packaged = package(app, tmp_path_factory.mktemp("shop") / "out", check=False)
    packaged.app_checks = check_app(packaged.out, packaged.plan)
    return app, packaged


def resources(out: Path, kind: str) -> dict[str, dict[str, Any]]:
    template = load_template(out / "template.yaml")
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


# --- the example app --------------------------------------------------------------------------------------------


def test_the_example_app_and_its_core_stack_pass_every_check(todo_run: tuple[Path, str]) -> None:
    out, printed = todo_run
    lines = printed.splitlines()
    core = lines.index(f"checks of {out / 'iii-stream' / 'template.yaml'} (code {out / 'iii-stream' / 'functions'}/):")
    app_checks, core_checks = lines[1:core], lines[core + 1 : -1]
    assert lines[0] == f"checks of {out / 'template.yaml'} (code {out / 'app'}/):"
    assert all(line.startswith("ok ") for line in app_checks + core_checks), printed
    assert len(app_checks) == 7
    names = [re.sub(r"^ok\s+(.+?)\s+\d+\.\d\d s .*$", r"\1", line) for line in core_checks]
    assert names == [name for name, _ in CHECKS]
    assert re.search(r"handlers import .* \d+ import from functions/ alone", printed)
    assert lines[-1].startswith(f"{out}: ") and "valid in" in lines[-1]


def test_the_example_app_becomes_a_sam_project(todo: Path) -> None:
    template = load_template(todo / "template.yaml")
    core = load_template(TEMPLATE_PATH)
    declared = load_app(TODO_APP).app
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    stack = template["Resources"]["IiiStream"]
    assert stack["Type"] == "AWS::Serverless::Application"
    assert stack["Properties"]["Location"] == "iii-stream/template.yaml"
    parameters = stack["Properties"]["Parameters"]
    assert parameters["UserFunctionNamePattern"] == {"Fn::Sub": "${AWS::StackName}-fn-*"}
    assert parameters["AuthFunction"] == {"Fn::Sub": "${AWS::StackName}-fn-todo--auth"}
    assert set(parameters) - {"AuthFunction", "UserFunctionNamePattern"} == set(template["Parameters"])
    assert set(template["Parameters"]) < set(core["Parameters"])

    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == core["Globals"]["Function"]["Runtime"]
    assert globals_["CodeUri"] == "app/"
    assert globals_["Environment"]["Variables"] == {
        "STREAM_FUNCTION_NAME": {"Fn::GetAtt": ["IiiStream", "Outputs.StreamFunctionName"]}
    }
    functions = {
        r["Properties"]["Description"].removeprefix("iii-stream function "): r["Properties"]
        for r in resources(todo, "AWS::Serverless::Function").values()
        if r["Properties"]["Description"].startswith("iii-stream function ")
    }
    assert set(functions) == set(declared.functions)
    for function_id, props in functions.items():
        assert props["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-fn-" + lambda_name(function_id)}
        assert props["Handler"] == f"app.{declared.functions[function_id].__name__}"
        [policy] = props["Policies"]
        invoke = {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": STREAM_FUNCTION_ARN}
        assert policy["Statement"] == [invoke]
    assert functions["todo::on-change"]["Handler"] == "app.on_change"
    for output in ("WebSocketURL", "StreamFunctionName", "StreamFunctionArn", "RegistrationServiceToken"):
        assert output in core["Outputs"]


def test_the_example_apps_functions_and_triggers_are_registered(todo: Path) -> None:
    registrations = [r["Properties"] for r in resources(todo, "Custom::IiiStreamRegistration").values()]
    functions = {p["FunctionId"]: p for p in registrations if p["Kind"] == "function"}
    triggers = {p["TriggerId"]: p for p in registrations if p["Kind"] == "trigger"}
    assert {"todo::auth", "todo::join-gate", "todo::on-change"} <= set(functions)
    assert functions["todo::on-change"]["Target"] == {"Ref": "TodoOnChangeFunction"}
    assert all(p["ServiceToken"] == SERVICE_TOKEN for p in registrations)
    assert triggers["todo-on-change"] == {
        "ServiceToken": SERVICE_TOKEN,
        "Kind": "trigger",
        "TriggerId": "todo-on-change",
        "Type": "stream",
        "FunctionId": {"Ref": "TodoOnChangeRegistration"},
        "Config": {"stream_name": "todo"},
    }
    assert triggers["todo-join-gate"]["Type"] == "stream:join"


def test_the_example_apps_code_is_copied_without_the_tools(todo: Path) -> None:
    assert (todo / "app" / "app.py").read_bytes() == TODO_APP.read_bytes()
    assert (todo / "iii-stream" / "template.yaml").read_bytes() == TEMPLATE_PATH.read_bytes()
    for code in (todo / "app", todo / "iii-stream" / "functions"):
        package_dir = code / "iii_stream"
        assert (package_dir / "http_authorizer.py").is_file() and (package_dir / "core" / "registry.py").is_file()
        for absent in ("infra", "_stack", "testing.py"):
            assert not (package_dir / absent).exists()
        assert not [p for p in code.rglob("*") if p.is_symlink() or p.name == "__pycache__"]
        assert "pydantic" in (code / "requirements.txt").read_text()
    handlers = sorted(p.name for p in (todo / "iii-stream" / "functions").glob("*.py"))
    assert handlers == sorted(p.name for p in FUNCTIONS_DIR.glob("*.py"))


# --- a small app with routes ------------------------------------------------------------------------------------


def test_the_small_app_passes_every_check(shop: tuple[Path, Packaged]) -> None:
    _, packaged = shop
    assert packaged.ok, packaged.problems()
    assert [check.name for check in packaged.app_checks] == [
        "cfn-lint template",
        "sam translate",
        "cfn-lint translated",
        "handlers import",
        "iam least privilege",
        "user functions",
        "registrations",
    ]
    assert not [check for check in packaged.app_checks if check.skipped]


def test_routes_become_an_http_api_with_an_authorizer(shop: tuple[Path, Packaged]) -> None:
    _, packaged = shop
    out = packaged.out
    template = load_template(out / "template.yaml")
    api = template["Resources"]["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    cors = {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]}
    assert api["Properties"]["CorsConfiguration"] == cors
    assert api["Properties"]["Auth"]["Authorizers"]["IiiStreamAuth"] == {
        "FunctionArn": {"Fn::GetAtt": ["HttpAuthorizerFunction", "Arn"]},
        "AuthorizerPayloadFormatVersion": "2.0",
        "EnableSimpleResponses": True,
        "EnableFunctionDefaultPermissions": True,
        "Identity": {"ReauthorizeEvery": 0},
    }
    authorizer = template["Resources"]["HttpAuthorizerFunction"]["Properties"]
    assert authorizer["Handler"] == "_iii_stream_authorizer.handler"
    assert "import shop_app" in (out / "app" / "_iii_stream_authorizer.py").read_text()
    functions = resources(out, "AWS::Serverless::Function")
    order = functions["HttpGETOrdersIdFunction"]["Properties"]
    assert order["Handler"] == "shop_app.get_order"
    assert order["Events"] == {
        "GetOrdersId": {
            "Type": "HttpApi",
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "Method": "GET",
                "Path": "/orders/{id}",
                "PayloadFormatVersion": "2.0",
                "TimeoutInMillis": 30000,
                "Auth": {"Authorizer": "IiiStreamAuth"},
            },
        }
    }
    ping = functions["HttpANYPingFunction"]["Properties"]["Events"]["AnyPing"]["Properties"]
    assert (ping["Method"], ping["Path"], "Auth" in ping) == ("ANY", "/ping", False)
    assert template["Outputs"]["HttpApiURL"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
    }
    assert template["Outputs"]["WebSocketURL"]["Value"] == {"Fn::GetAtt": ["IiiStream", "Outputs.WebSocketURL"]}
    assert (out / "app" / "helpers.py").read_text() == HELPERS


def test_a_condition_function_is_registered_before_its_trigger(shop: tuple[Path, Packaged]) -> None:
    _, packaged = shop
    triggers = resources(packaged.out, "Custom::IiiStreamRegistration")
    gate = triggers["OrdersGateTrigger"]
    assert gate["DependsOn"] == ["ShopIsMemberRegistration"]
    assert gate["Properties"]["FunctionId"] == {"Ref": "ShopJoinGateRegistration"}
    assert gate["Properties"]["Config"] == {"stream_name": "orders", "condition_function_id": "shop::is-member"}
    [stream] = [t["Properties"] for t in triggers.values() if t["Properties"].get("Type") == "stream"]
    assert stream["TriggerId"] == "stream/shop::on-order/1" and stream["Config"] == {"stream_name": "orders"}


AUTH_REQUESTS = [
    HttpRequest(
        "GET", "/orders/42", "token=alice&tag=a&tag=b", [("Cookie", "s=1"), ("Cookie", "t=2")], b"", "10.0.0.7"
    ),
    HttpRequest("GET", "/orders/caf%C3%A9", "", [("Authorization", "Bearer bob"), ("User-Agent", "curl")]),
    HttpRequest("GET", "/orders/1", "token=mallory", []),
    HttpRequest("GET", "/orders/1", "", []),
    HttpRequest("GET", "/orders/1", "token=boom", []),
    HttpRequest("GET", "/orders/1", "token=odd", []),
]

_CALL_AUTHORIZER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _iii_stream_authorizer import handler
answers = []
for event in json.loads(sys.stdin.read()):
    try:
        answers.append(handler(event, None))
    except Exception as exc:
        answers.append({"raised": type(exc).__name__})
print(json.dumps(answers))
"""


def authorizer_event(request: HttpRequest, table: RouteTable) -> dict[str, Any]:
    """The event HTTP API gives the authorizer for a request: the route's event (its headers with the ones the
    gateway adds) without the body, plus the authorizer's own fields."""
    match = table.match(request.method, request.raw_path)
    assert match is not None
    event = build_event(request, match, request_id="r", now_ms=1_700_000_000_000, domain_name="abc.example")
    for body_field in ("body", "isBase64Encoded"):
        event.pop(body_field, None)
    route_arn = f"arn:aws:execute-api:us-east-1:123456789012:abc/$default/{request.method}{event['rawPath']}"
    return {"version": "2.0", "type": "REQUEST", "routeArn": route_arn, "identitySource": None, **event}


def test_the_generated_authorizer_answers_as_the_local_server(shop: tuple[Path, Packaged]) -> None:
    source, packaged = shop
    app = load_app(source).app
    auth = app.functions[app.auth_function_id or ""]
    authorize = authorize_in_process(auth, "shop::auth")
    assert authorize is not None
    table = RouteTable(app.routes)
    events = [authorizer_event(request, table) for request in AUTH_REQUESTS]
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _CALL_AUTHORIZER, str(packaged.out / "app")],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=offline_env(),
        check=True,
    )
    on_aws = json.loads(done.stdout)
    outcomes = []
    for request, aws in zip(AUTH_REQUESTS, on_aws, strict=True):
        try:
            context = authorize(auth_input(request))
            local: dict[str, Any] = {"isAuthorized": context is not None}
            if context is not None:
                local["context"] = context
        except Exception as exc:  # noqa: BLE001 - the local server answers 500, as API Gateway does
            local = {"raised": type(exc).__name__}
        assert aws == local, request
        outcomes.append(aws)
    assert outcomes[0]["context"] == {
        "user": "alice",
        "path": "/orders/42",
        "addr": "10.0.0.7:0",
        "cookie": "s=1; t=2",
        "tags": ["a", "b"],
    }
    assert outcomes[1]["context"]["path"] == "/orders/caf\u00e9"
    refused, failed = {"isAuthorized": False}, [{"raised": "RuntimeError"}, {"raised": "ValueError"}]
    assert outcomes[2:] == [refused, refused, *failed]


def test_an_app_without_functions_is_fine(tmp_path: Path) -> None:
    app = write_app(tmp_path / "src", "from iii_stream.app import App\napp = App()\n")
    packaged = package(app, tmp_path / "out", check=False)
    template = load_template(tmp_path / "out" / "template.yaml")
    assert list(template["Resources"]) == ["IiiStream"]
    assert "AuthFunction" not in template["Resources"]["IiiStream"]["Properties"]["Parameters"]
    assert "HttpApiURL" not in template["Outputs"]
    checks = check_app(packaged.out, packaged.plan)
    assert [p for check in checks for p in check.problems] == []


def test_an_installed_package_takes_the_lambda_requirements_from_its_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package_module, "FUNCTIONS_DIR", tmp_path)  # a wheel's _stack/functions: no requirements.txt
    names = {re.sub(r"[^A-Za-z0-9_.-].*$", "", line).lower() for line in lambda_requirements()}
    assert {"aws-lambda-powertools", "pydantic"} <= names
    assert not names & {"boto3", "pyyaml", "moto", "pytest", "cfn-lint"}


# --- refused ----------------------------------------------------------------------------------------------------

HEADER = "from iii_stream.app import App\napp = App()\n\n"
F = "def f(event, context):\n    return None\n\n"


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (
            F + "app.function('a::f')(f)\napp.trigger('stream', 'a::missing', {'stream_name': 's'}, id='t1')\n",
            ["trigger 't1' (stream): function 'a::missing' is not declared (@app.function)"],
        ),
        (
            F + "app.function('a::f')(f)\n"
            "app.trigger('stream:join', 'a::f', {'condition_function_id': 'a::nope'}, id='t1')\n",
            ["trigger 't1' (stream:join): condition_function_id 'a::nope' is not declared (@app.function)"],
        ),
        (
            F + "app.http('GET', '/me', auth=True)(f)\n",
            ["route GET /me: declared with auth=True but the app declares no auth function (@app.auth)"],
        ),
        (
            F + "app.function('a' * 40)(f)\n",
            [
                f"function {'a' * 40!r}: its Lambda name <stack name>-fn-{'a' * 40} would be 68 characters with a "
                "24-character stack name, over Lambda's 64; shorten the function id or --prefix, or lower "
                "--max-stack-name"
            ],
        ),
        (
            F + "app.function('a::b')(f)\napp.function('a--b')(f)\n",
            ["function 'a--b': its Lambda name 'fn-a--b' is also 'a::b''s; give one of them another id"],
        ),
        (
            "app.function('a::f')(lambda event, context: None)\n",
            [
                "function 'a::f': its handler '<lambda>' is not a top-level name of app.py, so Lambda cannot find it; "
                "define it there (or import it there by name)"
            ],
        ),
        (
            F + "app.function('a::f')(f)\napp.trigger('stream', 'a::f', {}, id='t1')\n",
            ["trigger 't1' (stream): the registry refuses it: A stream trigger needs a non-empty config.stream_name."],
        ),
        (
            F + "app.function('a::f')(f)\napp.trigger('stream', 'a::f', {'stream_name': 's'}, id='t1')\n"
            "app.trigger('stream', 'a::f', {'stream_name': 'u'}, id='t1')\n",
            ["trigger 't1' (stream): the trigger id is declared twice; give each trigger its own id"],
        ),
    ],
    ids=[
        "undeclared-function",
        "undeclared-condition",
        "auth-without-auth",
        "too-long",
        "same-name",
        "lambda",
        "bad-config",
        "twice",
    ],
)
def test_an_app_that_could_not_deploy_is_refused(tmp_path: Path, body: str, problems: list[str]) -> None:
    app = write_app(tmp_path / "src", HEADER + body)
    with pytest.raises(PackageError) as refused:
        package(app, tmp_path / "out")
    assert refused.value.problems == problems
    assert not (tmp_path / "out").exists()


def test_the_naming_options_are_checked(tmp_path: Path) -> None:
    app = write_app(tmp_path / "src", HEADER)
    with pytest.raises(PackageError) as refused:
        package(app, tmp_path / "out", prefix="my app", max_stack_name=0)
    assert refused.value.problems == [
        "--prefix 'my app' must be 1 to 20 letters, digits, '-' or '_'",
        "--max-stack-name 0 must be 1 to 128 (CloudFormation's limit)",
    ]


def test_the_command_prints_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = F + "app.http('GET', '/a', auth=True)(f)\napp.trigger('stream', 'x::y', {'stream_name': 's'}, id='t')\n"
    app = write_app(tmp_path / "src", HEADER + body)
    assert main(["package", "--app", str(app), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "iii-stream package: trigger 't' (stream): function 'x::y' is not declared (@app.function)",
        "iii-stream package: route GET /a: declared with auth=True but the app declares no auth function (@app.auth)",
    ]


def test_a_directory_it_did_not_write_is_left_alone(tmp_path: Path) -> None:
    app = write_app(tmp_path / "src", HEADER)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(PackageError, match="is not empty and was not written by iii-stream package"):
        package(app, tmp_path / "mine", check=False)
    package(app, tmp_path / "out", check=False)
    package(app, tmp_path / "out", check=False)  # its own output: replaced
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(PackageError, match="holds the app itself"):
        package(app, tmp_path, check=False)
