"""The checks ``make validate`` runs on a template (see infra/validate.py): each returns a summary or raises Failed."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iii_stream.infra import deploy_api, deploy_offline, deploy_policies
from iii_stream.infra.handlers import load_handler
from iii_stream.infra.stack import FUNCTIONS_DIR, TEMPLATE_PATH
from iii_stream.infra.template import create_table_kwargs, table_resources

ROOT = TEMPLATE_PATH.parent
REGION = deploy_offline.REGION
# Where tests, the local service and the benchmarks create tables by logical id (``{"ItemsTable": name}``).
TABLE_USERS = ("tests", "infra", "bench")
_TABLE_KEY = re.compile(r"""["'](\w+Table)["']\s*:""")
_NOT_SOURCE = {"node_modules", "__pycache__", "results"}
REGISTRATION_TYPE = "Custom::IiiStreamRegistration"


class Failed(Exception):
    """The check found problems (each a sentence)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems


class Skipped(Exception):
    """The check could not run (its input is missing)."""


def _translated(ctx: Context) -> dict[str, Any]:
    if ctx.translated is None:
        raise Skipped("needs the SAM translation")
    return ctx.translated


@dataclass
class Context:
    """The template under validation: as written (CloudFormation tags read) and as SAM translates it."""

    path: Path
    raw: dict[str, Any] = field(default_factory=dict)
    translated: dict[str, Any] | None = None

    def functions(self) -> dict[str, dict[str, Any]]:
        """Every AWS::Serverless::Function, its Properties merged over Globals.Function."""
        defaults = (self.raw.get("Globals") or {}).get("Function") or {}
        found = {}
        for name, resource in self.raw["Resources"].items():
            if resource.get("Type") == "AWS::Serverless::Function":
                props = {**defaults, **(resource.get("Properties") or {})}
                env = {**_variables(defaults), **_variables(resource.get("Properties") or {})}
                props["Environment"] = {"Variables": env}
                found[name] = props
        return found

    def ours(self) -> dict[str, dict[str, Any]]:
        """The functions whose code is functions/ (this project's handlers)."""
        return {
            name: props
            for name, props in self.functions().items()
            if isinstance(props.get("CodeUri"), str) and (ROOT / props["CodeUri"]).resolve() == FUNCTIONS_DIR
        }


def _variables(props: dict[str, Any]) -> dict[str, Any]:
    return dict(((props.get("Environment") or {}).get("Variables")) or {})


def _lint(text: str, lines: bool = True) -> list[str]:
    """cfn-lint's errors and warnings, each with where it is (the line, or the path in a translated template)."""
    from cfnlint.api import ManualArgs, lint

    found = []
    for match in lint(text, config=ManualArgs(regions=[REGION])):
        if match.rule.id[:1] in ("E", "W"):
            path = getattr(match, "path_string", "")
            where = f"line {match.linenumber}" + (f" ({path})" if path else "") if lines or not path else path
            message = match.message if len(match.message) <= 200 else match.message[:200] + "..."
            found.append(f"{match.rule.id} {where}: {message}")
    return found


def check_lint_template(ctx: Context) -> str:
    problems = _lint(ctx.path.read_text(encoding="utf-8"))
    if problems:
        raise Failed(problems)
    return "no errors or warnings"


def check_translate(ctx: Context) -> str:
    try:
        ctx.translated = deploy_offline.translate(ctx.path)
    except deploy_offline.TranslationError as exc:
        raise Failed(exc.problems) from exc
    return f"{len(ctx.translated['Resources'])} CloudFormation resources"


def check_lint_translated(ctx: Context) -> str:
    problems = _lint(json.dumps(_translated(ctx)), lines=False)
    if problems:
        raise Failed(problems)
    return "no errors or warnings"


def check_handlers(ctx: Context) -> str:
    problems = []
    for name, props in ctx.functions().items():
        spec, code_uri = props.get("Handler"), props.get("CodeUri")
        if not isinstance(spec, str) or "." not in spec or not isinstance(code_uri, str):
            problems.append(f"{name}: Handler {spec!r} / CodeUri {code_uri!r} is not module.function in a directory")
            continue
        module = spec.rpartition(".")[0]
        source = ROOT / code_uri / (module.replace(".", "/") + ".py")
        if not source.is_file():
            problems.append(f"{name}: handler {spec}: {source.relative_to(ROOT)} does not exist")
        elif name in ctx.ours():
            try:
                load_handler(spec)
            except Exception as exc:
                problems.append(f"{name}: handler {spec} does not import: {type(exc).__name__}: {exc}")
    if problems:
        raise Failed(problems)
    return f"{len(ctx.functions())} handlers exist, {len(ctx.ours())} of functions/ import"


def settings_read_by_code() -> list[str]:
    """The environment variables functions/iii_stream/config.py reads (its NAME = "NAME" constants)."""
    from iii_stream import config

    return [value for name, value in vars(config).items() if name.isupper() and name == value]


def check_environment(ctx: Context) -> str:
    needed = settings_read_by_code()
    problems = [
        f"{name}: {variable} is not set (functions/iii_stream/config.py reads it)"
        for name, props in ctx.ours().items()
        for variable in needed
        if variable not in props["Environment"]["Variables"]
    ]
    if problems:
        raise Failed(problems)
    return f"{len(needed)} settings set for {len(ctx.ours())} functions"


def check_iam(ctx: Context) -> str:
    resources = _translated(ctx)["Resources"]
    ours = ctx.ours()
    problems: list[str] = []
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role_ref = resource["Properties"].get("Role")
        role = (
            resources.get(role_ref["Fn::GetAtt"][0], {})
            if isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref
            else {}
        )
        every, authored = deploy_policies.role_grants(role)
        for statement in every:
            problems += deploy_policies.wildcard_problems(name, statement)
        problems += deploy_policies.managed_policy_problems(name, role)
        handler = resource["Properties"].get("Handler")
        if name not in ours:
            continue
        if handler not in deploy_policies.REQUIRED_ACCESS:
            problems.append(
                f"{name}: no access profile for {handler}; add it to REQUIRED_ACCESS in infra/deploy_policies.py"
            )
            continue
        problems += deploy_policies.access_problems(name, handler, authored)
    if problems:
        raise Failed(problems)
    return f"{len(ours)} functions grant exactly what their code uses; no wildcards"


def check_permissions(ctx: Context) -> str:
    permissions = {
        name: resource.get("Properties", {})
        for name, resource in _translated(ctx)["Resources"].items()
        if resource.get("Type") == "AWS::Lambda::Permission"
    }
    problems = [p for name, props in permissions.items() for p in deploy_policies.permission_problems(name, props)]
    if problems:
        raise Failed(problems)
    return f"{len(permissions)} invoke permissions, each with a SourceArn (API Gateway: API, stage and route)"


def check_websocket_api(ctx: Context) -> str:
    handlers = {name: str(props.get("Handler")) for name, props in ctx.functions().items()}
    problems = deploy_api.api_problems(ctx.raw["Resources"], handlers)
    if problems:
        raise Failed(problems)
    return f"WEBSOCKET on {deploy_api.ROUTE_SELECTION}: {', '.join(deploy_api.ROUTES)} wired, deployed, permitted"


def tables_used_outside(root: Path = ROOT) -> dict[str, set[str]]:
    """Table logical ids the tests, the local service and the benchmarks create, by file."""
    used: dict[str, set[str]] = {}
    for folder in TABLE_USERS:
        for directory, subdirectories, files in os.walk(root / folder):
            subdirectories[:] = [d for d in subdirectories if d not in _NOT_SOURCE and not d.startswith(".")]
            for path in (Path(directory) / name for name in files if name.endswith(".py")):
                for logical_id in _TABLE_KEY.findall(path.read_text(encoding="utf-8")):
                    used.setdefault(logical_id, set()).add(str(path.relative_to(root)))
    return used


def check_tables(ctx: Context) -> str:
    declared = table_resources(ctx.raw)
    problems = [
        f"{', '.join(sorted(files))} create(s) {logical_id}, which the template does not declare"
        for logical_id, files in tables_used_outside().items()
        if logical_id not in declared
    ]
    for logical_id in declared:
        try:
            kwargs = create_table_kwargs(logical_id, "t", ctx.raw)
        except (KeyError, TypeError) as exc:
            problems.append(f"{logical_id}: cannot derive create_table arguments: {exc!r}")
            continue
        problems += _table_problems(logical_id, kwargs)
    named = set()
    for function, variable, value in _table_settings(ctx):
        ref = value.get("Ref") if isinstance(value, dict) else None
        if ref in declared:
            named.add(ref)
        else:
            problems.append(f"{function}: {variable} is {value!r}, not a !Ref to a table of the template")
    problems += [f"{table} is declared but no *_TABLE setting names it" for table in declared if table not in named]
    for resource in {r for access in deploy_policies.REQUIRED_ACCESS.values() for r in access if "/index/" in r}:
        table, _, index = resource.partition("/index/")
        indexes = [
            i["IndexName"] for i in declared.get(table, {}).get("Properties", {}).get("GlobalSecondaryIndexes", [])
        ]
        if index not in indexes:
            problems.append(f"{table} has no index {index}, which the code queries")
    if problems:
        raise Failed(problems)
    return f"{', '.join(declared)}; the tests and the local service create only these"


def _table_settings(ctx: Context) -> list[tuple[str, str, Any]]:
    """(function, variable, value) of every ``*_TABLE`` setting of this project's functions."""
    return [
        (function, variable, value)
        for function, props in ctx.ours().items()
        for variable, value in props["Environment"]["Variables"].items()
        if variable.endswith("_TABLE")
    ]


def _table_problems(logical_id: str, kwargs: dict[str, Any]) -> list[str]:
    defined = {a["AttributeName"] for a in kwargs["AttributeDefinitions"]}
    keys = {k["AttributeName"] for k in kwargs["KeySchema"]}
    for index in kwargs.get("GlobalSecondaryIndexes", []):
        keys |= {k["AttributeName"] for k in index["KeySchema"]}
    return [f"{logical_id}: key attribute {a} is not defined" for a in sorted(keys - defined)] + [
        f"{logical_id}: attribute {a} is defined but is no key" for a in sorted(defined - keys)
    ]


def check_outputs(ctx: Context) -> str:
    outputs = ctx.raw.get("Outputs") or {}
    wanted = ["WebSocketURL", "RegistrationServiceToken"]
    wanted += [f"{name}{suffix}" for name in ctx.functions() for suffix in ("Name", "Arn")]
    wanted += [f"{name}Name" for name in table_resources(ctx.raw)]
    missing = [name for name in wanted if name not in outputs]
    if missing:
        raise Failed([f"output {name} is missing" for name in missing])
    return f"{len(outputs)} outputs: the WebSocket URL, every function's name and ARN, every table"


_WILDCARD_ONLY = re.compile(r"^[*?]+$")


def check_user_functions(ctx: Context) -> str:
    """The Lambdas the stack may invoke for its users default to the stack's own prefix, never to any Lambda of
    the account: a wildcard-only pattern needs the deployer's consent (AllowAnyUserFunction), which a Rule
    asserts at deploy time."""
    parameters = ctx.raw.get("Parameters") or {}
    pattern = str((parameters.get("UserFunctionNamePattern") or {}).get("Default", ""))
    consent = str((parameters.get("AllowAnyUserFunction") or {}).get("Default", "false"))
    problems = []
    if _WILDCARD_ONLY.match(pattern) and consent != "true":
        problems.append(f"UserFunctionNamePattern defaults to {pattern!r}, any Lambda of the account")
    rule = (ctx.raw.get("Rules") or {}).get("AnyUserFunctionNeedsConsent") or {}
    if rule.get("RuleCondition") != {"Fn::Equals": [{"Ref": "UserFunctionNamePattern"}, "*"]}:
        problems.append("Rules.AnyUserFunctionNeedsConsent must apply when UserFunctionNamePattern is '*'")
    wanted = [{"Fn::Equals": [{"Ref": "AllowAnyUserFunction"}, "true"]}]
    if [assertion.get("Assert") for assertion in rule.get("Assertions") or []] != wanted:
        problems.append("Rules.AnyUserFunctionNeedsConsent must assert AllowAnyUserFunction is 'true'")
    if problems:
        raise Failed(problems)
    shown = pattern or "<stack name>-*"
    return f"user functions: {shown} by default; '*' only with AllowAnyUserFunction=true"


def check_registrations(ctx: Context) -> str:
    from iii_stream.core.registry import RegistryError, parse_trigger_config

    declared = {
        n: r.get("Properties") or {} for n, r in ctx.raw["Resources"].items() if r.get("Type") == REGISTRATION_TYPE
    }
    problems = []
    for name, props in declared.items():
        kind = props.get("Kind")
        need = {"function": ("FunctionId", "Target"), "trigger": ("Type", "FunctionId")}.get(str(kind))
        if need is None:
            problems.append(f"{name}: Kind must be function or trigger, not {kind!r}")
            continue
        problems += [f"{name}: {key} is missing" for key in ("ServiceToken", *need) if key not in props]
        if kind == "trigger" and isinstance(props.get("Type"), str) and _literal(props.get("Config")):
            try:
                parse_trigger_config(props["Type"], props.get("Config"))
            except RegistryError as exc:
                problems.append(f"{name}: {exc.message}")
    if problems:
        raise Failed(problems)
    return f"{len(declared)} {REGISTRATION_TYPE} resource(s) well formed"


def _literal(value: Any) -> bool:
    """No !Ref, !Sub, ... anywhere inside: the value is known before deployment."""
    if isinstance(value, dict):
        return not any(k == "Ref" or k.startswith("Fn::") for k in value) and all(map(_literal, value.values()))
    return all(map(_literal, value)) if isinstance(value, list) else True


def check_moto_stack(ctx: Context) -> str:
    stack = deploy_offline.create_in_moto(_translated(ctx), deploy_offline.zip_directory(FUNCTIONS_DIR))
    if stack.status != "CREATE_COMPLETE":
        raise Failed([f"the stack is {stack.status}: {stack.reason}"])
    problems = []
    for logical_id in table_resources(ctx.raw):
        table = stack.tables.get(logical_id)
        if table is None:
            problems.append(f"{logical_id} was not created")
            continue
        problems += _compare_table(logical_id, create_table_kwargs(logical_id, table["TableName"], ctx.raw), table)
    for name, env in stack.environments.items():
        for variable, value in _variables(ctx.functions().get(name, {})).items():
            if (
                isinstance(value, dict)
                and value.get("Ref") in stack.tables
                and env.get(variable) != stack.physical_ids[value["Ref"]]
            ):
                problems.append(f"{name}: {variable} is {env.get(variable)!r}, not the table {value['Ref']}")
    if problems:
        raise Failed(problems)
    tables, functions = len(stack.tables), len(stack.environments)
    return f"CREATE_COMPLETE; {tables} tables with the declared keys and indexes, {functions} functions"


def _compare_table(logical_id: str, want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    def indexes(description: dict[str, Any]) -> dict[str, Any]:
        return {
            i["IndexName"]: (
                i["KeySchema"],
                i["Projection"]["ProjectionType"],
                sorted(i["Projection"].get("NonKeyAttributes", [])),
            )
            for i in description.get("GlobalSecondaryIndexes", [])
        }

    problems = []
    if want["KeySchema"] != got["KeySchema"]:
        problems.append(f"{logical_id}: key schema {got['KeySchema']} != declared {want['KeySchema']}")
    if sorted(map(str, want["AttributeDefinitions"])) != sorted(map(str, got["AttributeDefinitions"])):
        problems.append(
            f"{logical_id}: attributes {got['AttributeDefinitions']} != declared {want['AttributeDefinitions']}"
        )
    if indexes(want) != indexes(got):
        problems.append(f"{logical_id}: indexes {indexes(got)} != declared {indexes(want)}")
    want_stream = want.get("StreamSpecification", {}).get("StreamViewType")
    if want_stream != got.get("StreamSpecification", {}).get("StreamViewType"):
        problems.append(f"{logical_id}: stream {got.get('StreamSpecification')} != declared {want_stream}")
    return problems


CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("cfn-lint template", check_lint_template),
    ("sam translate", check_translate),
    ("cfn-lint translated", check_lint_translated),
    ("handlers import", check_handlers),
    ("environment", check_environment),
    ("iam least privilege", check_iam),
    ("invoke permissions", check_permissions),
    ("websocket api", check_websocket_api),
    ("tables", check_tables),
    ("outputs", check_outputs),
    ("user functions", check_user_functions),
    ("registrations", check_registrations),
    ("moto stack", check_moto_stack),
]
NEEDS_TRANSLATION = {"cfn-lint translated", "iam least privilege", "invoke permissions", "moto stack"}
