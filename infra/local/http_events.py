"""API Gateway HTTP API, payload format 2.0, as pure functions: route matching, the Lambda event, the answer.

Used by ``infra.local.http_api`` (the server); nothing here touches a socket or a clock of its own.

Route selection (``RouteTable``): a request matches a route when the method is the route's (or the route's is
``ANY``) and the path fits its template segment by segment: a literal segment matches itself (after percent
decoding, case-sensitive), ``{name}`` one non-empty segment, a final ``{name+}`` one or more segments (the
rest of the path). Of the routes that match, the most specific wins: compared segment by segment from the
left, literal before ``{name}`` before ``{name+}``; on equal paths the route with the very method wins over
``ANY``. Path parameters are percent-decoded (``%2F`` inside a segment stays inside that parameter).

The event (``build_event``) is format 2.0 as HTTP API sends it: header names lower-cased, repeated headers
joined with commas, the ``cookie`` header(s) moved to ``cookies`` (one entry per cookie), repeated query
keys joined with commas, ``rawPath`` and ``requestContext.http.path`` percent-decoded (as live HTTP API events
show; REST APIs and function URLs keep the encoding), ``rawQueryString`` as sent, ``cookies``,
``queryStringParameters``, ``pathParameters`` and ``body`` present only when there is something to put in them.
The body is text for ``text/*``, ``application/json``, ``application/xml`` and ``application/javascript``
(when it is UTF-8), base64 with ``isBase64Encoded: true`` for anything else, a missing ``Content-Type`` and
``application/x-www-form-urlencoded`` included (as measured on AWS).

The answer (``map_response``), as HTTP API maps a format 2.0 Lambda result: an object with ``statusCode`` is
a proxy response (``headers``, ``cookies`` as one ``Set-Cookie`` each, ``body``, base64-decoded when
``isBase64Encoded``); anything else that is JSON (an object without ``statusCode``, an array, a number, a
boolean, null) is a 200 ``application/json`` answer whose body is that JSON, and a bare string is sent as it
is, without JSON quotes (AWS's documented inference: ``"Hello"`` becomes the body ``Hello``). A proxy response
that cannot be sent as given is ``MalformedResponse``, which the server answers 500 Internal Server Error.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from iii_stream.app import DeclaredRoute
from iii_stream.core.connect import ConnectRequest

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit (10 MB); a larger request gets 413
INTEGRATION_TIMEOUT_SECONDS = 30.0  # HTTP API's maximum integration timeout; past it the client gets 503
ACCOUNT_ID = "000000000000"
API_ID = "local"
STAGE = "$default"

_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Set by the server itself, never copied from a function's answer; access-control-* is the CORS configuration's.
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})

# Hop-by-hop headers end at the gateway: they are not the function's to see.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "upgrade"})

Headers = list[tuple[str, str]]


# --- answers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What goes back to the client: status, headers (in order, names may repeat) and the body bytes."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def gateway_error(status: int, message: str) -> Answer:
    """One of HTTP API's own answers: ``{"message":"Not Found"}`` and the like, as JSON."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return Answer(status, [("content-type", "application/json")], body)


def bad_request() -> Answer:
    return gateway_error(400, "Bad Request")


def not_found() -> Answer:
    return gateway_error(404, "Not Found")


def forbidden() -> Answer:
    return gateway_error(403, "Forbidden")


def too_large() -> Answer:
    return gateway_error(413, "Request Entity Too Large")


def internal_error() -> Answer:
    return gateway_error(500, "Internal Server Error")


def service_unavailable() -> Answer:
    return gateway_error(503, "Service Unavailable")


class MalformedResponse(ValueError):
    """A function's result that HTTP API could not turn into an answer (it answers 500)."""


def map_response(result: Any) -> Answer:
    """A format 2.0 Lambda result -> the answer HTTP API sends (raises MalformedResponse)."""
    try:  # what the Lambda runtime would send: JSON, or the invocation fails
        value = json.loads(json.dumps(result, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedResponse(f"the result is not JSON: {exc}") from None
    if isinstance(value, dict) and "statusCode" in value:
        return _proxy_response(value)
    body = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return Answer(200, [("content-type", "application/json")], _utf8(body, "the result"))


def _proxy_response(value: dict[str, Any]) -> Answer:
    status = value["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an integer from 200 to 599")
    headers = _response_headers(value.get("headers"))
    for cookie in _response_cookies(value.get("cookies")):
        headers.append(("set-cookie", cookie))
    encoded = value.get("isBase64Encoded", False)
    if encoded is None:
        encoded = False
    if not isinstance(encoded, bool):
        raise MalformedResponse(f"isBase64Encoded {encoded!r} is not a boolean")
    raw = value.get("body")
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise MalformedResponse(f"body is {type(raw).__name__}, not a string")
    elif encoded:
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedResponse(f"body is not base64 although isBase64Encoded is true: {exc}") from None
    else:
        body = _utf8(raw, "body")
    if body and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "text/plain; charset=utf-8"))  # what HTTP API puts when there is none
    return Answer(status, headers, body)


