"""Property: registrations from outside (the custom resource, the CLI) succeed or fail as documented, never half.

``Custom::IiiStreamRegistration`` events with odd Properties (no Kind, wrong types, huge strings, unknown
trigger types, configs that are lists or strings) through the real handler on moto: each answers
CloudFormation SUCCESS or FAILED (with the registry's ``code: message``, or the resource's own
``RegistrationError``), in a body CloudFormation accepts (at most 4096 bytes), and the registry changes only
by the one record a SUCCESS names. Then a handful of odd ``iii-stream functions|triggers register`` command
lines: exit 0 with the result, or exit 1 with ``{code, message}`` on stderr, and no partial registration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from iii_stream import wiring
from iii_stream.core.limits import MAX_NAME_BYTES
from iii_stream.core.registration import FAILED_PREFIX
from iii_stream.core.registry import MAX_DESCRIPTION_CHARS, MAX_ID_CHARS
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.template import create_tables
from moto import mock_aws

from tests.integration.test_registry_resource import ResponseBucket, Stack

pytestmark = pytest.mark.integration

BUDGET = settings(max_examples=100, deadline=None, derandomize=True)
TRIGGERS = "iii-stream-triggers-property"
DOCUMENTED = {"REGISTRY_ERROR", "function_not_found", "trigger_not_found", "deserialization_error"}
RESPONSE_LIMIT = 4096
KIND_TABLE_PK = {"function": "F", "trigger": "T"}

# --- the custom resource ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, Any]]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("ITEMS_TABLE", "iii-stream-items-property")
        patch.setenv("TRIGGERS_TABLE", TRIGGERS)
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, {"TriggersTable": TRIGGERS})
        wiring.reset()
        with ResponseBucket() as bucket:
            yield Stack(bucket), dynamodb
        wiring.reset()


def _registry(dynamodb: Any) -> dict[tuple[str, str], Any]:
    items = dynamodb.scan(TableName=TRIGGERS, ConsistentRead=True)["Items"]
    return {(item["pk"]["S"], item["sk"]["S"]): item for item in items}


BASELINE: dict[tuple[str, str], Any] = {}


def _reset(stack: Stack, dynamodb: Any) -> None:
    """Each example starts from the same registry: functions f and g, trigger t-1 (f on stream s)."""
    if not BASELINE:
        for function_id in ("f", "g"):
            props = {"Kind": "function", "FunctionId": function_id, "Target": f"lambda-{function_id}"}
            assert stack.send("Create", "F", props)["Status"] == "SUCCESS"
        props = {
            "Kind": "trigger",
            "TriggerId": "t-1",
            "Type": "stream",
            "FunctionId": "f",
            "Config": {"stream_name": "s"},
        }
        assert stack.send("Create", "T", props)["Status"] == "SUCCESS"
        BASELINE.update(_registry(dynamodb))
    current = _registry(dynamodb)
    for pk, sk in current.keys() - BASELINE.keys():
        dynamodb.delete_item(TableName=TRIGGERS, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    for key, item in BASELINE.items():
        if current.get(key) != item:
            dynamodb.put_item(TableName=TRIGGERS, Item=item)


any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
huge = st.builds(lambda unit, n: unit * n, st.sampled_from(["x", "é", "😀", '"', "\x00"]), st.integers(200, 120_000))
odd = st.one_of(
    st.sampled_from(["", " ", "f", "g", "t-1", "nope", "😀" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1)]),
    st.sampled_from(["é" * (MAX_DESCRIPTION_CHARS + 1), "x" * (MAX_NAME_BYTES + 1), "true", "123", "[]"]),
    any_text,
    huge,
    st.integers(),
    st.booleans(),
    st.lists(st.sampled_from(["f", 1, None]), max_size=3),
    st.dictionaries(any_text, any_text, max_size=2),
    st.none(),
)
config_values = st.one_of(
    st.fixed_dictionaries(
        {"stream_name": st.sampled_from(["s", "presence"])},
        optional={"group_id": st.sampled_from(["", "room-1"]), "condition_function_id": st.sampled_from(["g", "nope"])},
    ),
    st.fixed_dictionaries(
        {},
        optional={"stream_name": odd, "group_id": odd, "item_id": odd, "condition_function_id": odd},
    ),
    st.dictionaries(any_text, odd, max_size=3),
)
PLAUSIBLE = {
    "Kind": st.sampled_from(["function", "function", "trigger", "trigger", "Function"]),
    "FunctionId": st.sampled_from(["f", "g", "h", "p::on-change", "😀" * MAX_ID_CHARS]),
    "Target": st.sampled_from(["lambda-h", "arn:aws:lambda:us-east-1:123456789012:function:h"]),
    "Description": st.sampled_from(["", "d", "é" * MAX_DESCRIPTION_CHARS]),
    "Type": st.sampled_from(["stream", "stream", "stream:join", "stream:leave", "stream:everything"]),
    "Config": config_values,
    "TriggerId": st.sampled_from(["t-1", "t-2", "😀" * MAX_ID_CHARS]),
}


@st.composite
def properties(draw: st.DrawFn) -> dict[str, Any]:
    """Each property mostly plausible, sometimes missing, sometimes odd (any type, huge, empty)."""
    props = {}
    for key, plausible in PLAUSIBLE.items():
        pick = draw(st.sampled_from(["plausible", "plausible", "plausible", "plausible", "odd", "missing"]))
        if pick != "missing":
            props[key] = draw(plausible if pick == "plausible" else odd)
    return props


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(RequestType, Properties, the rest of the event)."""
    request = draw(st.sampled_from(["Create", "Create", "Update", "Delete"]))
    extra: dict[str, Any] = {}
    if request != "Create":
        extra["PhysicalResourceId"] = draw(st.sampled_from(["f", "g", "t-1", "h", FAILED_PREFIX + "req-0", "gone"]))
    if request == "Update":
        extra["OldResourceProperties"] = draw(properties())
    return request, draw(properties()), extra


