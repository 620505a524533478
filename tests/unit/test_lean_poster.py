"""The lean ``@connections`` poster, with no network.

Signing is checked against botocore itself: ``SigV4Auth`` on the same request, time and credentials, and an
unmodified boto3 ``apigatewaymanagementapi`` client whose request is captured just before it would be sent.
The outcome and retry tests inject a fake transport at the HTTP boundary (``FakeTransport`` answers scripted
replies or raises urllib3's errors where ``Urllib3Transport`` would talk HTTP), a recorded sleep and a fixed
random draw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from iii_stream.adapters.signed_poster import Backoff, Reply, SignedConnectionsPoster, region_of
from iii_stream.adapters.sigv4 import CachedKeySigner, host_header, signing_key
from iii_stream.core.errors import ConnectionGoneError, PostError
from iii_stream.core.pacing import AdaptiveRate
from urllib3.exceptions import ProtocolError, ReadTimeoutError

NOW = datetime(2026, 12, 2, 23, 59, 58, tzinfo=UTC).timestamp()
ENDPOINT = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
CONNECTION_ID = "R1kmxc2VNjMCFIA="
DATA = b'{"type":"stream","event":{"type":"update","data":{"id":"m1"}}}'
ENDPOINTS = [
    ENDPOINT,
    ENDPOINT + "/",
    "https://abc123.execute-api.eu-west-1.amazonaws.com",
    "http://127.0.0.1:3112/local",
    "https://WS.Example.com:443/a/b/",
    "http://ws.example.com:80//x//y",
    "http://[::1]:8080/local",
]
IDS = [CONNECTION_ID, "a/b+c=", "=/+", "sp ace~ü", "a%2Fb", "..x", "@c", "-_.", "Ab-_0="]


def _fixed(at: float) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(at, UTC).replace(tzinfo=None)


def sigv4auth(method: str, url: str, body: bytes, frozen: ReadOnlyCredentials, region: str, at: float) -> AWSRequest:
    """The request as botocore's SigV4Auth signs it at ``at``."""
    request = AWSRequest(method=method, url=url, data=body)
    with mock.patch("botocore.auth.get_current_datetime", _fixed(at)):
        SigV4Auth(frozen, "execute-api", region).add_auth(request)
    return request


def _wanted(request: AWSRequest, region: str) -> dict[str, str]:
    wanted = {name: str(value) for name, value in request.headers.items()}
    wanted["Host"] = SigV4Auth(None, "execute-api", region).headers_to_sign(request)["host"]
    return wanted


def _signer(credentials: Any, endpoint: str = ENDPOINT, region: str = "eu-west-1", at: float = NOW) -> CachedKeySigner:
    return CachedKeySigner(credentials, region, host_header(endpoint), clock=lambda: at)


def _poster(endpoint: str, credentials: Any) -> SignedConnectionsPoster:
    return SignedConnectionsPoster(endpoint, _signer(credentials, endpoint), FakeTransport(Reply(200, None, b"")))


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//token+with/slashes=="])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_signed_headers_are_sigv4auths_byte_for_byte(endpoint: str, token: str | None) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    poster = _poster(endpoint, credentials)
    for connection_id in IDS:
        for method, body in (("POST", DATA), ("GET", b""), ("POST", b"")):
            target = poster.target(connection_id)
            signed = poster.signer.sign(method, target, body)

            request = sigv4auth(method, target.url, body, credentials.get_frozen_credentials(), "eu-west-1", NOW)
            assert signed == _wanted(request, "eu-west-1")
            assert "x-amz-content-sha256" not in {name.lower() for name in request.headers}  # nor do we send it