def _response_headers(raw: Any) -> Headers:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise MalformedResponse(f"headers is {type(raw).__name__}, not an object")
    headers: Headers = []
    for name, value in raw.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = value if isinstance(value, str) else json.dumps(value)
        else:
            raise MalformedResponse(f"header {name!r} is {type(value).__name__}, not a string")
        if not _header_safe(name, text):
            raise MalformedResponse(f"header {name!r} has a name or value HTTP cannot carry")
        lowered = name.lower()
        if lowered in _DROPPED_RESPONSE_HEADERS or lowered.startswith("access-control-"):
            continue
        headers.append((name, text))
    return headers


def _response_cookies(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(cookie, str) for cookie in raw):
        raise MalformedResponse("cookies is not an array of strings")
    for cookie in raw:
        if not _header_safe("set-cookie", cookie):
            raise MalformedResponse(f"cookie {cookie!r} holds characters a header cannot carry")
    return list(raw)


def _header_safe(name: str, value: str) -> bool:
    token = bool(name) and all(33 <= ord(c) <= 126 and c not in '()<>@,;:\\"/[]?={}' for c in name)
    return token and all(c == "\t" or 32 <= ord(c) <= 126 or 128 <= ord(c) <= 255 for c in value)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: the runtime could not send it either
        raise MalformedResponse(f"{what} is not valid Unicode: {exc}") from None


# --- routes -------------------------------------------------------------------------------------------------

_LITERAL, _PARAMETER, _GREEDY = 0, 1, 2


@dataclass(frozen=True)
class RouteMatch:
    route: DeclaredRoute
    path_parameters: dict[str, str]


@dataclass(frozen=True)
class _Compiled:
    route: DeclaredRoute
    segments: tuple[tuple[int, str], ...]  # (kind, literal text or parameter name)

    @property
    def rank(self) -> tuple[tuple[int, ...], int]:
        return tuple(kind for kind, _ in self.segments), 1 if self.route.method == "ANY" else 0

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        if self.route.method not in ("ANY", method):
            return None
        greedy = bool(self.segments) and self.segments[-1][0] == _GREEDY
        if len(segments) < len(self.segments) or (not greedy and len(segments) != len(self.segments)):
            return None
        parameters: dict[str, str] = {}
        for index, (kind, text) in enumerate(self.segments):
            if kind == _LITERAL:
                if segments[index] != text:
                    return None
            elif kind == _PARAMETER:
                if not segments[index]:
                    return None
                parameters[text] = segments[index]
            else:
                rest = "/".join(segments[index:])
                if not rest:
                    return None
                parameters[text] = rest
        return parameters


def _compile(route: DeclaredRoute) -> _Compiled:
    segments: list[tuple[int, str]] = []
    for segment in route.path.split("/")[1:] if route.path != "/" else []:
        if segment.startswith("{") and segment.endswith("+}"):
            segments.append((_GREEDY, segment[1:-2]))
        elif segment.startswith("{") and segment.endswith("}"):
            segments.append((_PARAMETER, segment[1:-1]))
        else:
            segments.append((_LITERAL, segment))
    return _Compiled(route, tuple(segments))


def split_path(raw_path: str) -> list[str]:
    """A request path as sent (percent-encoded) -> its decoded segments (``/`` -> ``[]``)."""
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    return [unquote(segment) for segment in path.split("/")] if path else []


class RouteTable:
    """The declared routes, matched as HTTP API matches them (see the module docstring)."""

    def __init__(self, routes: Iterable[DeclaredRoute]) -> None:
        self._routes = [_compile(route) for route in routes]

    @property
    def routes(self) -> list[DeclaredRoute]:
        return [compiled.route for compiled in self._routes]

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        segments = split_path(raw_path)
        best: tuple[_Compiled, dict[str, str]] | None = None
        for compiled in self._routes:
            parameters = compiled.match(method.upper(), segments)
            if parameters is not None and (best is None or compiled.rank < best[0].rank):
                best = (compiled, parameters)
        return RouteMatch(best[0].route, best[1]) if best is not None else None


# --- the request --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """A request as it reached the server: the path and query exactly as sent, the headers in order."""

    method: str
    raw_path: str  # percent-encoded, without the query
    raw_query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        """The decoded path, as HTTP API gives it in ``rawPath``."""
        return unquote(self.raw_path) or "/"

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None


