"""The SAM template ``iii-stream package`` writes for an app: pure functions from its declarations to a dict.

``plan_app`` reads an ``App`` (its functions, triggers, auth function and HTTP routes) into a ``Plan`` and refuses,
with one sentence per problem, what could not deploy; ``build_template`` turns the plan and the core stack's own
template into the app's template; ``dump_yaml`` writes it with CloudFormation's short tags (``!Ref``, ``!Sub``,
``!GetAtt``). The template holds:

- ``IiiStream``: the core stack, an ``AWS::Serverless::Application`` at ``iii-stream/template.yaml``, given the
  auth function by name (``!Sub "${AWS::StackName}-<prefix>-<name>"``, so no dependency on the function and no
  cycle) and ``UserFunctionNamePattern`` ``${AWS::StackName}-<prefix>-*``: the core may invoke this app's
  functions and no other Lambda. Its other parameters are the app template's own, passed through;
- one ``AWS::Serverless::Function`` per declared function (``FunctionName`` ``${AWS::StackName}-<prefix>-<name>``,
  ``<name>`` being ``lambda_name(function_id)``, the name it has locally), code ``app/``, ``STREAM_FUNCTION_NAME``
  set to the core's StreamFunction, and a policy to invoke that function alone; its own ``Timeout``, ``MemorySize``
  and ``Environment`` when ``App.function`` declared them;
- the HTTP routes on one ``AWS::Serverless::HttpApi`` (open CORS, as the local server answers), an ``HttpApi`` event
  per route, and for ``auth=True`` routes a Lambda authorizer (payload 2.0, simple responses, no identity source,
  no caching) running ``iii_stream.http_authorizer`` on the app's auth function;
- a ``Custom::IiiStreamRegistration`` per function (Target: its Lambda name) and per trigger (FunctionId: a ``!Ref``
  of the function's registration, so functions are registered before their triggers and removed after them);
- the outputs ``WebSocketURL``, ``HttpApiURL`` (when there are routes), ``StreamFunctionName`` and
  ``RegistryFunctionName``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from iii_stream.app import App, DeclaredRoute, DeclaredTrigger, FunctionSettings, lambda_name

CORE_LOGICAL_ID: Final = "IiiStream"
CORE_LOCATION: Final = "iii-stream/template.yaml"
APP_CODE_URI: Final = "app/"
HTTP_API_LOGICAL_ID: Final = "HttpApi"
AUTHORIZER_LOGICAL_ID: Final = "HttpAuthorizerFunction"
AUTHORIZER_MODULE: Final = "_iii_stream_authorizer"  # generated into app/: wires the app's auth function
AUTHORIZER_NAME: Final = "IiiStreamAuth"
REGISTRATION_TYPE: Final = "Custom::IiiStreamRegistration"
STREAM_FUNCTION_SETTING: Final = "STREAM_FUNCTION_NAME"
LAMBDA_NAME_LIMIT: Final = 64
DEFAULT_PREFIX: Final = "fn"
DEFAULT_MAX_STACK_NAME: Final = 24
MAX_STACK_NAME: Final = 128
HTTP_TIMEOUT_MS: Final = 30000  # HTTP API's integration timeout, as the local server's
# The core outputs the app's template reads.
CORE_OUTPUTS: Final = (
    "WebSocketURL",
    "StreamFunctionName",
    "StreamFunctionArn",
    "RegistryFunctionName",
    "RegistrationServiceToken",
)
# The core parameters the package sets itself; the others become the app template's own, passed through.
SET_BY_PACKAGE: Final = ("AuthFunction", "UserFunctionNamePattern", "AllowAnyUserFunction")
# What the app's functions take from the core's Globals.Function, so the runtime is defined once.
FROM_CORE_GLOBALS: Final = ("Runtime", "Architectures", "Timeout", "MemorySize")
_RESERVED: Final = frozenset({CORE_LOGICAL_ID, HTTP_API_LOGICAL_ID, AUTHORIZER_LOGICAL_ID, "ServerlessHttpApi"})
_PREFIX: Final = re.compile(r"^[A-Za-z0-9_-]{1,20}$")


class PackageError(Exception):
    """The app cannot be packaged; ``problems`` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class FunctionPlan:
    function_id: str
    name: str  # the Lambda name after "${AWS::StackName}-": "<prefix>-<lambda_name(function_id)>"
    handler: str  # "app.on_change"
    logical_id: str
    registration_id: str
    routes: tuple[tuple[str, DeclaredRoute], ...]  # (event name, route)
    settings: FunctionSettings = FunctionSettings()  # its own Timeout, MemorySize, Environment (App.function)


@dataclass(frozen=True)
class TriggerPlan:
    trigger: DeclaredTrigger
    logical_id: str