class Captured:
    """An unmodified boto3 client whose requests stop just before the wire (a ``before-send`` answer)."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        self.client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            region_name="eu-west-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret/key+x",
            aws_session_token=token,
        )
        self.client.meta.events.register("before-send", self._answer)
        self.sent: Any = None

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        self.sent = request
        answer = AWSResponse(request.url, 200, {}, None)
        answer._content = b"{}"
        return answer

    def headers(self) -> dict[str, str]:
        names = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        got = {name: self.sent.headers[name] for name in names if name in self.sent.headers}
        return {name: value.decode() if isinstance(value, bytes) else value for name, value in got.items()}


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_url_and_signature_are_what_boto3_sends(endpoint: str, token: str | None) -> None:
    captured = Captured(endpoint, token)
    poster = _poster(endpoint, Credentials("AKIDEXAMPLE", "secret/key+x", token))
    for connection_id in IDS:
        for method, body in (("POST", DATA), ("GET", b"")):
            with mock.patch("botocore.auth.get_current_datetime", _fixed(NOW)):
                if method == "POST":
                    captured.client.post_to_connection(ConnectionId=connection_id, Data=DATA)
                else:
                    captured.client.get_connection(ConnectionId=connection_id)
            target = poster.target(connection_id)
            signed = poster.signer.sign(method, target, body)

            assert target.url == captured.sent.url
            assert {name: signed[name] for name in captured.headers()} == captured.headers()
            assert set(signed) == {"Host", *captured.headers()}


def test_ids_are_percent_encoded_with_no_safe_characters_and_doubly_in_the_canonical_path() -> None:
    target = _poster(ENDPOINT, Credentials("a", "b")).target("a/b+c=")

    assert target.path == "/prod/@connections/a%2Fb%2Bc%3D"
    assert target.canonical_path == "/prod/%40connections/a%252Fb%252Bc%253D"


@pytest.mark.parametrize("connection_id", ["", ".", ".."])
def test_a_dot_segment_is_not_an_id_and_is_never_sent(connection_id: str) -> None:
    transport = FakeTransport(Reply(200, None, b""))
    poster = SignedConnectionsPoster(ENDPOINT, _signer(Credentials("a", "b")), transport)

    with pytest.raises(PostError, match="not a connection id"):
        poster.post(connection_id, DATA)

    assert transport.requests == []


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def aware(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


def test_refreshed_credentials_are_used_and_their_key_derived_once() -> None:
    clock = Clock(NOW - 3600)
    issued = iter(["2", "3"])

    def refresh() -> dict[str, str]:
        n = next(issued)
        expiry = (clock.aware() + timedelta(hours=1)).isoformat()
        return {"access_key": f"AK{n}", "secret_key": f"SK{n}", "token": f"TOK{n}", "expiry_time": expiry}

    credentials = RefreshableCredentials(
        "AK1", "SK1", "TOK1", clock.aware() + timedelta(minutes=30), refresh, "test", time_fetcher=clock.aware
    )
    signer = CachedKeySigner(credentials, "eu-west-1", host_header(ENDPOINT), clock=clock)
    target = _poster(ENDPOINT, credentials).target(CONNECTION_ID)
    signing_key.cache_clear()

    def sign_and_check(access_key: str, token: str) -> None:
        signed = signer.sign("POST", target, DATA)
        frozen = ReadOnlyCredentials(access_key, "SK" + access_key[2:], token)
        assert signed == _wanted(sigv4auth("POST", target.url, DATA, frozen, "eu-west-1", clock.at), "eu-west-1")

    for _ in range(3):
        sign_and_check("AK1", "TOK1")
    assert signing_key.cache_info().misses == 1

    clock.at += 25 * 60  # within botocore's mandatory refresh window (10 min before expiry)
    sign_and_check("AK2", "TOK2")
    sign_and_check("AK2", "TOK2")
    assert signing_key.cache_info().misses == 2


def test_a_new_day_derives_a_new_key() -> None:
    clock = Clock(NOW)  # 23:59:58 UTC
    credentials = Credentials("AK", "SK")
    signer = CachedKeySigner(credentials, "eu-west-1", host_header(ENDPOINT), clock=clock)
    target = _poster(ENDPOINT, credentials).target(CONNECTION_ID)
    signing_key.cache_clear()

    for at in (NOW, NOW + 1, NOW + 3):
        clock.at = at
        signed = signer.sign("POST", target, DATA)
        request = sigv4auth("POST", target.url, DATA, credentials.get_frozen_credentials(), "eu-west-1", at)
        assert signed == _wanted(request, "eu-west-1")

    assert signing_key.cache_info().misses == 2


Step = Reply | Exception


class FakeTransport:
    """Stands in for Urllib3Transport: records each request and plays the script (its last step repeats)."""

    def __init__(self, *script: Step) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        self.requests.append((method, path, body, headers))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


OK = Reply(200, None, b"")
GONE = Reply(410, "GoneException", b"")
THROTTLED = Reply(429, "LimitExceededException", b'{"message":"Limit Exceeded"}')
BACKOFF = Backoff(attempts=8, base_seconds=0.1, cap_seconds=3.2, throttle_patience_seconds=0.0)  # throttles as failures
PATIENT = Backoff(attempts=8, base_seconds=0.1, cap_seconds=3.2, throttle_patience_seconds=30.0)


class Posting:
    def __init__(self, *script: Step, draw: Callable[[], float] = lambda: 0.5, backoff: Backoff = BACKOFF) -> None:
        self.transport = FakeTransport(*script)
        self.sleeps: list[float] = []
        self.throttle_calls = 0
        signer = _signer(Credentials("AK", "SK", "TOKEN"))
        self.poster = SignedConnectionsPoster(
            ENDPOINT, signer, self.transport, backoff, self.sleeps.append, draw, on_throttle=self._throttled
        )

    def _throttled(self) -> None:
        self.throttle_calls += 1


def test_a_post_sends_the_bytes_signed_to_the_connection() -> None:
    posting = Posting(OK)

    posting.poster.post(CONNECTION_ID, DATA)

    [(method, path, body, headers)] = posting.transport.requests
    assert (method, path, body) == ("POST", "/prod/@connections/R1kmxc2VNjMCFIA%3D", DATA)
    assert headers["Host"] == "abc123.execute-api.eu-west-1.amazonaws.com"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/20261202/eu-west-1/execute-api/")
    assert headers["X-Amz-Security-Token"] == "TOKEN"
    assert posting.sleeps == []


@pytest.mark.parametrize("reply", [GONE, Reply(410, None, b""), Reply(410, "GoneException:http://x/", b"{}")])
def test_a_410_is_connection_gone_at_once(reply: Reply) -> None:
    posting = Posting(reply, OK)

    with pytest.raises(ConnectionGoneError) as raised:
        posting.poster.post(CONNECTION_ID, DATA)

    assert raised.value.connection_id == CONNECTION_ID
    assert len(posting.transport.requests) == 1
    assert posting.sleeps == []


def test_alive_gets_the_connection_and_is_false_when_gone() -> None:
    assert Posting(Reply(200, None, b'{"connectedAt":"2026-12-02T00:00:00.000Z"}')).poster.alive(CONNECTION_ID)
    posting = Posting(GONE)
    assert not posting.poster.alive(CONNECTION_ID)
    [(method, path, body, _)] = posting.transport.requests
    assert (method, path, body) == ("GET", "/prod/@connections/R1kmxc2VNjMCFIA%3D", b"")


@pytest.mark.parametrize(
    "throttled",
    [
        THROTTLED,
        Reply(429, None, b""),
        Reply(429, "TooManyRequestsException", b""),
        Reply(400, "ThrottlingException", b""),
        Reply(400, None, b'{"__type":"com.amazonaws#Throttling","message":"Rate exceeded"}'),
    ],
)
def test_throttling_is_retried_with_growing_jittered_waits_and_counted(throttled: Reply) -> None:
    posting = Posting(throttled, throttled, throttled, OK)

    posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == 4
    assert posting.sleeps == pytest.approx([0.05, 0.1, 0.2])  # the draw (0.5) times 0.1, 0.2, 0.4 s
    assert posting.poster.throttled == posting.throttle_calls == 3


def test_each_wait_is_a_fresh_draw_under_a_capped_doubling() -> None:
    draws = iter([0.25, 0.9, 0.0, 1.0, 1.0, 1.0, 0.5])
    posting = Posting(THROTTLED, draw=lambda: next(draws))

    with pytest.raises(PostError):
        posting.poster.post(CONNECTION_ID, DATA)

    assert posting.sleeps == pytest.approx([0.025, 0.18, 0.0, 0.8, 1.6, 3.2, 1.6])


@pytest.mark.parametrize(
    "transient",
    [
        Reply(500, None, b""),
        Reply(502, None, b"<html>"),
        Reply(503, "ServiceUnavailableException", b""),
        Reply(504, None, b""),
    ],
)
def test_a_5xx_is_retried_without_counting_a_throttle(transient: Reply) -> None:
    posting = Posting(transient, OK)

    posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == 2
    assert posting.poster.throttled == 0


def test_failures_beyond_the_budget_are_a_post_error() -> None:
    posting = Posting(Reply(500, "InternalServerErrorException", b'{"message":"Internal server error"}'))

    with pytest.raises(PostError, match=f"InternalServerErrorException posting to {CONNECTION_ID}"):
        posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == BACKOFF.attempts
    assert len(posting.sleeps) == BACKOFF.attempts - 1


def test_a_throttle_storm_beyond_the_budget_is_a_post_error_and_every_throttle_counted() -> None:
    posting = Posting(THROTTLED)

    with pytest.raises(PostError, match="LimitExceededException"):
        posting.poster.post(CONNECTION_ID, DATA)

    assert posting.poster.throttled == BACKOFF.attempts


@pytest.mark.parametrize(
    "lasting",
    [
        Reply(403, "ForbiddenException", b'{"message":"Forbidden"}'),
        Reply(413, "PayloadTooLargeException", b'{"message":"Request Too Long"}'),
        Reply(400, None, b'{"message":"Invalid connectionId"}'),
        Reply(404, None, b"not json"),
    ],
)
def test_another_4xx_is_a_post_error_at_once(lasting: Reply) -> None:
    posting = Posting(lasting, OK)

    with pytest.raises(PostError) as raised:
        posting.poster.post(CONNECTION_ID, DATA)

    assert not isinstance(raised.value, ConnectionGoneError)
    assert str(raised.value) == f"{lasting.code()} posting to {CONNECTION_ID}"
    assert len(posting.transport.requests) == 1
    assert posting.sleeps == []


def test_alive_raises_post_error_when_it_cannot_tell() -> None:
    with pytest.raises(PostError, match=f"ForbiddenException checking {CONNECTION_ID}"):
        Posting(Reply(403, "ForbiddenException", b"")).poster.alive(CONNECTION_ID)


@pytest.mark.parametrize(
    "error",
    [ProtocolError("Connection aborted."), ReadTimeoutError(None, "/", "Read timed out."), ConnectionResetError()],  # type: ignore[arg-type]
)
def test_a_network_error_is_retried(error: Exception) -> None:
    posting = Posting(error, OK)

    posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == 2
    assert len(posting.sleeps) == 1


def test_a_lasting_network_error_is_a_post_error() -> None:
    posting = Posting(ProtocolError("Connection aborted."))

    with pytest.raises(PostError, match=f"ProtocolError posting to {CONNECTION_ID}: Connection aborted"):
        posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == BACKOFF.attempts


class ThrottlesEachPathOnce:
    """A thread-safe fake transport: the first request for each connection is throttled, the next one passes."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        with self.lock:
            first = path not in self.seen
            self.seen.add(path)
        return THROTTLED if first else OK


