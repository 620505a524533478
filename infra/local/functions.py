"""The functions ``iii-stream local`` runs, as ``FunctionSpec``s for the local runtime: each of template.yaml's
functions, and each of the ``--app``'s.

A template function's environment is what CloudFormation would give it: ``Globals.Function.Environment`` with
the function's own ``Environment`` over it, every ``!Ref`` resolved to its local value (the tables' local names,
the parameters' local settings, a function's name). Then the local differences, one list (``LOCAL_SETTINGS``):
the endpoints (DynamoDB, Streams, Lambda, ``@connections``), credentials and region, a shorter trigger cache and
no metrics. An app function gets what ``iii-stream package`` gives it on AWS (``STREAM_FUNCTION_NAME``) and its
own declared ``environment``. Every function also keeps the shell's environment (``PATH``, your own settings),
except the names any function's declared environment sets: one function's settings never leak into another's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iii_stream.infra.local.runtime import FunctionSpec
from iii_stream.infra.stack import FUNCTIONS_DIR
from iii_stream.infra.template import load_template

STREAM_FUNCTION_SETTING = "STREAM_FUNCTION_NAME"  # as infra/package_template.py sets it for app functions
# The template functions the local service runs: the Lambda endpoint's, the gateway's routes, the pumps'.
SERVED = (
    "StreamFunction",
    "RegistryFunction",
    "FanoutFunction",
    "ConnectFunction",
    "DisconnectFunction",
    "MessageFunction",
    "BroadcastFunction",
    "DispatchFunction",
)
ENDPOINT_FUNCTIONS = ("StreamFunction", "RegistryFunction", "FanoutFunction")  # invoked by name on the endpoint


@dataclass(frozen=True)
class LocalSettings:
    """What the local service is, for the functions' environments."""

    tables: Mapping[str, str]  # logical id -> local table name
    dynamodb_endpoint: str
    lambda_endpoint: str
    connections_endpoint: str
    auth_function: str = ""
    auth_fail_open: bool = False
    join_fail_open: bool = False
    log_level: str = "WARNING"  # the handlers' own JSON logs: warnings only (the service logs each invocation)
    concurrency: int = 4


def local_settings(settings: LocalSettings) -> dict[str, str]:
    """What every function gets locally, over its template settings (the README lists these)."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": settings.dynamodb_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": settings.dynamodb_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": settings.lambda_endpoint,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "CONNECTIONS_ENDPOINT": settings.connections_endpoint,
        "TRIGGER_CACHE_SECONDS": "1",  # a registration shows at once in a local run
        "POWERTOOLS_METRICS_NAMESPACE": "iii-stream-local",
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines are for CloudWatch; locally they would be noise
    }


LOCAL_SETTINGS = tuple(
    local_settings(LocalSettings({}, "", "", "")).keys()
)  # the names whose local value replaces the template's


def _refs(settings: LocalSettings, resources: Mapping[str, Any]) -> dict[str, str]:
    """What each ``!Ref`` the functions' environments use stands for locally."""
    refs = {name: name for name, resource in resources.items() if resource.get("Type") == "AWS::Serverless::Function"}
    refs.update(settings.tables)
    refs.update(
        {
            "AuthFunction": settings.auth_function,
            "AuthFailOpen": str(settings.auth_fail_open).lower(),
            "JoinFailOpen": str(settings.join_fail_open).lower(),
            "LogLevel": settings.log_level,
            "Stage": "local",
            "AWS::Region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    return refs


def _resolve(function: str, name: str, value: Any, refs: Mapping[str, str]) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in refs:
        return refs[value["Ref"]]
    raise ValueError(
        f"template.yaml sets {name} of {function} to {value!r}, which the local runtime cannot resolve: "
        "give it a local value in infra/local/functions.py"
    )


def _variables(section: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(((section or {}).get("Environment") or {}).get("Variables") or {})


def template_specs(settings: LocalSettings, template: Mapping[str, Any] | None = None) -> dict[str, FunctionSpec]:
    """A spec for each function of template.yaml the local service runs (``SERVED``)."""
    template = template or load_template()
    resources = template["Resources"]
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    refs = _refs(settings, resources)
    overrides = local_settings(settings)
    declared = set(_variables(globals_))
    for resource in resources.values():
        declared |= set(_variables(resource.get("Properties")))
    base = _shell(declared)
    specs: dict[str, FunctionSpec] = {}
    for name in SERVED:
        properties = resources[name]["Properties"]
        variables = {**_variables(globals_), **_variables(properties)}
        environment = {
            key: _resolve(name, key, value, refs) for key, value in variables.items() if key not in overrides
        }
        memory = int(properties.get("MemorySize", globals_.get("MemorySize", 128)))
        specs[name] = FunctionSpec(
            name=name,
            environment={**base, **environment, **overrides, **_lambda_settings(name, memory)},
            handler=str(properties["Handler"]),
            code_dir=str(FUNCTIONS_DIR),
            timeout_seconds=float(properties.get("Timeout", globals_.get("Timeout", 3))),
            memory_mb=memory,
            concurrency=settings.concurrency,
        )
    return specs


def app_specs(
    settings: LocalSettings, app: Any, app_path: str, template: Mapping[str, Any] | None = None
) -> dict[str, FunctionSpec]:
    """A spec for each function the app declares, named as ``iii-stream package`` names it (``lambda_name``)."""
    from iii_stream.app import lambda_name

    template = template or load_template()
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    declared = set(_variables(globals_)) | {STREAM_FUNCTION_SETTING}
    for function_id in app.functions:
        declared |= set(app.settings_of(function_id).environment)
    base = _shell(declared)
    overrides = local_settings(settings)
    specs: dict[str, FunctionSpec] = {}
    for function_id in app.functions:
        declared_settings = app.settings_of(function_id)
        name = lambda_name(function_id)
        memory = declared_settings.memory_size or int(globals_.get("MemorySize", 128))
        environment = {STREAM_FUNCTION_SETTING: "StreamFunction", **declared_settings.environment}
        specs[name] = FunctionSpec(
            name=name,
            environment={**base, **environment, **overrides, **_lambda_settings(name, memory)},
            app=str(app_path),
            function_id=function_id,
            timeout_seconds=float(declared_settings.timeout or globals_.get("Timeout", 3)),
            memory_mb=memory,
            concurrency=settings.concurrency,
        )
    return specs


def _shell(declared: set[str]) -> dict[str, str]:
    """The service's own environment, without what a function declares (and without the service's internals)."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in declared and not key.startswith("III_STREAM_LOCAL_")
    }


def _lambda_settings(name: str, memory: int) -> dict[str, str]:
    """The reserved variables Lambda sets in every function (the ones a handler may read)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "PYTHONUNBUFFERED": "1",  # what a function prints shows in the service's log at once
    }
