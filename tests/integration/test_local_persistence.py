"""``iii-stream local`` keeps its tables across restarts (snapshots in ``.iii-stream/``): the real command as a
subprocess on free ports, its working directory a temporary one; and the snapshot pieces in this process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from iii_stream.client import RegistryClient, StreamClient
from iii_stream.infra import embedded_dynamodb
from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
from iii_stream.infra.local.service import TABLES
from iii_stream.infra.local.snapshots import Declared, SnapshotError, Snapshots, decode, encode
from iii_stream.infra.offline_env import offline_env
from iii_stream.infra.template import create_tables
from iii_stream.testing import LocalStack, Subscription

CLI = Path(sys.executable).parent / "iii-stream"
STARTUP_SECONDS = 60.0  # a busy 2-core machine
READY = "iii-stream local is running"
SNAPSHOT = Path(".iii-stream") / "snapshot.json"

RECORDING_APP = """
import json
from pathlib import Path

from iii_stream.app import App

app = App()
CHANGES = Path(__file__).with_name("changes.jsonl")


@app.function("test::record")
def record(event, context):
    with CHANGES.open("a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\\n")


app.trigger("stream", "test::record", {"stream_name": "watched"}, id="declared-watch")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env() -> dict[str, str]:
    env = offline_env(PYTHONUNBUFFERED="1")
    env.pop("ITEMS_TABLE", None)
    return env


class Local:
    """One ``iii-stream local`` in ``cwd`` on free ports; its stdout and stderr lines kept."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        self.ws_port, self.lambda_port = _free_port(), _free_port()
        command = [str(CLI), "local", "--port", str(self.ws_port), "--lambda-port", str(self.lambda_port)]
        command += ["--connections-port", "0", "--http-port", str(_free_port()), *extra]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="iii-stream-local-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout=timeout)

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    @property
    def lambda_url(self) -> str:
        return f"http://127.0.0.1:{self.lambda_port}"

    def client(self) -> StreamClient:
        result: StreamClient = StreamClient.via_lambda(endpoint_url=self.lambda_url)
        return result

    def registry(self) -> RegistryClient:
        result: RegistryClient = RegistryClient.via_lambda(endpoint_url=self.lambda_url)
        return result

    def subscribe(self, stream_name: str, group_id: str) -> Subscription:
        stack = LocalStack(self.client(), self.registry(), f"ws://127.0.0.1:{self.ws_port}/", "", self.lambda_url)
        return stack.subscribe(stream_name, group_id)

    def stop(self, signum: int = signal.SIGINT) -> int:
        """A clean stop (Ctrl-C by default); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:  # what it printed (a stop past 30 s prints every thread's stack)
            raise AssertionError("the service did not stop within 90 s:\n" + self.output()) from None
        self._reader.join(timeout=5)
        return code

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def running(cwd: Path, *extra: str) -> Iterator[Local]:
    local = Local(cwd, *extra)
    try:
        if not local.wait_for(READY, STARTUP_SECONDS):
            pytest.fail(f"iii-stream local did not start (exit code {local.process.poll()}):\n{local.output()}")
        yield local
    finally:
        local.end()


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def changes(cwd: Path) -> list[str]:
    """The item ids the recording app's trigger saw, in order."""
    path = cwd / "changes.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line)["id"] for line in lines]