def test_one_poster_serves_many_threads_and_counts_every_throttle() -> None:
    calls: list[None] = []
    signer = _signer(Credentials("AK", "SK"))
    poster = SignedConnectionsPoster(
        ENDPOINT, signer, ThrottlesEachPathOnce(), sleep=lambda _: None, on_throttle=lambda: calls.append(None)
    )

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda n: poster.post(f"conn-{n}=", DATA), range(500)))

    assert poster.throttled == len(calls) == 500


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(410, "GoneException:http://internal.amazon.com/", b""), "GoneException"),
        (Reply(400, None, b'{"code":"BadRequestException"}'), "BadRequestException"),
        (Reply(400, None, b'{"Code":"aws.protocol#BadRequest"}'), "BadRequest"),
        (Reply(502, None, b"<html>Bad gateway</html>"), "502"),
        (Reply(500, None, b"[1]"), "500"),
    ],
)
def test_error_codes_are_read_as_botocore_reads_them(reply: Reply, code: str) -> None:
    assert reply.code() == code


def test_region_and_host_come_from_the_endpoint() -> None:
    assert region_of(ENDPOINT) == "eu-west-1"
    assert region_of("https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod") == "cn-north-1"
    assert region_of("https://ws.example.com/prod") is None
    assert region_of("http://127.0.0.1:3112/local") is None
    assert host_header("https://ABC.example.com:443/prod") == "abc.example.com"
    assert host_header("http://127.0.0.1:3112/local") == "127.0.0.1:3112"


