"""``iii-stream package --app app.py --out DIR``: the app and the core stack as one SAM project, checked offline.

The same ``App`` declarations ``iii-stream local --app`` runs become, in DIR:

- ``template.yaml``: the app's stack (see ``infra/package_template.py``): the core stack nested as an
  ``AWS::Serverless::Application``, a Lambda per declared function, the HTTP API with its authorizer, a
  ``Custom::IiiStreamRegistration`` per function and trigger;
- ``app/``: the app's code (``CodeUri`` of its functions): the app file and the ``.py`` files beside it (not the
  directories beside it), the ``iii_stream`` package (without ``infra``, ``_stack`` and ``testing.py``),
  ``requirements.txt`` with what that package needs (not the app's own requirements.txt, which beside an app is its
  development set), and, with ``auth=True`` routes, ``_iii_stream_authorizer.py``, which makes the app's auth
  function the HTTP authorizer;
- ``iii-stream/template.yaml`` and ``iii-stream/functions/``: the core stack and its Lambda code root (the handler
  modules, the same ``iii_stream`` package, ``requirements.txt``), real files copied from where the core stack is
  (``iii_stream.infra.stack``: this checkout, or the installed package).

An app that could not deploy is refused before anything is written, one sentence per problem: a trigger or
a ``condition_function_id`` naming an undeclared function, a trigger the registry would refuse, an ``auth=True``
route without an auth function, a Lambda name over 64 characters, two functions with one Lambda name, a handler
Lambda cannot find. Then the project is checked, as ``make validate`` checks the core: cfn-lint and the SAM
translation of DIR/template.yaml, cfn-lint of its translation, the app's policies, its registrations, and the app's
handlers imported from ``app/`` alone (in a fresh interpreter); and every check of ``infra/validate.py`` on
DIR/iii-stream/template.yaml with DIR/iii-stream/functions as its code root. ``sam build`` and ``sam deploy``
(which uploads the nested template and the code) are the next steps; they need the SAM CLI and an AWS account.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import iii_stream
from iii_stream.app import App, lambda_name
from iii_stream.core.clock import SystemClock
from iii_stream.core.errors import StreamError
from iii_stream.core.registry import REGISTRY_FUNCTIONS, FunctionRecord, RegistryService, TriggerRecord
from iii_stream.infra import deploy_checks, deploy_offline, deploy_policies
from iii_stream.infra.deploy_checks import Context, Failed, Skipped
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.package_template import (
    AUTHORIZER_MODULE,
    CORE_LOCATION,
    CORE_LOGICAL_ID,
    DEFAULT_MAX_STACK_NAME,
    DEFAULT_PREFIX,
    PackageError,
    Plan,
    authorizer_source,
    build_template,
    dump_yaml,
    plan_app,
)
from iii_stream.infra.stack import FUNCTIONS_DIR, TEMPLATE_PATH
from iii_stream.infra.template import load_template
from iii_stream.infra.validate import Check

MARKER: Final = ".iii-stream-package"  # marks DIR as ours: a later run may replace what it wrote there
APP_DIR: Final = "app"
CORE_DIR: Final = "iii-stream"
# Not shipped to Lambda: the tools (infra, the link to infra/), the packaged stack and the pytest plugin.
NOT_SHIPPED: Final = frozenset({"infra", "_stack", "testing.py"})
# The Lambda runtime has boto3; only the tools read YAML. (An installed package has no requirements.txt.)
NOT_NEEDED_IN_LAMBDA: Final = frozenset({"boto3", "pyyaml"})
_PLACEHOLDER_URL: Final = f"https://{deploy_offline.CODE_BUCKET}.s3.amazonaws.com/iii-stream-template.yaml"
_counter = itertools.count(1)


@dataclass
class LoadedApp:
    file: Path
    app: App
    variable: str  # the module's name for the App
    handler_names: dict[str, str]  # function id -> top-level name of the handler in the module


@dataclass
class Packaged:
    """What ``package`` wrote and what the checks found."""

    out: Path
    plan: Plan
    template: dict[str, Any]
    app_checks: list[Check] = field(default_factory=list)
    core_checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        return [p for check in self.app_checks + self.core_checks for p in check.problems]


# --- the app ----------------------------------------------------------------------------------------------------


def load_app(path: Path) -> LoadedApp:
    """Import the app file (its directory on ``sys.path`` meanwhile) and find its ``App`` and handler names."""
    file = path.resolve()
    if not file.is_file() or file.suffix != ".py":
        raise PackageError([f"{path}: no such Python file"])
    module = file.stem
    problems = []
    if not module.isidentifier() or keyword.iskeyword(module):
        problems.append(f"{path}: Lambda imports the app as the module {module!r}: name the file <identifier>.py")
    for taken in ("iii_stream", AUTHORIZER_MODULE):
        if module == taken or (file.parent / f"{taken}.py").exists():
            problems.append(f"{path}: {taken}.py (beside the app, or the app itself) would shadow the packaged {taken}")
    if problems:
        raise PackageError(problems)
    namespace = _exec_app(file)
    apps = [(name, value) for name, value in namespace.items() if isinstance(value, App)]
    if not apps:
        raise PackageError([f"{path} declares no iii_stream.app.App"])
    variable, app = apps[0]
    names: dict[str, str] = {}
    for function_id, handler in app.functions.items():
        own = getattr(handler, "__name__", None)
        if isinstance(own, str) and namespace.get(own) is handler:
            names[function_id] = own
            continue
        found = next((name for name, value in namespace.items() if value is handler), None)
        if found is not None:
            names[function_id] = found
    return LoadedApp(file, app, variable, names)


def _exec_app(file: Path) -> dict[str, Any]:
    """Run the app file as a module of its own; then forget it and the modules it brought in from beside it (so
    another app's ``helpers.py`` is not taken for this one's)."""
    name = f"_iii_stream_package_app_{next(_counter)}"
    before = set(sys.modules)
    sys.path.insert(0, str(file.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return dict(vars(module))
    except (Exception, SystemExit) as exc:
        raise PackageError([f"{file.name} does not import: {type(exc).__name__}: {exc}"]) from exc
    finally:
        sys.path.remove(str(file.parent))
        for added in set(sys.modules) - before:
            top = added.partition(".")[0]
            beside = (file.parent / f"{top}.py").is_file() or (file.parent / top / "__init__.py").is_file()
            if added == name or (beside and top != "iii_stream"):
                del sys.modules[added]


class _DryRunStore:
    """The registry's store in dicts: the app's registrations run through the registry before the deploy does."""

    def __init__(self) -> None:
        self._functions: dict[str, FunctionRecord] = {}
        self._triggers: dict[str, TriggerRecord] = {}

    def put_function(self, record: FunctionRecord) -> None:
        self._functions[record.function_id] = record

    def delete_function(self, function_id: str) -> bool:
        return self._functions.pop(function_id, None) is not None

    def functions(self) -> list[FunctionRecord]:
        return list(self._functions.values())

    def put_trigger(self, record: TriggerRecord) -> None:
        self._triggers[record.trigger_id] = record

    def delete_trigger(self, trigger_id: str) -> bool:
        return self._triggers.pop(trigger_id, None) is not None

    def triggers(self) -> list[TriggerRecord]:
        return list(self._triggers.values())


def registration_problems(loaded: LoadedApp) -> list[str]:
    """Register the app's functions, then its triggers, as the custom resources will: what the registry refuses."""
    app = loaded.app
    service = RegistryService(_DryRunStore(), SystemClock())
    problems = []
    description = f"declared in {loaded.file.name}"
    for function_id in app.functions:
        payload: dict[str, Any] = {"function_id": function_id, "target": lambda_name(function_id)}
        payload["description"] = description
        try:
            REGISTRY_FUNCTIONS.call(service, "registry::register_function", payload)
        except StreamError as exc:
            problems.append(f"function {function_id!r}: the registry refuses it: {exc.code}: {exc.message}")
    for declared in app.triggers:
        condition = declared.config.get("condition_function_id")
        if declared.function_id not in app.functions or (condition and condition not in app.functions):
            continue  # said already, more plainly (plan_app)
        trigger = {"type": declared.type, "function_id": declared.function_id, "config": declared.config}
        try:
            REGISTRY_FUNCTIONS.call(service, "registry::register_trigger", {**trigger, "id": declared.id})
        except StreamError as exc:
            problems.append(f"trigger {declared.id!r} ({declared.type}): the registry refuses it: {exc.message}")
    return problems