@dataclass(frozen=True)
class Plan:
    app_file: str  # "app.py"
    module: str  # "app"
    app_variable: str  # the module's name of the App ("app")
    prefix: str
    functions: tuple[FunctionPlan, ...]
    triggers: tuple[TriggerPlan, ...]
    auth_function_id: str | None
    auth_routes: bool

    @property
    def has_routes(self) -> bool:
        return any(function.routes for function in self.functions)

    def function(self, function_id: str) -> FunctionPlan:
        return next(function for function in self.functions if function.function_id == function_id)


# --- the plan -------------------------------------------------------------------------------------------------


def camel(text: str) -> str:
    """``todo::on-change`` -> ``TodoOnChange`` (letters and digits only, as logical ids must be)."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "".join(word[:1].upper() + word[1:] for word in words)[:200]


class _Ids:
    """Unique logical ids: the first ``<Base><Suffix>``, then ``<Base>2<Suffix>`` and so on."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def new(self, base: str, suffix: str) -> str:
        base = base if base[:1].isalpha() else "F" + base
        candidate, number = base + suffix, 1
        while candidate in self._taken:
            number += 1
            candidate = f"{base}{number}{suffix}"
        self._taken.add(candidate)
        return candidate


def plan_app(
    app: App,
    names: Mapping[str, str],
    *,
    app_file: str,
    module: str,
    app_variable: str,
    prefix: str = DEFAULT_PREFIX,
    max_stack_name: int = DEFAULT_MAX_STACK_NAME,
) -> Plan:
    """The resources the app becomes; raises PackageError listing every problem.

    ``names`` maps a function id to its handler's top-level name in the app module (``Handler: <module>.<name>``).
    A function's Lambda is named ``<stack name>-<prefix>-<lambda_name(function_id)>``: with a stack name of up to
    ``max_stack_name`` characters, that must fit Lambda's 64."""
    problems: list[str] = []
    if not _PREFIX.match(prefix):
        problems.append(f"--prefix {prefix!r} must be 1 to 20 letters, digits, '-' or '_'")
    if not 1 <= max_stack_name <= MAX_STACK_NAME:
        problems.append(f"--max-stack-name {max_stack_name} must be 1 to {MAX_STACK_NAME} (CloudFormation's limit)")
    ids = _Ids(_RESERVED)
    functions: list[FunctionPlan] = []
    by_name: dict[str, str] = {}
    for function_id, handler in app.functions.items():
        short = lambda_name(function_id)
        name = f"{prefix}-{short}"
        longest = max_stack_name + 1 + len(name)
        if longest > LAMBDA_NAME_LIMIT:
            problems.append(
                f"function {function_id!r}: its Lambda name <stack name>-{name} would be {longest} characters with a "
                f"{max_stack_name}-character stack name, over Lambda's {LAMBDA_NAME_LIMIT}; shorten the function id "
                "or --prefix, or lower --max-stack-name"
            )
        if short in by_name:
            problems.append(
                f"function {function_id!r}: its Lambda name {name!r} is also {by_name[short]!r}'s; "
                "give one of them another id"
            )
        by_name.setdefault(short, function_id)
        attribute = names.get(function_id)
        if attribute is None:
            problems.append(
                f"function {function_id!r}: its handler {getattr(handler, '__name__', handler)!r} is not a top-level "
                f"name of {app_file}, so Lambda cannot find it; define it there (or import it there by name)"
            )
        base = camel(short) or "F"
        routes = [route for route in app.routes if route.function_id == function_id]
        events = _Ids()
        functions.append(
            FunctionPlan(
                function_id,
                name,
                f"{module}.{attribute}",
                ids.new(base, "Function"),
                ids.new(base, "Registration"),
                tuple((events.new(_event_base(route), ""), route) for route in routes),
                app.settings_of(function_id),
            )
        )
    problems += _trigger_problems(app)
    guarded = [route.route_key for route in app.routes if route.auth]
    if guarded and not (app.auth_function_id and app.auth_function_id in app.functions):
        problems += [
            f"route {key}: declared with auth=True but the app declares no auth function (@app.auth)" for key in guarded
        ]
    if problems:
        raise PackageError(problems)
    triggers = tuple(TriggerPlan(declared, ids.new(camel(declared.id) or "T", "Trigger")) for declared in app.triggers)
    return Plan(
        app_file,
        module,
        app_variable,
        prefix,
        tuple(functions),
        triggers,
        app.auth_function_id,
        bool(guarded),
    )


def _event_base(route: DeclaredRoute) -> str:
    """``GET /todos/{id}`` -> ``GetTodosId``."""
    return camel(f"{route.method.lower()} {route.path}")


