"""What the data-plane benchmark calls: one scenario per measured operation, with its untimed set-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

Payload = dict[str, Any]
Call = tuple[str, Payload]

STREAM: Final = "bench"
DATA: Final = {"text": "hello, stream", "author": "bench", "n": 1, "tags": ["a", "b"]}
LIST_SIZE: Final = 100
LIST_SHARE: Final = 0.1
# stream::update rotates over a few items, so appends never grow one item towards the frame limit.
UPDATE_POOL: Final = 16
UPDATE_START: Final = {"count": 0, "status": "new", "tags": []}
UPDATE_OPS: Final = [
    {"type": "increment", "path": "count", "by": 1},
    {"type": "set", "path": "status", "value": "seen"},
    {"type": "append", "path": "tags", "value": "x"},
]


def _key(group: str, item: str) -> Payload:
    return {"stream_name": STREAM, "group_id": group, "item_id": item}


def _set(group: str, item: str, data: Any = DATA) -> Call:
    return "stream::set", {**_key(group, item), "data": data}


def _nothing(iterations: int) -> list[Call]:
    return []


@dataclass(frozen=True)
class Scenario:
    """``payload(i)`` is the i-th timed call's payload; ``setup(calls)`` the calls made before, untimed.

    ``share`` scales the run's iteration count for scenarios too slow on moto to run in full.
    """

    name: str
    function_id: str
    payload: Callable[[int], Payload]
    setup: Callable[[int], list[Call]] = field(default=_nothing)
    share: float = 1.0

    def calls(self, iterations: int) -> int:
        return max(1, round(iterations * self.share))


SCENARIOS: Final = (
    Scenario("set (new item)", "stream::set", lambda i: _set("set-new", f"item-{i}")[1]),
    Scenario(
        "set (overwrite)",
        "stream::set",
        lambda i: _set("set-over", "item", {**DATA, "n": i})[1],
        lambda _: [_set("set-over", "item")],
    ),
    Scenario("get (hit)", "stream::get", lambda _: _key("get", "item"), lambda _: [_set("get", "item")]),
    Scenario("get (miss)", "stream::get", lambda i: _key("get", f"missing-{i}")),
    Scenario(
        "update (3 ops)",
        "stream::update",
        lambda i: {**_key("update", f"item-{i % UPDATE_POOL}"), "ops": UPDATE_OPS},
        lambda _: [_set("update", f"item-{j}", UPDATE_START) for j in range(UPDATE_POOL)],
    ),
    Scenario(
        "delete",
        "stream::delete",
        lambda i: _key("delete", f"item-{i}"),
        lambda n: [_set("delete", f"item-{j}") for j in range(n)],
    ),
    Scenario(
        f"list ({LIST_SIZE} items)",
        "stream::list",
        lambda _: {"stream_name": STREAM, "group_id": "list"},
        lambda _: [_set("list", f"item-{j:03d}") for j in range(LIST_SIZE)],
        # moto spends ~0.1 s serialising a 100-item Query response (DynamoDB does not): a tenth of the calls.
        share=LIST_SHARE,
    ),
    Scenario(
        "send",
        "stream::send",
        lambda i: {"stream_name": STREAM, "group_id": "send", "type": "message", "data": DATA, "id": f"event-{i}"},
    ),
)

# Hard product targets: at most this many DynamoDB requests per call.
REQUEST_TARGETS: Final = {"stream::set": 1, "stream::get": 1}

# One call of every function before measuring, so first-use costs (client, models) stay out of the figures.
WARM_UP: Final = (
    _set("warm-up", "item"),
    ("stream::get", _key("warm-up", "item")),
    ("stream::update", {**_key("warm-up", "item"), "ops": [{"type": "set", "path": "seen", "value": True}]}),
    ("stream::list", {"stream_name": STREAM, "group_id": "warm-up"}),
    ("stream::delete", _key("warm-up", "item")),
    ("stream::send", {"stream_name": STREAM, "group_id": "warm-up", "type": "message", "data": DATA}),
)
