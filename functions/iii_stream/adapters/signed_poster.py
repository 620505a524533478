"""The Poster port on ``@connections`` without boto3: SigV4 with a cached key over a pool of keep-alive sockets.

Same outcomes as ``ConnectionsApiPoster`` (410 -> ConnectionGoneError, or False from ``alive``; throttling,
5xx and network errors retried, then PostError; any other 4xx a PostError at once), at under a tenth of
boto3's CPU per post over ``http_transport.KeepAliveTransport`` (about a third over urllib3;
``bench/post_cost.py``). Retries wait with full jitter, and every throttled answer is
counted (``throttled``) and reported (``on_throttle``) so a broadcast can publish it and slow down.

Examples
--------
>>> poster = SignedConnectionsPoster.from_endpoint(  # doctest: +SKIP
...     "https://abc123.execute-api.eu-west-1.amazonaws.com/prod", max_connections=128)
>>> poster.post("R1kmxc2VNjMCFIA=", b'{"hello":"world"}')  # doctest: +SKIP
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from iii_stream.adapters.http_transport import KeepAliveTransport, Reply
from iii_stream.adapters.sigv4 import CachedKeySigner, CredentialSource, Signer, Target, canonical_uri, host_header
from iii_stream.core.errors import ConnectionGoneError, PostError
from iii_stream.core.pacing import AdaptiveRate

# API Gateway answers 429 LimitExceededException; the rest are the throttling codes botocore knows for it.
THROTTLING_CODES: Final = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException"}
)
TRANSIENT_CODES: Final = frozenset({"InternalServerErrorException", "ServiceUnavailableException"})
_REGION_IN_HOST: Final = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_DOT_SEGMENTS: Final = frozenset({"", ".", ".."})  # not ids: they would change the path the request goes to
_THROTTLED: Final = "throttled:"  # marks a throttled attempt's outcome inside _call


@dataclass(frozen=True)
class Backoff:
    """Attempts in all, and full-jitter exponential waits: ``random() * min(cap, base * 2 ** (attempt - 1))``.

    The default budget is the one boto3 gave (3 of our attempts over botocore's 3: at most 9 requests and
    about 9 s of waiting, 4.7 s on average): 8 requests, at most 9.5 s of waiting, 4.75 s on average.
    Throttling is backpressure, not failure: a throttled request goes on being retried past ``attempts``
    until its waits add up to ``throttle_patience_seconds`` (0: throttles count as attempts like any failure).
    """

    attempts: int = 8
    base_seconds: float = 0.1
    cap_seconds: float = 3.2
    throttle_patience_seconds: float = 30.0

    def delay(self, attempt: int, draw: float) -> float:
        return draw * min(self.cap_seconds, self.base_seconds * 2.0 ** (attempt - 1))


DEFAULT_BACKOFF: Final = Backoff()


class Transport(Protocol):
    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """One HTTP exchange; raises urllib3's HTTPError (or OSError) when no answer came."""
        ...


class Urllib3Transport:
    """A keep-alive connection pool to one host, safe to share between threads; at most ``maxsize`` sockets."""

    def __init__(
        self, endpoint_url: str, maxsize: int, connect_timeout: float = 5.0, read_timeout: float = 10.0
    ) -> None:
        from botocore.httpsession import where  # the CA bundle botocore verifies with

        options: dict[str, object] = {"ca_certs": where()} if endpoint_url.startswith("https") else {}
        timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # block: a thread waits for a free socket rather than opening (and then discarding) one more.
        self.pool = urllib3.connection_from_url(
            endpoint_url, maxsize=maxsize, block=True, timeout=timeout, retries=False, **options
        )

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        response = self.pool.urlopen(method, path, body=body or None, headers=headers, redirect=False)
        return Reply(response.status, response.headers.get("x-amzn-ErrorType"), response.data)

    def close(self) -> None:
        self.pool.close()


def region_of(endpoint_url: str) -> str | None:
    """The region in an ``{api}.execute-api.{region}.amazonaws.com`` host (None for a custom domain or local)."""
    found = _REGION_IN_HOST.search(urlsplit(endpoint_url).hostname or "")
    return found.group(1) if found else None