def _trigger_problems(app: App) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for declared in app.triggers:
        where = f"trigger {declared.id!r} ({declared.type})"
        if declared.id in seen:
            problems.append(f"{where}: the trigger id is declared twice; give each trigger its own id")
        seen.add(declared.id)
        if declared.function_id not in app.functions:
            problems.append(f"{where}: function {declared.function_id!r} is not declared (@app.function)")
        condition = declared.config.get("condition_function_id")
        if condition and condition not in app.functions:
            problems.append(f"{where}: condition_function_id {condition!r} is not declared (@app.function)")
    return problems


# --- the template ---------------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"Ref": name}


def _sub(text: str) -> dict[str, Any]:
    return {"Fn::Sub": text}


def _core_output(name: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [CORE_LOGICAL_ID, f"Outputs.{name}"]}


def _function_name(plan: Plan, function_id: str) -> dict[str, Any]:
    return _sub("${AWS::StackName}-" + plan.function(function_id).name)


def core_problems(core: Mapping[str, Any]) -> list[str]:
    """What the app's template needs of the core template and it lacks."""
    outputs, parameters = core.get("Outputs") or {}, core.get("Parameters") or {}
    runtime = ((core.get("Globals") or {}).get("Function") or {}).get("Runtime")
    return (
        [f"the core template has no output {name}" for name in CORE_OUTPUTS if name not in outputs]
        + [f"the core template has no parameter {name}" for name in SET_BY_PACKAGE[:2] if name not in parameters]
        + ([] if isinstance(runtime, str) else ["the core template's Globals.Function has no Runtime"])
    )


def build_template(plan: Plan, core: Mapping[str, Any]) -> dict[str, Any]:
    """The app's SAM template (intrinsics in their long form, as ``infra.template.load_template`` reads them)."""
    problems = core_problems(core)
    if problems:
        raise PackageError(problems)
    core_globals = (core.get("Globals") or {}).get("Function") or {}
    passed = {k: v for k, v in (core.get("Parameters") or {}).items() if k not in SET_BY_PACKAGE}
    resources: dict[str, Any] = {CORE_LOGICAL_ID: _core_stack(plan, passed)}
    for function in plan.functions:
        resources[function.logical_id] = _function(plan, function)
    if plan.auth_routes:
        resources[AUTHORIZER_LOGICAL_ID] = _authorizer_function(plan)
    if plan.has_routes:
        resources[HTTP_API_LOGICAL_ID] = _http_api(plan)
    for function in plan.functions:
        resources[function.registration_id] = _function_registration(plan, function)
    for trigger in plan.triggers:
        resources[trigger.logical_id] = _trigger_registration(plan, trigger.trigger)
    outputs: dict[str, Any] = {
        "WebSocketURL": {"Description": "Give this to the clients.", "Value": _core_output("WebSocketURL")},
    }
    if plan.has_routes:
        outputs["HttpApiURL"] = {
            "Description": "The app's HTTP routes.",
            "Value": _sub("https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"),
        }
    outputs["StreamFunctionName"] = {
        "Description": "The stream::* functions (iii-stream call --aws --function-name).",
        "Value": _core_output("StreamFunctionName"),
    }
    outputs["RegistryFunctionName"] = {
        "Description": "The registry::* functions (iii-stream functions/triggers --aws --function-name).",
        "Value": _core_output("RegistryFunctionName"),
    }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"{plan.app_file} on iii-stream for AWS (written by iii-stream package; do not edit)",
    }
    if passed:
        template["Parameters"] = passed
    template["Globals"] = {
        "Function": {
            **{key: core_globals[key] for key in FROM_CORE_GLOBALS if key in core_globals},
            "CodeUri": APP_CODE_URI,
            "Environment": {"Variables": {STREAM_FUNCTION_SETTING: _core_output("StreamFunctionName")}},
        }
    }
    template["Resources"] = resources
    template["Outputs"] = outputs
    return template


def _core_stack(plan: Plan, passed: Mapping[str, Any]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if plan.auth_function_id:
        parameters["AuthFunction"] = _function_name(plan, plan.auth_function_id)
    parameters["UserFunctionNamePattern"] = _sub("${AWS::StackName}-" + plan.prefix + "-*")
    parameters.update({name: _ref(name) for name in passed})
    return {
        "Type": "AWS::Serverless::Application",
        "Properties": {"Location": CORE_LOCATION, "Parameters": parameters},
    }


def _invoke_stream_function() -> list[dict[str, Any]]:
    """Invoke the core's StreamFunction, and nothing else (``StreamClient.via_lambda``)."""
    statement = {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": _core_output("StreamFunctionArn")}
    return [{"Version": "2012-10-17", "Statement": [statement]}]


def _function(plan: Plan, function: FunctionPlan) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "FunctionName": _sub("${AWS::StackName}-" + function.name),
        "Handler": function.handler,
        "Description": f"iii-stream function {function.function_id}"[:256],
        "Policies": _invoke_stream_function(),
    }
    settings = function.settings
    if settings.timeout is not None:
        properties["Timeout"] = settings.timeout
    if settings.memory_size is not None:
        properties["MemorySize"] = settings.memory_size
    if settings.environment:  # merged over the Globals' STREAM_FUNCTION_NAME by SAM
        properties["Environment"] = {"Variables": dict(settings.environment)}
    if function.routes:
        properties["Events"] = {name: _route_event(route) for name, route in function.routes}
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


def _route_event(route: DeclaredRoute) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "ApiId": _ref(HTTP_API_LOGICAL_ID),
        "Method": route.method,
        "Path": route.path,
        "PayloadFormatVersion": "2.0",
        "TimeoutInMillis": HTTP_TIMEOUT_MS,
    }
    if route.auth:
        properties["Auth"] = {"Authorizer": AUTHORIZER_NAME}
    return {"Type": "HttpApi", "Properties": properties}