# --- writing ----------------------------------------------------------------------------------------------------


def _prepare(out: Path, app_file: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PackageError([f"--out {out} is a file, not a directory"])
    if out.resolve() in app_file.parents:
        raise PackageError([f"--out {out} holds the app itself; choose a directory of its own"])
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise PackageError([f"--out {out} is not empty and was not written by iii-stream package; choose another"])
    for name in (APP_DIR, CORE_DIR):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by iii-stream package; it replaces template.yaml, app/ and iii-stream/\n")


def _copy_package(destination: Path) -> None:
    """The ``iii_stream`` package as Lambda runs it: real files, no tools, no caches."""
    source = Path(iii_stream.__file__).resolve().parent

    def ignore(directory: str, names: list[str]) -> set[str]:
        dropped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}
        return dropped | (set(names) & NOT_SHIPPED if Path(directory).resolve() == source else set())

    shutil.copytree(source, destination / "iii_stream", ignore=ignore, symlinks=False)


def lambda_requirements() -> list[str]:
    """What the Lambda code needs installed (``sam build`` reads requirements.txt): the core's own file in a
    checkout; from an installed package, its dependencies as declared, less what Lambda has or never uses."""
    shipped = FUNCTIONS_DIR / "requirements.txt"
    if shipped.is_file():
        lines = shipped.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    from importlib.metadata import requires

    wanted = []
    for requirement in requires("iii-stream-aws") or []:
        match = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if "extra ==" in requirement or match is None or match.group().lower() in NOT_NEEDED_IN_LAMBDA:
            continue
        wanted.append(requirement)
    return wanted