class SignedConnectionsPoster:
    """Posts frames (``PostToConnection``) and checks connections (``GetConnection``), signed with SigV4.

    ``throttled`` counts the throttled answers seen (429 / LimitExceededException and kin); ``on_throttle`` is
    called once for each, from the posting thread. Thread-safe: one instance serves a whole thread pool.
    ``signer`` and ``transport`` are what it was built with (``from_endpoint``: a CachedKeySigner and a
    KeepAliveTransport, or a Urllib3Transport, whose pool holds ``max_connections`` sockets).
    """

    def __init__(
        self,
        endpoint_url: str,
        signer: Signer,
        transport: Transport,
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        draw: Callable[[], float] = random.random,
        on_throttle: Callable[[], None] | None = None,
        pacer: AdaptiveRate | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        # botocore's join: "/prod" or "/prod/" + "/@connections/{id}" -> "/prod/@connections/{id}".
        path = parts.path[:-1] if parts.path.endswith("/") else parts.path
        self._base_url = f"{parts.scheme}://{parts.netloc}"
        self._base_path = f"{path}/@connections/"
        self._canonical_base = canonical_uri(self._base_path)
        self.signer = signer
        self.transport = transport
        self.backoff = backoff
        self._sleep = sleep
        self._draw = draw
        self.on_throttle = on_throttle
        self.pacer = pacer
        self._throttled = 0
        self._lock = threading.Lock()

    @classmethod
    def from_endpoint(
        cls,
        endpoint_url: str,
        region: str | None = None,
        max_connections: int = 10,
        credentials: CredentialSource | None = None,
        on_throttle: Callable[[], None] | None = None,
        transport: Literal["keepalive", "urllib3"] = "keepalive",
    ) -> SignedConnectionsPoster:
        """Build it on botocore's default credential chain and region (the one a boto3 client would use).

        ``transport``: ``"keepalive"``, the lean HTTP/1.1 client of ``http_transport`` (the hot path), or
        ``"urllib3"``, the library's pool (the baseline ``bench/post_cost.py`` measures it against).
        """
        if transport not in ("keepalive", "urllib3"):
            raise ValueError(f"transport must be 'keepalive' or 'urllib3', not {transport!r}")
        import botocore.session
        from botocore.exceptions import NoCredentialsError

        session = botocore.session.Session()
        credentials = credentials or session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        region = region or region_of(endpoint_url) or session.get_config_variable("region") or "us-east-1"
        signer = CachedKeySigner(credentials, region, host_header(endpoint_url))
        pool: Transport
        if transport == "urllib3":
            pool = Urllib3Transport(endpoint_url, max_connections)
        else:
            pool = KeepAliveTransport(endpoint_url, max_connections)
        return cls(endpoint_url, signer, pool, on_throttle=on_throttle, pacer=AdaptiveRate())

    @property
    def throttled(self) -> int:
        """Throttled answers seen since this poster was built."""
        return self._throttled

    def post(self, connection_id: str, data: bytes) -> int:
        """Deliver; returns the throttled answers it waited out (ConnectionGoneError on a 410)."""
        delivered, throttles = self._call("POST", connection_id, data, "posting to")
        if not delivered:
            raise ConnectionGoneError(connection_id)
        return throttles

    def alive(self, connection_id: str) -> bool:
        return self._call("GET", connection_id, b"", "checking")[0]

    def close(self) -> None:
        """Close the pooled sockets (when the transport has them)."""
        close: Callable[[], None] | None = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def target(self, connection_id: str) -> Target:
        """Where a request about ``connection_id`` goes: the id percent-encoded with no safe characters."""
        quoted = quote(connection_id, safe="-_.~")
        if quoted in _DOT_SEGMENTS:
            raise PostError(f"{connection_id!r} is not a connection id")
        path = self._base_path + quoted
        return Target(self._base_url + path, path, self._canonical_base + quote(quoted, safe="/~"))

    def _call(self, method: str, connection_id: str, body: bytes, doing: str) -> tuple[bool, int]:
        """(True on a 2xx, False when the connection is gone; the throttled answers on the way); PostError when
        it failed for good."""
        target = self.target(connection_id)
        patience = self.backoff.throttle_patience_seconds
        attempt, failures, throttle_waits, throttles = 1, 0, 0.0, 0
        while True:
            outcome = self._attempt(method, target, body, f"{doing} {connection_id}")
            if isinstance(outcome, bool):
                return outcome, throttles
            throttles += outcome.startswith(_THROTTLED)
            throttled = outcome.startswith(_THROTTLED) and patience > 0
            failures += not throttled
            if failures >= self.backoff.attempts:
                raise PostError(outcome.removeprefix(_THROTTLED))
            delay = self.backoff.delay(attempt, self._draw())
            if throttled:
                if throttle_waits + delay > patience:
                    raise PostError(outcome.removeprefix(_THROTTLED))
                throttle_waits += delay
            self._sleep(delay)
            attempt += 1

    def _attempt(self, method: str, target: Target, body: bytes, what: str) -> bool | str:
        """One request: True (2xx), False (gone), or the failure to retry; PostError when retrying cannot help."""
        if self.pacer is not None:
            self.pacer.wait()
        try:
            reply = self.transport.send(method, target.path, body, self.signer.sign(method, target, body))
        except (HTTPError, OSError) as exc:
            return f"{type(exc).__name__} {what}: {exc}"
        if reply.status < 300:
            if self.pacer is not None:
                self.pacer.succeeded()
            return True
        code = reply.code()
        if reply.status == 410 or code == "GoneException":
            return False
        if reply.status == 429 or code in THROTTLING_CODES:
            self._count_throttle()
            return f"{_THROTTLED}{code} {what}"
        if reply.status < 500 and code not in TRANSIENT_CODES:
            raise PostError(f"{code} {what}")
        return f"{code} {what}"

    def _count_throttle(self) -> None:
        with self._lock:
            self._throttled += 1
        if self.pacer is not None:
            self.pacer.throttled()
        if self.on_throttle is not None:
            self.on_throttle()
