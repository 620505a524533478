"""SigV4 for ``@connections`` requests, with the derived signing key cached: botocore's signature, less CPU.

botocore's ``SigV4Auth`` derives the signing key (four HMACs) and rebuilds every part of the canonical request
on each call. Here the key is cached per (secret key, date, region, service) and the parts that depend only on
the endpoint are built once, so a post costs one SHA-256 of the body, one of the canonical request and one HMAC.
What is signed is byte for byte what ``SigV4Auth`` signs for the same request (``tests/unit/test_lean_poster.py``):
the headers ``host``, ``x-amz-date`` and, with temporary credentials, ``x-amz-security-token``, and the SHA-256 of
the body (botocore signs the payload for every service but S3, https included; no ``x-amz-content-sha256``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote, urlsplit

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"


class FrozenCredentials(Protocol):
    """botocore's ``ReadOnlyCredentials``: one consistent snapshot of a key pair and its token."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


class CredentialSource(Protocol):
    """botocore's ``Credentials`` or ``RefreshableCredentials`` (the latter refreshes itself when near expiry)."""

    def get_frozen_credentials(self) -> FrozenCredentials: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One request's URL as sent (``path`` percent-encoded) and its SigV4 canonical URI."""

    url: str
    path: str
    canonical_path: str


class Signer(Protocol):
    def sign(self, method: str, target: Target, body: bytes) -> dict[str, str]:
        """The headers that authenticate this request (``Host`` included)."""
        ...


def host_header(endpoint_url: str) -> str:
    """The ``Host`` value botocore signs: lower-case, without a default port or user info."""
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def canonical_uri(path: str) -> str:
    """SigV4's canonical URI of a path as sent: dot segments and empty segments removed, then encoded again."""
    return quote(normalize_url_path(path), safe="/~")


@lru_cache(maxsize=8)
def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over date, region, service and ``aws4_request``; the same all day for a key pair."""
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _amz_date(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


class CachedKeySigner:
    """Signs with a signing key derived once a day per key pair; credentials are read (frozen) per request.

    Refreshed credentials (a new access key and secret) give a new cache entry, so the key is derived again.
    """

    def __init__(
        self,
        credentials: CredentialSource,
        region: str,
        host: str,
        service: str = SERVICE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._host = host
        self._clock = clock

    def sign(self, method: str, target: Target, body: bytes) -> dict[str, str]:
        frozen = self._credentials.get_frozen_credentials()
        amz_date = _amz_date(self._clock())
        date = amz_date[:8]
        headers = {"Host": self._host, "X-Amz-Date": amz_date}
        canonical_headers = f"host:{self._host}\nx-amz-date:{amz_date}\n"
        signed_headers = "host;x-amz-date"
        if frozen.token:
            headers["X-Amz-Security-Token"] = frozen.token
            canonical_headers += f"x-amz-security-token:{' '.join(frozen.token.split())}\n"
            signed_headers += ";x-amz-security-token"
        payload_hash = hashlib.sha256(body).hexdigest()
        request = f"{method}\n{target.canonical_path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        key = signing_key(frozen.secret_key, date, self._region, self._service)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={frozen.access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        )
        return headers