def _write_requirements(path: Path) -> None:
    lines = lambda_requirements()
    header = "# Written by iii-stream package: what sam build installs beside the code (boto3 is in the runtime).\n"
    path.write_text(header + "".join(line + "\n" for line in lines), encoding="utf-8")


def write_project(out: Path, loaded: LoadedApp, plan: Plan, template: dict[str, Any]) -> None:
    _prepare(out, loaded.file)
    core = out / CORE_DIR
    code = core / "functions"
    code.mkdir(parents=True)
    shutil.copyfile(TEMPLATE_PATH, out / CORE_LOCATION)
    for handler in sorted(FUNCTIONS_DIR.glob("*.py")):
        shutil.copyfile(handler, code / handler.name)
    _copy_package(code)
    _write_requirements(code / "requirements.txt")

    app = out / APP_DIR
    app.mkdir()
    for source in sorted(loaded.file.parent.glob("*.py")):
        if source.is_file():
            shutil.copyfile(source, app / source.name)
    _copy_package(app)
    # Not the app's own requirements.txt: beside an app that is its development set (iii-stream-aws[local], pytest).
    _write_requirements(app / "requirements.txt")
    if plan.auth_routes:
        (app / f"{AUTHORIZER_MODULE}.py").write_text(authorizer_source(plan), encoding="utf-8")
    header = (
        f"# Written by iii-stream package from {loaded.file.name}; package again rather than edit.\n"
        "# Deploy: sam build && sam deploy --guided (the core stack is iii-stream/template.yaml).\n"
    )
    (out / "template.yaml").write_text(header + dump_yaml(template), encoding="utf-8")


# --- checks -----------------------------------------------------------------------------------------------------