def event_headers(request: HttpRequest) -> tuple[dict[str, str], list[str]]:
    """Format 2.0 headers (lower-cased names, repeats comma-joined, no ``cookie`` and no hop-by-hop headers such
    as ``connection``) and the ``cookies`` list."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP:
            continue
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        elif lowered in headers:
            headers[lowered] = f"{headers[lowered]},{value}"
        else:
            headers[lowered] = value
    return headers, cookies


def query_lists(raw_query: str) -> dict[str, list[str]]:
    """The query string as key -> every value, in order (blank values kept)."""
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return query


def is_text(content_type: str | None) -> bool:
    """Whether HTTP API passes a body of this type as text (else base64)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES


def request_time(now_ms: int) -> str:
    """``12/Mar/2020:19:03:58 +0000``, whatever the locale."""
    g = time.gmtime(now_ms // 1000)
    clock = f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}"
    return f"{g.tm_mday:02d}/{_MONTHS[g.tm_mon - 1]}/{g.tm_year:04d}:{clock} +0000"


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    request_id: str,
    now_ms: int,
    domain_name: str,
    server_port: int | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The format 2.0 event for the route's function; ``authorizer`` is the auth context of an ``auth`` route."""
    headers, cookies = event_headers(request)
    headers["x-forwarded-for"] = (
        f"{headers['x-forwarded-for']}, {request.source_ip}" if "x-forwarded-for" in headers else request.source_ip
    )
    if server_port is not None:
        headers.setdefault("x-forwarded-port", str(server_port))
    headers.setdefault("x-forwarded-proto", "http")
    route_key = match.route.route_key
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = {key: ",".join(values) for key, values in query_lists(request.raw_query).items()}
    if query:
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
    }
    if authorizer is not None:
        context["authorizer"] = {"lambda": dict(authorizer)}
    context.update(
        {
            "domainName": domain_name,
            "domainPrefix": domain_name.split(":", 1)[0].split(".", 1)[0],
            "http": {
                "method": request.method.upper(),
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": STAGE,
            "time": request_time(now_ms),
            "timeEpoch": now_ms,
        }
    )
    event["requestContext"] = context
    if request.body:
        text = _as_text(request.body) if is_text(request.header("content-type")) else None
        event["body"] = text if text is not None else base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = text is None
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    event.setdefault("isBase64Encoded", False)
    return event


def _as_text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- auth ---------------------------------------------------------------------------------------------------


def auth_input(request: HttpRequest) -> dict[str, Any]:
    """The auth function's input ``{headers, path, query_params, addr}``, built as for ``$connect``.

    ``ConnectRequest.auth_input`` makes it (lower-cased header names, query values as lists, ``addr`` as
    ``<source ip>:0``); the headers are the event's (repeats comma-joined) with the cookies put back as one
    ``cookie`` header, so a session cookie reaches the auth function as it does at ``$connect``."""
    headers, cookies = event_headers(request)
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    connect = ConnectRequest("", headers, query_lists(request.raw_query), request.source_ip, path=request.path)
    return connect.auth_input()


def authorizer_context(answer: Any) -> dict[str, Any] | None:
    """The auth function's answer -> the authorizer context, or None when it refuses (``{"unauthorized": true}``).

    For wiring ``HttpApi(authorize=...)``. Raises ValueError for an answer that is not an object, or a context
    that is not an object (an HTTP API Lambda authorizer's context is a map); the server answers those 500.
    A missing or null context is ``{}``."""
    if not isinstance(answer, dict):
        raise ValueError(f"the auth function answered {type(answer).__name__}, not an object")
    if answer.get("unauthorized") is True:
        return None
    context = answer.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise ValueError(f"the auth context is {type(context).__name__}; an HTTP API authorizer context is an object")
    return context


# --- CORS ---------------------------------------------------------------------------------------------------

CORS_ALLOW_ORIGIN = ("access-control-allow-origin", "*")


def is_preflight(request: HttpRequest) -> bool:
    """A CORS preflight: OPTIONS with ``Origin`` and ``Access-Control-Request-Method``."""
    return (
        request.method.upper() == "OPTIONS"
        and request.header("origin") is not None
        and request.header("access-control-request-method") is not None
    )


def preflight_answer(request: HttpRequest) -> Answer:
    """204 with the requested method and headers allowed, any origin (CorsConfiguration AllowOrigins ``*``,
    AllowMethods ``*``, AllowHeaders ``*``)."""
    headers: Headers = [CORS_ALLOW_ORIGIN]
    method = request.header("access-control-request-method")
    if method:
        headers.append(("access-control-allow-methods", method.strip().upper()))
    requested = request.header("access-control-request-headers")
    if requested:
        headers.append(("access-control-allow-headers", requested))
    return Answer(204, headers)