def _changed_only(before: dict[Any, Any], after: dict[Any, Any], allowed: set[tuple[str, str]]) -> None:
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed <= allowed, f"changed {changed}, allowed {allowed}"


def _sent_bytes(stack: Stack) -> int:
    """The size of the body CloudFormation got in the last PUT."""
    _, headers, _ = stack._bucket.puts[-1]
    return int(headers["Content-Length"])


def _check(answer: dict[str, Any], request: str, props: dict[str, Any], before: Any, after: Any) -> None:
    assert answer["Status"] in ("SUCCESS", "FAILED")
    physical_id = answer["PhysicalResourceId"]
    assert isinstance(physical_id, str) and physical_id
    if answer["Status"] == "FAILED":
        prefix = answer["Reason"].split(":", 1)[0]
        assert prefix in DOCUMENTED | {"RegistrationError"}, answer["Reason"]
        assert after == before, "a failed registration changed the registry"
        return
    kind = props.get("Kind")
    if kind not in ("function", "trigger"):  # a Delete of what could not have been registered: nothing to remove
        assert request == "Delete" and after == before
        return
    _changed_only(before, after, {(KIND_TABLE_PK[kind], physical_id)})
    if request == "Delete":
        assert (KIND_TABLE_PK[kind], physical_id) not in after
    else:
        assert (KIND_TABLE_PK[kind], physical_id) in after


@BUDGET
@given(case=requests())
def test_every_custom_resource_request_succeeds_or_fails_whole(
    stack: tuple[Stack, Any], case: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    resource, dynamodb = stack
    _reset(resource, dynamodb)
    request, props, extra = case
    before = _registry(dynamodb)

    answer = resource.send(request, "Registration", props, **extra)  # asserts the PUT body is the answer

    assert _sent_bytes(resource) <= RESPONSE_LIMIT
    _check(answer, request, props, before, _registry(dynamodb))
    event(f"{request} {props.get('Kind')!r:.10}: {answer['Status']} {answer['Reason'].split(':')[0]:.24}")


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        pytest.param({"FunctionId": "f"}, "RegistrationError: Kind must be", id="no-kind"),
        pytest.param({"Kind": ["function"]}, "RegistrationError: Kind must be", id="list-kind"),
        pytest.param({"Kind": "function", "FunctionId": ["f"], "Target": "t"}, "deserialization_error", id="list-id"),
        pytest.param(
            {"Kind": "function", "FunctionId": "h", "Target": "t", "Description": "x" * 500_000},
            "deserialization_error",
            id="500KB-description",  # regression: DynamoDB refused the item (StoreError), not the registry
        ),
        pytest.param(
            {"Kind": "trigger", "Type": "stream", "FunctionId": "f", "Config": {"stream_name": "x" * 500_000}},
            "REGISTRY_ERROR: config.stream_name is 500000 bytes long",
            id="500KB-stream-name",  # regression: as above
        ),
        pytest.param(
            {"Kind": "trigger", "Type": "stream:join", "FunctionId": "f", "Config": ["stream_name", "s"]},
            "REGISTRY_ERROR: The config of a stream:join trigger must be an object, got list.",
            id="list-config",
        ),
        pytest.param(
            {"Kind": "trigger", "Type": "stream", "FunctionId": "f", "Config": '{"stream_name": "s"}'},
            "REGISTRY_ERROR: The config of a stream trigger must be an object, got str.",
            id="string-config",
        ),
        pytest.param(
            {"Kind": "trigger", "Type": "😀" * 2_000, "FunctionId": "f"}, "REGISTRY_ERROR: Unknown", id="huge-type"
        ),
        pytest.param({"Kind": "😀" * 2_000}, "RegistrationError: Kind must be", id="huge-kind"),
    ],
)
def test_odd_properties_fail_with_the_registrys_message(
    stack: tuple[Stack, Any], props: dict[str, Any], reason: str
) -> None:
    resource, dynamodb = stack
    _reset(resource, dynamodb)
    before = _registry(dynamodb)

    answer = resource.send("Create", "Registration", props)

    assert _sent_bytes(resource) <= RESPONSE_LIMIT
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith(reason)
    _check(answer, "Create", props, before, _registry(dynamodb))


