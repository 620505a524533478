"""``FanoutFunction`` as Lambda runs it, on one machine: every chunk in a separate process.

A warm pool of processes each imports the real ``fanout.handler``; the local Lambda Invoke endpoint
(``infra/local/lambda_endpoint.py``) hands each invocation to the pool, so the broadcast reaches its chunks
with its own boto3 ``lambda`` client, as on AWS. On Lambda each chunk has an execution environment of its
own; here the processes share this machine's cores, which the benchmark reports.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

FUNCTION_NAME: Final = "bench-fanout"
EMPTY_CHUNK: Final[dict[str, Any]] = {"frames": {}, "targets": {}}
_ROOT = Path(__file__).resolve().parent.parent

_handler: Any = None


def _start(env: dict[str, str]) -> None:
    global _handler
    os.environ.update(env)
    for path in (str(_ROOT / "functions"), str(_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from iii_stream.infra.handlers import load_handler

    _handler = load_handler("fanout.handler")


def _invoke(event: Any) -> Any:
    from iii_stream.infra.local.context import LocalLambdaContext

    return _handler(event, LocalLambdaContext(function_name=FUNCTION_NAME))


@contextmanager
def fanout_tier(env: dict[str, str], processes: int = 4) -> Iterator[str]:
    """Start the pool (warm) and a Lambda endpoint serving FUNCTION_NAME from it; yields the endpoint's URL."""
    from iii_stream.infra.local.lambda_endpoint import LambdaEndpoint

    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(env,)
    )
    endpoint = LambdaEndpoint({FUNCTION_NAME: lambda event, context: pool.submit(_invoke, event).result()}, port=0)
    try:
        list(pool.map(_invoke, [EMPTY_CHUNK] * processes * 2))  # every process started and its handler imported
        endpoint.start()
        yield endpoint.endpoint_url
    finally:
        endpoint.stop()
        pool.shutdown(wait=True, cancel_futures=True)
