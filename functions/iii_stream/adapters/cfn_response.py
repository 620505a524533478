"""Send a custom resource's answer to CloudFormation: a PUT to the presigned ``ResponseURL``."""

from __future__ import annotations

import time
import urllib.request
from typing import Any, Final

from iii_stream.core.registration import encode_response

_PUT_ATTEMPTS: Final = 3


def send(url: str, response: dict[str, Any]) -> None:
    """PUT the response JSON (no Content-Type: it is not part of the signature); an unanswered request keeps
    the stack waiting for an hour, so a failed PUT is tried again."""
    body = encode_response(response)
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})
    for attempt in range(1, _PUT_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - CloudFormation's https URL
                reply.read()
            return
        except OSError:
            if attempt == _PUT_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