def _scope(poster: SignedConnectionsPoster) -> str:
    authorization = poster.signer.sign("POST", poster.target(CONNECTION_ID), DATA)["Authorization"]
    return authorization.split("Credential=")[1].split(",")[0]


def test_from_endpoint_uses_the_default_chain_and_the_endpoints_region() -> None:
    # tests/conftest.py made the environment offline: AWS_ACCESS_KEY_ID=testing, AWS_REGION=us-east-1
    poster = SignedConnectionsPoster.from_endpoint(ENDPOINT, max_connections=64)
    try:
        assert _scope(poster).startswith("testing/")
        assert _scope(poster).endswith("/eu-west-1/execute-api/aws4_request")
        assert poster.transport.pool.pool.maxsize == 64  # type: ignore[attr-defined]
    finally:
        poster.close()


def test_from_endpoint_takes_a_region_and_credentials() -> None:
    local = SignedConnectionsPoster.from_endpoint("http://127.0.0.1:3112/local")
    chosen = SignedConnectionsPoster.from_endpoint(ENDPOINT, region="eu-central-1", credentials=Credentials("AK", "SK"))
    try:
        assert _scope(local).endswith("/us-east-1/execute-api/aws4_request")  # the session's region (AWS_REGION)
        assert _scope(chosen).startswith("AK/") and "/eu-central-1/" in _scope(chosen)
    finally:
        local.close()
        chosen.close()