def _authorizer_function(plan: Plan) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Handler": f"{AUTHORIZER_MODULE}.handler",
            "Description": f"HTTP API authorizer: the auth function {plan.auth_function_id} of the auth=True routes"[
                :256
            ],
            "Policies": _invoke_stream_function(),  # the auth function runs in it, as in its own Lambda
        },
    }


def _http_api(plan: Plan) -> dict[str, Any]:
    properties: dict[str, Any] = {
        # As the local server answers: a preflight from any origin, for any method and headers.
        "CorsConfiguration": {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]},
    }
    if plan.auth_routes:
        properties["Auth"] = {
            "Authorizers": {
                AUTHORIZER_NAME: {
                    "FunctionArn": {"Fn::GetAtt": [AUTHORIZER_LOGICAL_ID, "Arn"]},
                    "AuthorizerPayloadFormatVersion": "2.0",
                    "EnableSimpleResponses": True,
                    "EnableFunctionDefaultPermissions": True,
                    # No identity source and no caching: every request is authorized, as locally.
                    "Identity": {"ReauthorizeEvery": 0},
                }
            }
        }
    return {"Type": "AWS::Serverless::HttpApi", "Properties": properties}


def _function_registration(plan: Plan, function: FunctionPlan) -> dict[str, Any]:
    return {
        "Type": REGISTRATION_TYPE,
        "Properties": {
            "ServiceToken": _core_output("RegistrationServiceToken"),
            "Kind": "function",
            "FunctionId": function.function_id,
            "Target": _ref(function.logical_id),
            "Description": f"declared in {plan.app_file}",
        },
    }


def _trigger_registration(plan: Plan, trigger: DeclaredTrigger) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "Type": REGISTRATION_TYPE,
        "Properties": {
            "ServiceToken": _core_output("RegistrationServiceToken"),
            "Kind": "trigger",
            "TriggerId": trigger.id,
            "Type": trigger.type,
            "FunctionId": _ref(plan.function(trigger.function_id).registration_id),
            "Config": {key: value for key, value in trigger.config.items() if value is not None},
        },
    }
    condition = trigger.config.get("condition_function_id")
    if condition:  # registered before the trigger, removed after it
        resource["DependsOn"] = [plan.function(condition).registration_id]
    return resource


def authorizer_source(plan: Plan) -> str:
    """``app/_iii_stream_authorizer.py``: the app's auth function as the HTTP API authorizer."""
    return (
        f'"""The HTTP API authorizer of {plan.app_file}\'s auth=True routes (written by iii-stream package; do not '
        'edit)."""\n\n'
        f"import {plan.module}\n"
        "from iii_stream.http_authorizer import authorizer_for\n\n"
        f"handler = authorizer_for({plan.module}.{plan.app_variable})\n"
    )


# --- YAML -----------------------------------------------------------------------------------------------------

_SHORT_TAGS: Final = {"Ref": "!Ref", "Fn::Sub": "!Sub", "Fn::GetAtt": "!GetAtt"}


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # pyyaml ships no types
    """Writes ``{"Ref": x}`` as ``!Ref x``, ``{"Fn::Sub": s}`` as ``!Sub s``, ``{"Fn::GetAtt": [a, b]}`` as
    ``!GetAtt a.b``."""


def _represent_dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.Node:
    if len(value) == 1:
        [(key, inner)] = value.items()
        tag = _SHORT_TAGS.get(key)
        if tag == "!GetAtt" and isinstance(inner, list) and all(isinstance(part, str) for part in inner):
            return dumper.represent_scalar(tag, ".".join(inner))
        if tag is not None and isinstance(inner, str):
            return dumper.represent_scalar(tag, inner)
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items())


_Dumper.add_representer(dict, _represent_dict)


def dump_yaml(template: Mapping[str, Any]) -> str:
    text: str = yaml.dump(dict(template), Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return text
