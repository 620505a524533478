"""``iii-stream local`` end to end, over real sockets, with a Python WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import HERE, LocalService, start_local, stop_local

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(factory(), 30))


async def frames(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(count)]


async def newer_frames(ws: ClientConnection, after: int, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` frames stamped later than ``after`` and than each other, as the published item client
    applies them (a frame not newer than the last one applied is dropped)."""
    kept: list[dict[str, Any]] = []
    while len(kept) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["timestamp"] > (kept[-1]["timestamp"] if kept else after):
            kept.append(frame)
    return kept


async def silence(ws: ClientConnection, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


def join(group: str, item: str | None = None, stream: str = "rooms", sub: str | None = None) -> str:
    data = {"streamName": stream, "groupId": group, "subscriptionId": sub or str(uuid.uuid4())}
    if item is not None:
        data["id"] = item
    return json.dumps({"type": "join", "data": data})


def url(local: LocalService, token: str = "user-ana") -> str:
    return f"{local.ws_url}?token={token}"


def test_connect_with_a_token_and_without(local: LocalService) -> None:
    async def scenario() -> None:
        async with connect(url(local)) as ws:
            assert ws.response is not None and ws.response.status_code == 101
        async with connect(local.ws_url, subprotocols=["Authorization", "user-bo"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "Authorization"
        for bad in (local.ws_url, url(local, "intruder")):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(bad):
                    pass
            assert refused.value.response.status_code == 401

    run(scenario)


def test_join_sync_and_live_changes(local: LocalService) -> None:
    client = local.client()
    client.set("rooms", "lobby", "a", {"id": "a", "v": 1})

    async def scenario() -> None:
        async with connect(url(local)) as group_ws, connect(url(local, "user-bo")) as item_ws:
            await group_ws.send(join("lobby"))
            await item_ws.send(join("lobby", "a"))
            [group_sync] = await frames(group_ws, 1)
            [item_sync] = await frames(item_ws, 1)
            assert group_sync["event"] == {"type": "sync", "data": [{"id": "a", "v": 1}]} and group_sync["id"] is None
            assert item_sync["event"] == {"type": "sync", "data": {"id": "a", "v": 1}} and item_sync["id"] == "a"
            await asyncio.to_thread(client.update, "rooms", "lobby", "a", [{"type": "set", "path": "v", "value": 2}])
            await asyncio.to_thread(client.set, "rooms", "lobby", "b", {"id": "b"})
            await asyncio.to_thread(client.send, "rooms", "lobby", "typing", {"who": "ana"})
            await asyncio.to_thread(client.delete, "rooms", "lobby", "a")
            seen = await frames(group_ws, 4)
            assert [(f["event"]["type"], f["id"]) for f in seen] == [
                ("update", "a"),
                ("create", "b"),
                ("event", None),
                ("delete", "a"),
            ]
            assert seen[2]["event"] == {"type": "event", "event": {"type": "typing", "data": {"who": "ana"}}}
            # An item subscriber may also get the broadcast of a write its sync already held (a's create, when
            # broadcast ran after the join read the item): stamped no later than the sync, the published item
            # client drops it, and so does this reader (README, Realtime delivery).
            item_seen = await newer_frames(item_ws, item_sync["timestamp"], 2)
            assert [(f["event"]["type"], f["event"]["data"]) for f in item_seen] == [
                ("update", {"id": "a", "v": 2}),
                ("delete", {"id": "a", "v": 2}),
            ]
            stamps = [item_sync["timestamp"], *(f["timestamp"] for f in item_seen)]
            assert stamps == sorted(set(stamps))
            assert await silence(item_ws)

    run(scenario)


def test_unauthorized_join_keeps_the_socket_open(local: LocalService) -> None:
    async def scenario() -> None:
        async with connect(url(local)) as ws:
            await ws.send(join("private-1"))
            [refused] = await frames(ws, 1)
            assert refused["event"] == {"type": "unauthorized"} and refused["groupId"] == "private-1"
            await ws.send(join("public-1"))
            [sync] = await frames(ws, 1)
            assert sync["event"]["type"] == "sync"

    run(scenario)


def test_malformed_frames_are_ignored(local: LocalService) -> None:
    async def scenario() -> None:
        async with connect(url(local)) as ws:
            for body in ["nope", "{}", '{"type":"join"}', '{"type":"dance","data":{}}', "[1,2]", " "]:
                await ws.send(body)
            assert await silence(ws)
            await ws.send(join("still-here"))
            [sync] = await frames(ws, 1)
            assert sync["event"]["type"] == "sync"

    run(scenario)


def test_binary_frames_are_refused_as_api_gateway_does(local: LocalService) -> None:
    async def scenario() -> None:
        async with connect(url(local)) as ws:
            await ws.send(b"\x00\x01")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1003

    run(scenario)


def test_reconnect_and_re_join_gets_a_fresh_sync(local: LocalService) -> None:
    client = local.client()
    subscription = str(uuid.uuid4())

    async def scenario() -> None:
        async with connect(url(local)) as ws:
            await ws.send(join("again", sub=subscription))
            await frames(ws, 1)
        await asyncio.to_thread(client.set, "rooms", "again", "x", {"id": "x"})  # while away
        async with connect(url(local)) as ws:
            await ws.send(join("again", sub=subscription))  # the client re-joins with the same id
            [sync] = await frames(ws, 1)
            assert sync["event"]["data"] == [{"id": "x"}]

    run(scenario)


def test_triggers_and_lifecycle_handlers_run(local: LocalService) -> None:
    client = local.client()
    subscription = str(uuid.uuid4())

    async def scenario() -> None:
        async with connect(url(local, "user-cy")) as ws:
            await ws.send(join("triggers", sub=subscription))
            await frames(ws, 1)
            await asyncio.to_thread(client.set, "rooms", "triggers", "t1", {"id": "t1"})
            await frames(ws, 1)

    run(scenario)
    ours = {"where": lambda e: e.get("subscription_id") == subscription}
    assert local.wait_for_calls("join", **ours) == [
        {
            "subscription_id": subscription,
            "stream_name": "rooms",
            "group_id": "triggers",
            "id": None,
            "context": {"user": "user-cy"},
        }
    ]
    assert len(local.wait_for_calls("leave", **ours)) == 1
    changes = local.wait_for_calls("change", where=lambda e: e["groupId"] == "triggers")
    assert changes[0]["event"] == {"type": "create", "data": {"id": "t1"}}


def test_stopping_the_service_closes_sockets_and_fires_their_leaves(tmp_path: Path) -> None:
    service = start_local(tmp_path, "--app", str(HERE / "app.py"))
    subscription = str(uuid.uuid4())
    try:

        async def scenario() -> int | None:
            async with connect(url(service)) as ws:
                await ws.send(join("closing", sub=subscription))
                await frames(ws, 1)
                await asyncio.to_thread(stop_local, service)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code

        code = run(scenario)
        assert (code, service.process.returncode) == (1001, 0), service.log()
        assert "iii-stream local stopped" in service.log()
        leaves = [e for e in service.calls("leave") if e["subscription_id"] == subscription]
        assert len(leaves) == 1
    finally:
        stop_local(service)


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of another process (Linux ``tgkill``), as the kernel may pick any thread of a
    process for a signal sent to the process."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall_tgkill = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    if libc.syscall(syscall_tgkill, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="tgkill's number is known here only")
def test_a_stop_signal_taken_by_another_thread_still_stops_the_service(tmp_path: Path) -> None:
    # GIVEN a running service with its many threads (gateway, endpoints, pumps...)
    service = start_local(tmp_path)
    try:
        pid = service.process.pid
        others = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
        assert others, "the service runs threads besides its main one"
        # WHEN SIGTERM is delivered to one of those threads, not to the main one (the case that once hung a stop:
        # the main thread waited on a lock no signal woke)
        _tgkill(pid, others[-1], signal.SIGTERM)
        # THEN the service stops cleanly, soon
        code = service.process.wait(timeout=30)
    finally:
        stop_local(service)
    assert code == 0, service.log()
    assert "iii-stream local stopped." in service.log()


def _children(pid: int) -> list[str]:
    """The command lines of a process's children: every process whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # the field after the state: the parent's pid
                found.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_the_tables_and_each_function_run_in_processes_of_their_own(tmp_path: Path) -> None:
    # GIVEN a running service
    service = start_local(tmp_path)
    try:
        # THEN the embedded DynamoDB is a process of its own from the start
        assert any("iii_stream.infra.local.dynamodb_process" in line for line in _children(service.process.pid))
        # AND a function's first invocation starts its worker, which stays for the next ones
        service.client().set("s", "g", "i", {"n": 1})
        workers = [line for line in _children(service.process.pid) if "iii_stream.infra.local.worker" in line]
        assert any("stream_functions.handler" in line for line in workers), workers
        service.client().set("s", "g", "i", {"n": 2})
        again = [line for line in _children(service.process.pid) if "stream_functions.handler" in line]
        assert len(again) == 1, again
    finally:
        assert stop_local(service) == 0, service.log()