def tree(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time (ns)."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --- the real command -------------------------------------------------------------------------------------------
def test_a_clean_restart_keeps_items_and_triggers_and_streams_only_new_changes(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(RECORDING_APP, encoding="utf-8")
    # GIVEN a local service with items written and a trigger registered by hand, stopped with Ctrl-C
    with running(tmp_path, "--app", "app.py") as first:
        assert first.wait_for(f"Data kept in               {tmp_path / SNAPSHOT}", 5), first.output()
        assert first.wait_for("a crash loses up to the last 30 s of writes", 5), first.output()
        assert "Loaded                     nothing (no snapshot yet" in first.output()
        client = first.client()
        client.set("watched", "g", "a", {"id": "a", "n": 1})
        client.set("watched", "g", "b", {"id": "b", "n": 2})
        client.update("watched", "g", "a", [{"type": "increment", "path": "n", "by": 10}])
        client.set("chat", "room", "m1", {"id": "m1", "text": "hi"})
        client.delete("chat", "room", "m1")
        client.set("chat", "room", "m2", {"id": "m2", "text": "kept"})
        first.registry().register_trigger("stream", "test::record", {"stream_name": "other"}, "by-hand")
        # (in any order: each runs asynchronously, in a worker of its own, as a Lambda Event invocation does)
        assert sorted(eventually(lambda: changes(tmp_path), lambda seen: len(seen) == 3)) == ["a", "a", "b"]
        with first.subscribe("watched", "g"):  # a socket open at the stop: its rows are not restored
            assert first.stop() == 0
        assert "iii-stream local stopped." in first.output()
    assert (tmp_path / SNAPSHOT).is_file()
    # WHEN it starts again in the same directory
    with running(tmp_path, "--app", "app.py") as second:
        # THEN the items and both triggers are there, as they were
        assert second.wait_for("Loaded    ", 5), second.output()
        # the items table: a, b, m2 and m1's tombstone (its TTL still to run); the registry, its dispatch marks too
        loaded = r"Loaded +\d+ rows \(iii-stream-items 4, iii-stream-triggers \d+\); 0 connection rows of the last run"
        assert re.search(loaded, second.output()), second.output()
        client = second.client()
        assert sorted(client.list("watched", "g"), key=lambda item: item["id"]) == [
            {"id": "a", "n": 11},
            {"id": "b", "n": 2},
        ]
        assert client.list("chat", "room") == [{"id": "m2", "text": "kept"}]
        assert client.get("chat", "room", "m1") is None
        triggers = {trigger["id"]: trigger for trigger in second.registry().list_triggers()}
        assert set(triggers) == {"declared-watch", "by-hand"}
        assert triggers["by-hand"]["config"] == {"stream_name": "other"}
        # AND a subscriber's sync reads the restored items, which are not streamed again
        with second.subscribe("watched", "g") as subscription:
            assert sorted(item["id"] for item in subscription.sync) == ["a", "b"]
            with pytest.raises(TimeoutError):
                subscription.next(timeout=2.0)
            assert sorted(changes(tmp_path)) == ["a", "a", "b"]  # no trigger ran for them either
            # AND a new change is streamed as ever: to the subscriber and to the trigger
            client.set("watched", "g", "c", {"id": "c"})
            assert subscription.next(timeout=30)["event"] == {"type": "create", "data": {"id": "c"}}
        seen = eventually(lambda: changes(tmp_path), lambda seen: len(seen) == 4)
        assert sorted(seen[:3]) == ["a", "a", "b"] and seen[3] == "c"  # c was written after the others ran
        assert second.stop(signal.SIGTERM) == 0  # SIGTERM is a clean stop too
    document = json.loads((tmp_path / SNAPSHOT).read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("iii-stream local snapshot", 1)
    assert {logical: table["name"] for logical, table in document["tables"].items()} == TABLES
    assert document["tables"]["ConnectionsTable"]["items"] == []  # every socket closed, its $disconnect run


def test_a_periodic_snapshot_survives_kill_9(tmp_path: Path) -> None:
    # GIVEN a local service that snapshots every second after a change, a socket subscribed, an item written
    with running(tmp_path, "--snapshot-seconds", "1") as first:
        assert first.wait_for("a crash loses up to the last 1 s of writes", 5), first.output()
        subscription = first.subscribe("s", "g")
        result = subprocess.run(
            [str(CLI), "call", "--endpoint-url", first.lambda_url, "stream::set"]
            + [json.dumps({"stream_name": "s", "group_id": "g", "item_id": "i", "data": {"id": "i", "v": "kept"}})],
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        # WHEN the period has passed and the process is killed (no clean stop: the socket's rows stay in the file)
        time.sleep(1.5)
        written = eventually(
            lambda: (tmp_path / SNAPSHOT).read_text(encoding="utf-8") if (tmp_path / SNAPSHOT).exists() else "",
            lambda text: "kept" in text,
        )
        assert "kept" in written, first.output()
        assert len(json.loads(written)["tables"]["ConnectionsTable"]["items"]) == 2  # the connection, its join
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(timeout=30) == -signal.SIGKILL
        subscription.close()
    # THEN a new start (the directory's lock went with the process) has the write, and not the dead socket's rows
    with running(tmp_path) as second:
        assert second.wait_for("2 connection rows of the last run dropped", 5), second.output()
        client = second.client()
        assert client.get("s", "g", "i") == {"id": "i", "v": "kept"}
        with second.subscribe("s", "g") as live:
            client.set("s", "g", "j", {"id": "j"})
            assert live.next(timeout=30)["event"] == {"type": "create", "data": {"id": "j"}}
        assert second.stop() == 0
    # AND the dead socket's rows were never back: the live one's went with its $disconnect, none is left
    assert json.loads((tmp_path / SNAPSHOT).read_text(encoding="utf-8"))["tables"]["ConnectionsTable"]["items"] == []


def test_the_dynamodb_process_writes_a_last_snapshot_when_the_service_alone_dies(tmp_path: Path) -> None:
    # GIVEN a service whose periodic snapshot is far off, and an item written
    with running(tmp_path, "--snapshot-seconds", "600") as first:
        first.client().set("s", "g", "i", {"id": "i", "v": "last"})
        assert not (tmp_path / SNAPSHOT).exists()
        # WHEN the service process alone is killed (its DynamoDB process, in a process group of its own, is not)
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(timeout=30) == -signal.SIGKILL
        # THEN the DynamoDB process sees it go, writes the last snapshot and lets the directory go
        written = eventually(
            lambda: (tmp_path / SNAPSHOT).read_text(encoding="utf-8") if (tmp_path / SNAPSHOT).exists() else "",
            lambda text: "last" in text,
        )
        assert "last" in written, first.output()
    with running(tmp_path) as second:  # (a start waits a moment for a lock its predecessor still holds)
        assert second.client().get("s", "g", "i") == {"id": "i", "v": "last"}
        assert second.stop() == 0


def test_in_memory_reads_nothing_and_writes_nothing(tmp_path: Path) -> None:
    # GIVEN a snapshot left by a run that kept its data
    with running(tmp_path) as keeping:
        keeping.client().set("s", "g", "old", {"id": "old"})
        assert keeping.stop() == 0
    before = tree(tmp_path)
    assert str(SNAPSHOT) in before
    # WHEN a run with --in-memory writes and stops
    with running(tmp_path, "--in-memory") as throwaway:
        assert throwaway.wait_for("Data kept in               memory only (--in-memory)", 5), throwaway.output()
        client = throwaway.client()
        # THEN it did not read the snapshot, and wrote nothing: the directory is as it was
        assert client.list("s", "g") == []
        client.set("s", "g", "new", {"id": "new"})
        assert throwaway.stop() == 0
    assert tree(tmp_path) == before


def _snapshot_with(items: list[dict[str, Any]]) -> bytes:
    """A snapshot of the service's tables, ``items`` in its items table."""
    tables = {logical: (name, items if logical == "ItemsTable" else []) for logical, name in TABLES.items()}
    return encode(tables, Declared())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"format": "iii-stream local snapshot", "version": 1, "tables": {', "it is not JSON"),
        (b"\xff\xfe not text", "it is not UTF-8 text"),
        (_snapshot_with([]).replace(b'"version":1', b'"version":99'), "it is format version 99"),
        (_snapshot_with([{"pk": {"S": "no sort key"}}]), "an item of its ItemsTable is refused by DynamoDB"),
    ],
    ids=["truncated", "not-text", "newer-version", "invalid-item"],
)
def test_a_corrupt_snapshot_stops_the_start_and_is_left_as_it_was(tmp_path: Path, content: bytes, reason: str) -> None:
    # GIVEN a snapshot that cannot be loaded
    path = tmp_path / SNAPSHOT
    path.parent.mkdir()
    path.write_bytes(content)
    before = tree(tmp_path)
    # WHEN the service starts
    ports = ["--port", str(_free_port()), "--lambda-port", str(_free_port()), "--http-port", str(_free_port())]
    result = subprocess.run(
        [str(CLI), "local", *ports], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    # THEN it stops with exit code 1 and says which file, why, and how to start clean; no traceback
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert READY not in result.stdout
    assert f"cannot load the snapshot {path}: {reason}" in result.stderr, result.stderr
    assert "--in-memory" in result.stderr and "move it away" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # AND the file is as it was (neither discarded nor written over)
    after = tree(tmp_path)
    assert after.pop(".iii-stream/lock", None) is not None  # the directory's lock, taken then let go
    assert after == before


def test_registrations_follow_the_app_across_restarts(tmp_path: Path) -> None:
    # GIVEN an app declaring two functions with a trigger each, and a trigger and a function registered by hand
    app = (
        "from iii_stream.app import App\napp = App()\n"
        "@app.function('one::fn')\ndef one(event, context): pass\n"
        "@app.function('two::fn')\ndef two(event, context): pass\n"
        "app.trigger('stream', 'one::fn', {'stream_name': 'a'}, id='one')\n"
        "app.trigger('stream', 'two::fn', {'stream_name': 'b'}, id='two')\n"
    )
    (tmp_path / "app.py").write_text(app, encoding="utf-8")
    with running(tmp_path, "--app", "app.py") as first:
        registry = first.registry()
        registry.register_function("hand::fn", "some-lambda")
        registry.register_trigger("stream", "two::fn", {"stream_name": "c"}, "by-hand")
        assert first.stop() == 0
    # WHEN the app no longer declares one::fn nor its trigger
    (tmp_path / "app.py").write_text(app.replace("one::fn", "three::fn").replace("id='one'", "id='three'"), "utf-8")
    with running(tmp_path, "--app", "app.py") as second:
        # THEN what the last app declared and this one does not is gone; what was registered by hand stays
        registry = second.registry()
        assert sorted(trigger["id"] for trigger in registry.list_triggers()) == ["by-hand", "three", "two"]
        assert sorted(function["function_id"] for function in registry.list_functions()) == [
            "hand::fn",
            "three::fn",
            "two::fn",
        ]
        assert second.stop() == 0


def test_with_a_dynamodb_endpoint_nothing_is_snapshotted(tmp_path: Path) -> None:
    store = EmbeddedDynamoDB()
    endpoint = store.start()
    try:
        with running(tmp_path, "--dynamodb-endpoint", endpoint) as local:
            assert local.wait_for("nothing is snapshotted (--dynamodb-endpoint)", 5), local.output()
            local.client().set("s", "g", "i", {"id": "i"})
            assert local.stop() == 0
    finally:
        store.stop()
    assert not (tmp_path / ".iii-stream").exists()


# --- the pieces, in this process ---------------------------------------------------------------------------------
def _dynamodb(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def _new_items_table(endpoint: str) -> tuple[str, str]:
    name = f"persist-{uuid.uuid4().hex[:10]}"
    client = _dynamodb(endpoint)
    create_tables(client, {"ItemsTable": name})
    table = client.describe_table(TableName=name)["Table"]
    return table["TableArn"], table["LatestStreamArn"]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}.items():
        monkeypatch.setenv(name, value)
    server = EmbeddedDynamoDB()
    yield server.start()
    server.stop()


def _records(endpoint: str, stream_arn: str) -> list[dict[str, Any]]:
    streams: Any = boto3.client(
        "dynamodbstreams",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(account_id_endpoint_mode="disabled"),
    )
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return records


def test_restored_items_make_no_stream_record_and_read_back_as_written(endpoint: str) -> None:
    # GIVEN a table with items of every kind of attribute, exported
    source, _ = _new_items_table(endpoint)
    client = _dynamodb(endpoint)
    name = source.rsplit("/", 1)[1]
    item = {
        "pk": {"S": "p"},
        "sk": {"S": "#1"},
        "stream_key": {"S": "#s"},
        "group_key": {"S": "#g"},
        "n": {"N": "12.5"},
        "b": {"B": b"\x00\x01"},
        "m": {"M": {"nested": {"B": b"\xff"}, "l": {"L": [{"N": "1"}, {"NULL": True}, {"BOOL": False}]}}},
        "ss": {"SS": ["x", "y"]},
    }
    client.put_item(TableName=name, Item=item)
    client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "#2"}, "t": {"S": "ü"}})
    at, exported = embedded_dynamodb.export_tables([source])
    assert at == embedded_dynamodb.writes()
    json.dumps(exported)  # as the snapshot file holds it
    # WHEN they are imported into a new table
    target, stream_arn = _new_items_table(endpoint)
    writes = embedded_dynamodb.writes()
    assert embedded_dynamodb.import_items(target, exported[source]) == 2
    # THEN they read back as written, through the table and its index, with no stream record nor write counted
    target_name = target.rsplit("/", 1)[1]
    assert client.get_item(TableName=target_name, Key={"pk": {"S": "p"}, "sk": {"S": "#1"}})["Item"] == item
    by_stream = client.query(
        TableName=target_name,
        IndexName="by_stream",
        KeyConditionExpression="stream_key = :s",
        ExpressionAttributeValues={":s": {"S": "#s"}},
    )
    assert by_stream["Count"] == 1
    assert _records(endpoint, stream_arn) == []
    assert embedded_dynamodb.writes() == writes
    # AND a write after them is streamed as ever
    client.put_item(TableName=target_name, Item={"pk": {"S": "p"}, "sk": {"S": "#3"}})
    assert [record["eventName"] for record in _records(endpoint, stream_arn)] == ["INSERT"]


def test_a_snapshot_reads_back_what_was_written_and_checks_its_tables() -> None:
    rows = [{"pk": {"S": "p"}, "sk": {"S": "#1"}, "data": {"S": "{}"}}]
    tables = {logical: (name, rows if logical == "TriggersTable" else []) for logical, name in TABLES.items()}
    data = encode(tables, Declared(("f",), ("t",)))
    snapshot = decode(data, TABLES)
    assert snapshot.tables == {logical: items for logical, (_, items) in tables.items()}
    assert snapshot.declared == Declared(("f",), ("t",))
    with pytest.raises(ValueError, match="is the table 'iii-stream-items', not 'renamed-items'"):
        decode(data, {**TABLES, "ItemsTable": "renamed-items"})
    with pytest.raises(ValueError, match="not an iii-stream local snapshot"):
        decode(b'{"tables": {}}', TABLES)
    with pytest.raises(ValueError, match="item 0 of its ItemsTable is not an item in DynamoDB JSON"):
        decode(_snapshot_with([{"pk": "not typed"}]), TABLES)


def test_one_data_directory_serves_one_service_at_a_time(tmp_path: Path) -> None:
    first = Snapshots(tmp_path / ".iii-stream", TABLES, 30)
    assert first.open() is None  # no snapshot yet
    assert (tmp_path / ".iii-stream" / ".gitignore").read_text(encoding="utf-8").endswith("*\n")
    second = Snapshots(tmp_path / ".iii-stream", TABLES, 30)
    with pytest.raises(SnapshotError, match=f"another iii-stream local \\(pid {os.getpid()}\\)"):
        second.open()
    first.release()
    assert second.open() is None
    second.release()


def test_a_snapshot_goes_round_without_the_connections_nor_the_rows_past_their_ttl(
    endpoint: str, tmp_path: Path
) -> None:
    # GIVEN the three tables, with rows in each, one of them past its TTL, snapshotted
    tables = {logical: f"{name}-{uuid.uuid4().hex[:8]}" for logical, name in TABLES.items()}
    client = _dynamodb(endpoint)
    create_tables(client, tables)
    arns = {logical: client.describe_table(TableName=name)["Table"]["TableArn"] for logical, name in tables.items()}
    now = int(time.time())
    rows = {
        "ItemsTable": [
            {"pk": {"S": "I1"}, "sk": {"S": "#live"}, "expires_at": {"N": str(now + 3600)}},
            {"pk": {"S": "I1"}, "sk": {"S": "#gone"}, "expires_at": {"N": str(now - 1)}},
            {"pk": {"S": "I1"}, "sk": {"S": "#kept"}},
        ],
        "ConnectionsTable": [{"pk": {"S": "Cc1"}, "sk": {"S": "C"}}],
        "TriggersTable": [{"pk": {"S": "T"}, "sk": {"S": "t1"}, "record": {"S": "{}"}}],
    }
    saving = Snapshots(tmp_path, tables, 30)
    assert saving.open() is None
    saving.restore(arns)  # no snapshot yet: nothing to restore, nothing to save
    assert not saving.save()
    for logical, items in rows.items():
        for item in items:
            client.put_item(TableName=tables[logical], Item=item)
    assert saving.save() and not saving.save()  # written once; nothing changed since
    saving.close()
    # WHEN it is loaded into new, empty tables
    for name in tables.values():
        client.delete_table(TableName=name)
    create_tables(client, tables)
    arns = {logical: client.describe_table(TableName=name)["Table"]["TableArn"] for logical, name in tables.items()}
    loading = Snapshots(tmp_path, tables, 30)
    assert loading.open() is not None
    restored = loading.restore(arns)
    # THEN the items and triggers are back, but the row past its TTL and the connections' rows
    assert restored.rows == {tables["ItemsTable"]: 2, tables["TriggersTable"]: 1}
    assert (restored.dropped_connections, restored.expired) == (1, 1)
    keys = sorted(item["sk"]["S"] for item in client.scan(TableName=tables["ItemsTable"])["Items"])
    assert keys == ["#kept", "#live"]
    assert client.scan(TableName=tables["ConnectionsTable"])["Items"] == []
    assert not loading.save()  # what was loaded needs no save
    loading.close()