def _run_check(name: str, run: Callable[[], str], echo: Callable[[str], None] | None) -> Check:
    check = Check(name)
    started = time.perf_counter()
    try:
        check.detail = run()
    except Failed as failed:
        check.problems = failed.problems
    except Skipped as skipped:
        check.skipped = str(skipped)
    except ImportError as exc:  # cfn-lint, the SAM translator or moto missing: an install away
        check.problems = [f"{exc.name or exc}: not installed; pip install 'iii-stream-aws[local]'"]
    check.seconds = time.perf_counter() - started
    if echo:
        echo(check.line())
    return check


_IMPORT_CHECK: Final = """
import importlib, json, sys
root, specs = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, root)
problems = []
import iii_stream
if not iii_stream.__file__.startswith(root):
    problems.append(f"iii_stream comes from {iii_stream.__file__}, not from the code root")
try:
    import iii_stream.infra
    problems.append("iii_stream.infra is in the code root; the tools must not be shipped")
except ImportError:
    pass
for spec in specs:
    module, _, name = spec.rpartition(".")
    try:
        if not callable(getattr(importlib.import_module(module), name)):
            problems.append(f"{spec} is not callable")
    except BaseException as exc:
        problems.append(f"{spec} does not import from the code root alone: {type(exc).__name__}: {exc}")
print(json.dumps(problems))
"""


def import_problems(code_root: Path, specs: list[str]) -> list[str]:
    """Import each ``module.function`` in a fresh interpreter whose first path entry is ``code_root``, as Lambda
    would (the installed dependencies stand in for what ``sam build`` installs)."""
    root = str(code_root.resolve())
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _IMPORT_CHECK, root, json.dumps(specs)],
        cwd=root,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return [f"the import check failed: {last}"]
    problems: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return problems


@dataclass
class PackagedContext(Context):
    """The core template of a package, whose code root is its own copy (``CodeUri`` read beside the template)."""

    code_root: Path = Path()

    def ours(self) -> dict[str, dict[str, Any]]:
        base, root = self.path.parent, self.code_root.resolve()
        return {
            name: props
            for name, props in self.functions().items()
            if isinstance(props.get("CodeUri"), str) and (base / props["CodeUri"]).resolve() == root
        }


def _handlers_check(ctx: Context, code_root: Path) -> str:
    problems, specs = [], []
    for name, props in ctx.functions().items():
        spec, code_uri = props.get("Handler"), props.get("CodeUri")
        if not isinstance(spec, str) or "." not in spec or not isinstance(code_uri, str):
            problems.append(f"{name}: Handler {spec!r} / CodeUri {code_uri!r} is not module.function in a directory")
            continue
        module = spec.rpartition(".")[0]
        source = ctx.path.parent / code_uri / (module.replace(".", "/") + ".py")
        if not source.is_file():
            problems.append(f"{name}: handler {spec}: {source} does not exist")
        elif (ctx.path.parent / code_uri).resolve() == code_root.resolve():
            specs.append(spec)
    problems += import_problems(code_root, sorted(set(specs)))
    if problems:
        raise Failed(problems)
    return f"{len(ctx.functions())} handlers exist; {len(set(specs))} import from {code_root.name}/ alone"


def _core_moto_check(ctx: PackagedContext) -> str:
    if ctx.translated is None:
        raise Skipped("needs the SAM translation")
    stack = deploy_offline.create_in_moto(ctx.translated, deploy_offline.zip_directory(ctx.code_root))
    if stack.status != "CREATE_COMPLETE":
        raise Failed([f"the stack is {stack.status}: {stack.reason}"])
    from iii_stream.infra.template import create_table_kwargs, table_resources

    problems = []
    for logical_id in table_resources(ctx.raw):
        table = stack.tables.get(logical_id)
        if table is None:
            problems.append(f"{logical_id} was not created")
        else:
            want = create_table_kwargs(logical_id, table["TableName"], ctx.raw)
            problems += deploy_checks._compare_table(logical_id, want, table)
    if problems:
        raise Failed(problems)
    return f"CREATE_COMPLETE; {len(stack.tables)} tables as declared, {len(stack.environments)} functions"


