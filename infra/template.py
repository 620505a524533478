"""Read template.yaml (with CloudFormation tags) and derive each table's ``create_table`` arguments.

template.yaml is the only definition of the tables: tests and the local service build theirs here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from iii_stream.infra.stack import TEMPLATE_PATH

_TAGS = (
    "Ref",
    "Sub",
    "GetAtt",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Condition",
    "Cidr",
)


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]  # pyyaml ships no types
    """A SafeLoader that reads ``!Ref x`` as ``{"Ref": "x"}`` and ``!GetAtt a.b`` as ``{"Fn::GetAtt": ["a", "b"]}``."""


def _construct(tag: str) -> Any:
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {("Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"): value}

    return build


for _tag in _TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
        return template


@cache
def _template() -> dict[str, Any]:
    return load_template()


def table_resources(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every ``AWS::DynamoDB::Table`` resource, by logical id."""
    resources = (template or _template())["Resources"]
    return {name: res for name, res in resources.items() if res["Type"] == "AWS::DynamoDB::Table"}


def create_table_kwargs(logical_id: str, table_name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``create_table`` arguments for one table of the template, under ``table_name``."""
    props = table_resources(template)[logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            kwargs[key] = props[key]
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return kwargs


def ttl_attribute(logical_id: str, template: dict[str, Any] | None = None) -> str | None:
    spec = table_resources(template)[logical_id]["Properties"].get("TimeToLiveSpecification")
    return spec["AttributeName"] if spec and spec.get("Enabled") else None


def create_tables(client: Any, names: dict[str, str], template: dict[str, Any] | None = None) -> None:
    """Create each ``{logical_id: table_name}`` table from the template (moto or a local DynamoDB)."""
    for logical_id, table_name in names.items():
        client.create_table(**create_table_kwargs(logical_id, table_name, template))
        ttl = ttl_attribute(logical_id, template)
        if ttl:
            client.update_time_to_live(
                TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
            )