# --- backpressure: throttling is waited out (within a patience), and the posts slow down ----------------------
def test_a_throttle_storm_longer_than_the_attempts_is_waited_out_within_the_patience() -> None:
    # GIVEN 20 throttled answers in a row (more than the 8 attempts), then acceptance
    posting = Posting(*([THROTTLED] * 20), OK, backoff=PATIENT)

    # WHEN posting: slowed, not failed
    posting.poster.post(CONNECTION_ID, DATA)

    assert len(posting.transport.requests) == 21
    assert posting.poster.throttled == 20
    assert sum(posting.sleeps) <= PATIENT.throttle_patience_seconds


def test_a_throttle_storm_beyond_the_patience_is_a_post_error() -> None:
    posting = Posting(THROTTLED, backoff=PATIENT)

    with pytest.raises(PostError, match="LimitExceededException"):
        posting.poster.post(CONNECTION_ID, DATA)

    # it waited as long as the patience allows (the next wait would have gone past it), no longer
    assert len(posting.transport.requests) > PATIENT.attempts
    assert sum(posting.sleeps) <= PATIENT.throttle_patience_seconds
    assert sum(posting.sleeps) + PATIENT.delay(len(posting.sleeps) + 1, 0.5) > PATIENT.throttle_patience_seconds


def test_throttles_do_not_stretch_the_budget_of_other_failures() -> None:
    # 5xx answers keep their own budget of attempts even when throttles come between them
    script = [Reply(503, None, b""), THROTTLED] * 10
    posting = Posting(*script, backoff=PATIENT)

    with pytest.raises(PostError, match="503"):
        posting.poster.post(CONNECTION_ID, DATA)

    assert sum(1 for reply in script[: len(posting.transport.requests)] if reply.status == 503) == PATIENT.attempts


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_pace_is_free_until_a_throttle_then_halves_the_rate_that_was_sent() -> None:
    time = FakeTime()
    rate = AdaptiveRate(clock=time.clock, sleep=time.sleep, floor_rps=1.0)
    for _ in range(400):  # 400 requests within one second: unlimited, no waits
        rate.wait()
        time.now += 0.0025
    assert rate.limit is None and time.sleeps == []

    rate.throttled()

    assert rate.limit == pytest.approx(200.0)  # half of the 400/s being sent
    for _ in range(3):
        rate.wait()
    assert time.sleeps == pytest.approx([1 / 200, 1 / 200])  # the first goes at once, then one per 5 ms


def test_the_pace_recovers_with_successes_and_lifts_at_the_ceiling() -> None:
    time = FakeTime()
    rate = AdaptiveRate(ceiling_rps=1000.0, floor_rps=10.0, recovery_rps=100.0, clock=time.clock, sleep=time.sleep)
    rate.throttled()  # nothing sent yet: the floor
    assert rate.limit == 10.0
    rate.succeeded()
    assert rate.limit == pytest.approx(20.0)  # + recovery / limit
    while rate.limit is not None:
        rate.succeeded()
    rate.throttled()
    rate.throttled()
    assert rate.limit == 10.0  # halving never goes under the floor


def test_a_throttled_poster_slows_its_later_posts() -> None:
    # GIVEN a poster with a pace, whose first post meets one throttle
    time = FakeTime()
    pacer = AdaptiveRate(floor_rps=50.0, clock=time.clock, sleep=time.sleep)
    signer = _signer(Credentials("AK", "SK", "TOKEN"))
    transport = FakeTransport(THROTTLED, OK)
    poster = SignedConnectionsPoster(ENDPOINT, signer, transport, PATIENT, time.sleep, lambda: 0.0, pacer=pacer)

    # WHEN it posts five frames
    for _ in range(5):
        poster.post(CONNECTION_ID, DATA)

    # THEN the posts after the throttle were spaced by the pace (50/s: 20 ms), not sent back to back
    assert pacer.limit is not None
    assert len(transport.requests) == 6
    assert len([s for s in time.sleeps if s > 0]) >= 4
    assert all(s <= 1 / 50 + 1e-9 for s in time.sleeps if s > 0)