def test_the_longest_ids_still_fit_cloudformations_4096_bytes(stack: tuple[Stack, Any]) -> None:
    # Regression: with non-ASCII escaped (\\ud83d\\ude00: 12 bytes a character), a 256-emoji function id made
    # a SUCCESS body of about 9 KB, which CloudFormation refuses; its Reason is now cut to fit, the ids kept.
    resource, dynamodb = stack
    _reset(resource, dynamodb)
    function_id = "😀" * MAX_ID_CHARS
    props = {"Kind": "function", "FunctionId": function_id, "Target": "t" * MAX_ID_CHARS, "Description": "d"}

    answer = resource.send("Create", "L" * 255, props)

    assert answer["Status"] == "SUCCESS"
    assert (answer["PhysicalResourceId"], answer["Data"]) == (function_id, {"FunctionId": function_id})
    assert _sent_bytes(resource) <= RESPONSE_LIMIT
    resource.send("Delete", "L" * 255, {**props, "Kind": "trigger"}, PhysicalResourceId="😀" * 300)
    assert _sent_bytes(resource) <= RESPONSE_LIMIT


# --- the CLI ------------------------------------------------------------------------------------------------------

CLI = Path(sys.executable).parent / "iii-stream"


@pytest.fixture(scope="module")
def cli_registry() -> Iterator[tuple[list[str], Any]]:
    server = EmbeddedDynamoDB()
    try:
        url = server.start()
        dynamodb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        create_tables(dynamodb, {"TriggersTable": "cli-triggers"})
        dynamodb.put_item(
            TableName="cli-triggers",
            Item={"pk": {"S": "F"}, "sk": {"S": "f"}, "target": {"S": "lambda-f"}, "description": {"S": ""}},
        )
        yield ["--dynamodb-endpoint", url, "--triggers-table", "cli-triggers"], dynamodb
    finally:
        server.stop()


def _cli(args: list[str | bytes], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = offline_env()
    return subprocess.run(
        [str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=60
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["triggers", "register", "stream", "f", "[" * 50_000],
            "invalid_json",
            "The config is not JSON: maximum recursion depth exceeded",
            id="50000-deep-config",  # regression: a RecursionError traceback, not the error object
        ),
        pytest.param(
            ["triggers", "register", "stream", "f", "[1, 2]"],
            "REGISTRY_ERROR",
            "The config of a stream trigger must be an object, got list.",
            id="list-config",
        ),
        pytest.param(
            ["triggers", "register", "stream", "f", '"presence"'],
            "REGISTRY_ERROR",
            "The config of a stream trigger must be an object, got str.",
            id="string-config",
        ),
        pytest.param(
            ["triggers", "register", "stream", "f", '{"stream_name": "s", "group_id": "\\ud800"}'],
            "deserialization_error",
            "invalid Unicode (a lone surrogate) at `config.group_id`",
            id="lone-surrogate",  # regression: registered, then printing the result failed (exit 1, traceback)
        ),
        pytest.param(
            ["functions", "register", b"bad-\xff-id", "lambda-x"],
            "deserialization_error",
            "invalid Unicode (a lone surrogate) at `function_id`",
            id="argv-not-utf8",
        ),
        pytest.param(
            ["functions", "register", "h", "lambda-h", "--description", "d" * (MAX_DESCRIPTION_CHARS + 1)],
            "deserialization_error",
            "at most 1024 characters at `description`",
            id="long-description",
        ),
    ],
)
def test_odd_register_command_lines_exit_1_with_the_error_and_register_nothing(
    cli_registry: tuple[list[str], Any], tmp_path: Path, args: list[str | bytes], code: str, message: str
) -> None:
    target, dynamodb = cli_registry
    before = dynamodb.scan(TableName="cli-triggers")["Items"]

    result = _cli([*args, *target], tmp_path)

    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    body = json.loads(result.stderr)
    assert set(body) == {"code", "message"} and body["code"] == code
    assert message in body["message"]
    assert dynamodb.scan(TableName="cli-triggers")["Items"] == before


def test_a_valid_register_command_line_still_registers(cli_registry: tuple[list[str], Any], tmp_path: Path) -> None:
    target, dynamodb = cli_registry
    config = {"stream_name": "😀" * 128, "group_id": "\x00"}

    result = _cli(["triggers", "register", "stream", "f", json.dumps(config), "--id", "t-cli", *target], tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": "t-cli", "type": "stream", "function_id": "f", "config": config}
    dynamodb.delete_item(TableName="cli-triggers", Key={"pk": {"S": "T"}, "sk": {"S": "t-cli"}})