def check_core(template: Path, code_root: Path, echo: Callable[[str], None] | None = None) -> list[Check]:
    """``infra/validate.py``'s checks on a copy of the core template, with its own code root."""
    ctx = PackagedContext(template, code_root=code_root)
    try:
        ctx.raw = load_template(template)
    except Exception as exc:  # noqa: BLE001 - reported as the check's problem
        problem = f"{template}: {type(exc).__name__}: {exc}"
        return [_run_check("parse", lambda: _fail([problem]), echo)]
    replaced: dict[str, Callable[[], str]] = {
        "handlers import": lambda: _handlers_check(ctx, code_root),
        "moto stack": lambda: _core_moto_check(ctx),
    }
    return [_run_check(name, replaced.get(name) or _bound(run, ctx), echo) for name, run in deploy_checks.CHECKS]


def _bound(run: Callable[[Context], str], ctx: Context) -> Callable[[], str]:
    return lambda: run(ctx)


def _fail(problems: list[str]) -> str:
    raise Failed(problems)


def _translate_app(ctx: Context) -> str:
    """The SAM translation of the app's template. The translator takes the local ``Location`` as it is and makes it
    the nested stack's TemplateURL, which cfn-lint then flags (W3002: works only with ``sam package``). ``sam deploy``
    uploads the nested template and puts its S3 URL there, so the translation is of a copy that holds a placeholder
    S3 URL instead, as deploy_offline does for CodeUri."""
    sam = load_template(ctx.path)
    for resource in sam["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Application" and isinstance(
            resource.get("Properties", {}).get("Location"), str
        ):
            resource["Properties"]["Location"] = _PLACEHOLDER_URL
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "template.json"
        copy.write_text(json.dumps(sam), encoding="utf-8")
        try:
            ctx.translated = deploy_offline.translate(copy)
        except deploy_offline.TranslationError as exc:
            raise Failed(exc.problems) from exc
    return f"{len(ctx.translated['Resources'])} CloudFormation resources"


def _app_iam(ctx: Context) -> str:
    """Each app function's role: no wildcard, only checked managed policies, and invoke on StreamFunction alone."""
    translated = ctx.translated
    if translated is None:
        raise Skipped("needs the SAM translation")
    resources = translated["Resources"]
    problems: list[str] = []
    stream_function = {"Fn::GetAtt": [CORE_LOGICAL_ID, "Outputs.StreamFunctionArn"]}
    wanted = {("lambda:InvokeFunction", text) for text in deploy_policies.resource_texts(stream_function)}
    checked = 0
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role_ref = resource["Properties"].get("Role")
        role = resources.get(role_ref["Fn::GetAtt"][0], {}) if isinstance(role_ref, dict) else {}
        every, authored = deploy_policies.role_grants(role)
        for statement in every:
            problems += deploy_policies.wildcard_problems(name, statement)
        problems += deploy_policies.managed_policy_problems(name, role)
        if authored != wanted:
            problems.append(f"{name}: grants {sorted(authored)}; it needs to invoke StreamFunction, nothing else")
        checked += 1
    if problems:
        raise Failed(problems)
    return f"{checked} functions may invoke StreamFunction and nothing else; no wildcards"


def _app_wiring(ctx: Context, plan: Plan) -> str:
    """The names the core may invoke are the app's: every function's name fits the pattern passed to the core."""
    resources = ctx.raw["Resources"]
    parameters = resources[CORE_LOGICAL_ID]["Properties"]["Parameters"]
    pattern = parameters["UserFunctionNamePattern"]["Fn::Sub"]
    prefix = pattern.rstrip("*")
    problems = []
    names = {}
    for function in plan.functions:
        name = resources[function.logical_id]["Properties"]["FunctionName"]["Fn::Sub"]
        names[function.function_id] = name
        if not name.startswith(prefix):
            problems.append(f"{function.logical_id}: {name} is outside UserFunctionNamePattern {pattern}")
    if plan.auth_function_id and parameters.get("AuthFunction", {}).get("Fn::Sub") != names[plan.auth_function_id]:
        problems.append(f"AuthFunction is not the auth function {plan.auth_function_id}'s name")
    if problems:
        raise Failed(problems)
    return f"{len(names)} functions named {prefix}<name>, the pattern the core may invoke"


def check_app(out: Path, plan: Plan, echo: Callable[[str], None] | None = None) -> list[Check]:
    ctx = Context(out / "template.yaml")
    ctx.raw = load_template(ctx.path)
    specs = [function.handler for function in plan.functions]
    if plan.auth_routes:
        specs.append(f"{AUTHORIZER_MODULE}.handler")
    steps: list[tuple[str, Callable[[], str]]] = [
        ("cfn-lint template", lambda: deploy_checks.check_lint_template(ctx)),
        ("sam translate", lambda: _translate_app(ctx)),
        ("cfn-lint translated", lambda: deploy_checks.check_lint_translated(ctx)),
        ("handlers import", lambda: _app_imports(out / APP_DIR, specs)),
        ("iam least privilege", lambda: _app_iam(ctx)),
        ("user functions", lambda: _app_wiring(ctx, plan)),
        ("registrations", lambda: deploy_checks.check_registrations(ctx)),
    ]
    return [_run_check(name, run, echo) for name, run in steps]


def _app_imports(code_root: Path, specs: list[str]) -> str:
    problems = import_problems(code_root, specs)
    if problems:
        raise Failed(problems)
    return f"{len(specs)} handlers import from {code_root.name}/ alone"


# --- the command ------------------------------------------------------------------------------------------------


def package(
    app_path: str | Path,
    out: str | Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    max_stack_name: int = DEFAULT_MAX_STACK_NAME,
    check: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Packaged:
    """Write the SAM project for the app into ``out`` and check it; raises PackageError for an app (or an ``out``)
    that cannot be packaged, before writing anything."""
    loaded = load_app(Path(app_path))
    refused = registration_problems(loaded)
    try:
        plan = plan_app(
            loaded.app,
            loaded.handler_names,
            app_file=loaded.file.name,
            module=loaded.file.stem,
            app_variable=loaded.variable,
            prefix=prefix,
            max_stack_name=max_stack_name,
        )
    except PackageError as error:
        raise PackageError(error.problems + refused) from None
    if refused:
        raise PackageError(refused)
    template = build_template(plan, load_template(TEMPLATE_PATH))
    target = Path(out)
    write_project(target, loaded, plan, template)
    packaged = Packaged(target, plan, template)
    if check:
        if echo:
            echo(f"checks of {target / 'template.yaml'} (code {target / APP_DIR}/):")
        packaged.app_checks = check_app(target, plan, echo)
        if echo:
            echo(f"checks of {target / CORE_LOCATION} (code {target / CORE_DIR / 'functions'}/):")
        packaged.core_checks = check_core(target / CORE_LOCATION, target / CORE_DIR / "functions", echo)
    return packaged


def run(app_path: str, out: str, prefix: str | None = None, max_stack_name: int | None = None) -> int:
    """``iii-stream package``: 0 when the project is written and passes every check; else 1, one line per problem."""
    started = time.perf_counter()
    try:
        packaged = package(
            app_path,
            out,
            prefix=DEFAULT_PREFIX if prefix is None else prefix,
            max_stack_name=DEFAULT_MAX_STACK_NAME if max_stack_name is None else max_stack_name,
            echo=print,
        )
    except PackageError as error:
        for problem in error.problems:
            print(f"iii-stream package: {problem}", file=sys.stderr)
        return 1
    plan, target = packaged.plan, packaged.out
    if not packaged.ok:
        for problem in packaged.problems():
            print(f"iii-stream package: {problem}", file=sys.stderr)
        print(f"iii-stream package: {target}: INVALID ({len(packaged.problems())} problem(s))", file=sys.stderr)
        return 1
    routes = sum(len(function.routes) for function in plan.functions)
    print(
        f"{target}: {len(plan.functions)} functions, {len(plan.triggers)} triggers, {routes} HTTP routes; "
        f"valid in {time.perf_counter() - started:.1f} s. Next: cd {target} && sam build && sam deploy --guided"
    )
    return 0
