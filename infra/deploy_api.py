"""The WebSocket API as template.yaml wires it, checked by hand: cfn-lint has no enums for ApiGatewayV2
(``ProtocolType: WEBSOCKETS`` passes it) and moto skips these resources, so nothing else would notice.
"""

from __future__ import annotations

import re
from typing import Any, Final

# The original's protocol: join and leave frames by their "type"; anything else lands on $default.
ROUTES: Final = {
    "$connect": "ws_connect.handler",
    "$disconnect": "ws_disconnect.handler",
    "join": "ws_message.handler",
    "leave": "ws_message.handler",
    "$default": "ws_message.handler",
}
ROUTE_SELECTION: Final = "$request.body.type"
_TARGET = re.compile(r"^integrations/\$\{(\w+)\}$")
_LAMBDA_URI = re.compile(r"/functions/\$\{(\w+)\.Arn\}/invocations$")


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r.get("Properties") or {} for name, r in resources.items() if r.get("Type") == kind}


def _sub(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        return str(value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0])
    return str(value)


def api_problems(resources: dict[str, Any], handlers: dict[str, str]) -> list[str]:
    """What is wrong with the API, its routes, integrations, deployment and stage (``handlers``: function -> spec)."""
    apis = _of_type(resources, "AWS::ApiGatewayV2::Api")
    if len(apis) != 1:
        return [f"expected one AWS::ApiGatewayV2::Api, found {len(apis)}"]
    [(api_name, api)] = apis.items()
    problems = []
    if api.get("ProtocolType") != "WEBSOCKET":
        problems.append(f"{api_name}: ProtocolType is {api.get('ProtocolType')!r}, not 'WEBSOCKET'")
    if api.get("RouteSelectionExpression") != ROUTE_SELECTION:
        problems.append(f"{api_name}: RouteSelectionExpression is not {ROUTE_SELECTION}")
    routes = {
        props.get("RouteKey"): (name, props) for name, props in _of_type(resources, "AWS::ApiGatewayV2::Route").items()
    }
    for key, spec in ROUTES.items():
        if key not in routes:
            problems.append(f"no route {key}")
            continue
        problems += _route_problems(key, spec, *routes[key], resources, handlers)
    problems += _deployment_problems(resources, [name for name, _ in routes.values()])
    return problems


def _route_problems(
    key: str, spec: str, name: str, route: dict[str, Any], resources: dict[str, Any], handlers: dict[str, str]
) -> list[str]:
    target = _TARGET.match(_sub(route.get("Target")))
    integration = resources.get(target.group(1), {}) if target else {}
    if integration.get("Type") != "AWS::ApiGatewayV2::Integration":
        return [f"{name} ({key}): Target is not integrations/${{<an integration>}}"]
    props = integration.get("Properties") or {}
    if props.get("IntegrationType") != "AWS_PROXY":
        return [f"{name} ({key}): IntegrationType is {props.get('IntegrationType')!r}, not 'AWS_PROXY'"]
    function = _LAMBDA_URI.search(_sub(props.get("IntegrationUri")))
    if function is None or handlers.get(function.group(1)) != spec:
        found = handlers.get(function.group(1)) if function else None
        return [f"{name} ({key}): integrates {found or 'no function of the template'}, not {spec}"]
    source = f"${{WebSocketApi}}/${{Stage}}/{key}"
    for permission in _of_type(resources, "AWS::Lambda::Permission").values():
        if permission.get("FunctionName") == {"Ref": function.group(1)} and _sub(permission.get("SourceArn")).endswith(
            source
        ):
            return []
    return [
        f"{name} ({key}): no AWS::Lambda::Permission with SourceArn ...:{source} lets it invoke {function.group(1)}"
    ]


def _deployment_problems(resources: dict[str, Any], route_names: list[str]) -> list[str]:
    deployments = {n: r for n, r in resources.items() if r.get("Type") == "AWS::ApiGatewayV2::Deployment"}
    if len(deployments) != 1:
        return [f"expected one AWS::ApiGatewayV2::Deployment, found {len(deployments)}"]
    [(name, deployment)] = deployments.items()
    depends = deployment.get("DependsOn", [])
    depends = [depends] if isinstance(depends, str) else depends
    # Without DependsOn on every route, the deployment can snapshot an API that lacks some of them.
    problems = [f"{name} does not DependsOn route {route}" for route in route_names if route not in depends]
    stages = _of_type(resources, "AWS::ApiGatewayV2::Stage")
    if not any(
        props.get("DeploymentId") == {"Ref": name} and props.get("StageName") == {"Ref": "Stage"}
        for props in stages.values()
    ):
        problems.append(f"no AWS::ApiGatewayV2::Stage named by the Stage parameter deploys {name}")
    return problems
