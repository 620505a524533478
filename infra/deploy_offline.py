"""Deploy template.yaml without AWS: the SAM translation (as ``sam deploy`` does it) and a stack in moto.

Notes from ``../shared/spec/aws-local-tooling.md`` section 5:
- samtranslator needs a region and S3 ``CodeUri``s (``sam package`` rewrites local ones); its managed-policy
  loader is not called for SAM's own policies, so a stub does;
- moto ignores ``Transform``, so the stack is created from the translated template; its event source mappings
  would consume the items table's stream, so they are left out, and so are custom resources (moto would run
  their Lambda, which needs Docker). moto skips the ApiGatewayV2 resources silently.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CODE_BUCKET = "sam-artifacts"
REGION = "us-east-1"
STACK_NAME = "iii-stream-validate"
_LEFT_OUT = ("AWS::Lambda::EventSourceMapping",)


class TranslationError(Exception):
    """The SAM translator refused the template; ``problems`` lists each cause."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _StubManagedPolicyLoader:
    def load(self) -> dict[str, str]:
        return {}


def _s3_code_uri(properties: dict[str, Any]) -> None:
    code_uri = properties.get("CodeUri")
    if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
        properties["CodeUri"] = f"s3://{CODE_BUCKET}/{code_key(code_uri)}"


def code_key(code_uri: str) -> str:
    """The S3 key a local CodeUri is uploaded under (as ``sam package`` would, by content; here by name)."""
    return (code_uri.strip("/").replace("/", "-") or "code") + ".zip"


def translate(template_path: Path, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM deploys, offline; raise TranslationError with each problem."""
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    sam = yaml_parse(template_path.read_text(encoding="utf-8"))
    if not isinstance(sam, dict) or not isinstance(sam.get("Resources"), dict):
        raise TranslationError(["the template has no Resources mapping"])
    _s3_code_uri(sam.get("Globals", {}).get("Function", {}))
    for resource in sam["Resources"].values():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            _s3_code_uri(resource.setdefault("Properties", {}))
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = previous or REGION
    sam_log = logging.getLogger("samtranslator")
    level = sam_log.level
    sam_log.setLevel(logging.ERROR)  # "There are unpublished metrics": the translator's own bookkeeping
    try:
        translated: dict[str, Any] = transform(sam, parameters or {}, _StubManagedPolicyLoader())
    except InvalidDocumentException as exc:
        raise TranslationError([cause.message for cause in exc.causes] or [str(exc)]) from exc
    except Exception as exc:  # the translator raises plain errors on some malformed input
        raise TranslationError([f"{type(exc).__name__}: {exc}"]) from exc
    finally:
        sam_log.setLevel(level)
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
    return translated


def code_uris(translated: dict[str, Any]) -> set[tuple[str, str]]:
    """The (bucket, key) of every function's code in a translated template."""
    found = set()
    for resource in translated["Resources"].values():
        if resource.get("Type") == "AWS::Lambda::Function":
            code = resource.get("Properties", {}).get("Code", {})
            if isinstance(code.get("S3Bucket"), str) and isinstance(code.get("S3Key"), str):
                found.add((code["S3Bucket"], code["S3Key"]))
    return found


def zip_directory(directory: Path) -> bytes:
    """A deployment zip of a code directory (Python sources only: enough for moto, which does not run it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def for_moto(translated: dict[str, Any]) -> dict[str, Any]:
    """The translated template without what moto must not create (event source mappings, custom resources)."""
    template = copy.deepcopy(translated)
    template["Resources"] = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource.get("Type") not in _LEFT_OUT and not str(resource.get("Type", "")).startswith("Custom::")
    }
    return template


@dataclass
class MotoStack:
    """What a stack created in moto holds: its status, physical ids, tables and function settings."""

    status: str
    reason: str
    physical_ids: dict[str, str]
    tables: dict[str, dict[str, Any]]
    environments: dict[str, dict[str, str]]


def create_in_moto(translated: dict[str, Any], code: bytes, parameters: dict[str, str] | None = None) -> MotoStack:
    """Create the translated template as a stack in moto (in-process, nothing leaves this process)."""
    import boto3
    from moto import mock_aws

    moto_log = logging.getLogger("moto")
    level = moto_log.level
    moto_log.setLevel(logging.ERROR)  # "No Moto CloudFormation support for AWS::ApiGatewayV2::*", expected
    try:
        with mock_aws(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _create(boto3.session.Session(region_name=REGION), translated, code, parameters or {})
    finally:
        moto_log.setLevel(level)


def _create(session: Any, translated: dict[str, Any], code: bytes, parameters: dict[str, str]) -> MotoStack:
    s3 = session.client("s3")
    for bucket, key in code_uris(translated):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=code)
    cloudformation = session.client("cloudformation")
    try:
        cloudformation.create_stack(
            StackName=STACK_NAME,
            TemplateBody=json.dumps(for_moto(translated)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except Exception as exc:  # moto raises raw errors (KeyError, ...) on templates it cannot create
        return MotoStack(f"{type(exc).__name__}", str(exc), {}, {}, {})
    stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    summaries = cloudformation.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
    physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries if s["LogicalResourceId"]}
    dynamodb, lambda_ = session.client("dynamodb"), session.client("lambda")
    tables, environments = {}, {}
    for summary in summaries:
        logical, kind = summary["LogicalResourceId"], summary["ResourceType"]
        if kind == "AWS::DynamoDB::Table":
            tables[logical] = dynamodb.describe_table(TableName=physical[logical])["Table"]
        elif kind == "AWS::Lambda::Function":
            config = lambda_.get_function_configuration(FunctionName=physical[logical])
            environments[logical] = config.get("Environment", {}).get("Variables", {})
    return MotoStack(stack["StackStatus"], stack.get("StackStatusReason", ""), physical, tables, environments)
