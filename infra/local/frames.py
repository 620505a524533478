"""Length-prefixed JSON messages over a pipe: how the local Lambda runtime and its workers talk.

A frame is 4 bytes of big-endian length, then that many bytes of UTF-8 JSON. Reading waits for the whole frame;
``None`` means the other end closed the pipe (a worker that exited, a runtime that let it go).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

_HEADER = struct.Struct(">I")


class FrameTimeout(Exception):
    """The whole frame did not arrive in time."""


def encode(message: Any) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode("ascii")  # escaped: lone surrogates pass too
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, message: Any) -> None:
    data = memoryview(encode(message))
    while data:
        data = data[os.write(fd, data) :]


def read_frame(fd: int, timeout: float | None = None) -> Any:
    """The next message, or None when the pipe is closed; FrameTimeout past ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    header = _read_exactly(fd, _HEADER.size, deadline)
    if header is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(header)[0], deadline)
    if body is None:
        return None
    return json.loads(body)


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise FrameTimeout
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
