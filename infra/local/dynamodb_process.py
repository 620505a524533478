"""The embedded DynamoDB of ``iii-stream local`` in a process of its own: moto, its tables and their snapshots.

The service starts it (``DynamoDBProcess.start``) and talks to it over pipes: a control pipe each way (one JSON
message per line) and a notification pipe on which the child writes a byte after each write, which wakes the
stream pumps. The child, ``python -m iii_stream.infra.local.dynamodb_process``:

1. takes the data directory and reads its snapshot, unless in memory (a snapshot that cannot be used is reported,
   with the message ``SnapshotError`` gives, and the child exits);
2. starts moto (``EmbeddedDynamoDB``) on loopback, creates the tables from template.yaml, puts the snapshot back;
3. reports ``ready`` with its endpoint, the banner's lines on the data and what the last app declared;
4. then follows the parent's orders: ``declared`` (what this run's app registered, kept in the snapshot),
   ``snapshots`` (start the periodic snapshots), ``stop`` (the last snapshot, then exit, reporting how it went).
   A parent that goes away (its end of the control pipe closed) is a ``stop`` too.

It runs in a process group of its own, so a Ctrl-C in the terminal reaches the service alone, which stops the
gateway and the pumps first (their last writes need the tables) and this process last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from iii_stream.infra.local.snapshots import Declared, SnapshotError

log = logging.getLogger("iii_stream.local")
READY_SECONDS = 60.0  # a large snapshot on a busy machine
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class DynamoDBSettings:
    tables: Mapping[str, str]  # logical id -> table name
    data_dir: str | None = None  # None: in memory
    snapshot_seconds: float = 30.0
    port: int = 0


class DynamoDBProcess:
    """The parent's handle on the child (see the module docstring)."""

    def __init__(self, settings: DynamoDBSettings) -> None:
        self.settings = settings
        self.endpoint_url = ""
        self.data_lines: list[str] = []  # the banner's lines on the data (empty in memory)
        self.loaded_declared = Declared()  # what the last run's app declared (from its snapshot)
        self._listeners: list[Callable[[], None]] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._orders = -1
        self._reports = -1

    # --- start ------------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the child and wait until it serves; raise SnapshotError when its data cannot be used."""
        orders_r, self._orders = os.pipe()
        self._reports, reports_w = os.pipe()
        writes_r, writes_w = os.pipe()
        settings = {
            "tables": dict(self.settings.tables),
            "data_dir": self.settings.data_dir,
            "snapshot_seconds": self.settings.snapshot_seconds,
            "port": self.settings.port,
        }
        fds = (orders_r, reports_w, writes_w)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "iii_stream.infra.local.dynamodb_process", *map(str, fds), json.dumps(settings)],
                stdin=subprocess.DEVNULL,
                pass_fds=fds,
                process_group=0,
            )
        finally:
            for fd in fds:
                os.close(fd)
        self._answers = os.fdopen(self._reports, "rb")
        threading.Thread(target=self._notify, args=(writes_r,), name="dynamodb-writes", daemon=True).start()
        report = self._report(READY_SECONDS)
        if "error" in report:
            self._process.wait(timeout=10)
            raise SnapshotError(report["error"])
        self.endpoint_url = report["ready"]
        self.data_lines = report.get("data_lines") or []
        declared = report.get("declared") or {}
        self.loaded_declared = Declared(tuple(declared.get("functions", ())), tuple(declared.get("triggers", ())))
        return self.endpoint_url

    def _report(self, timeout: float) -> dict[str, Any]:
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self._answers.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            raise RuntimeError(f"the embedded DynamoDB did not answer within {timeout:g} s")
        if not result[0]:
            code = self._process.wait(timeout=10) if self._process is not None else None
            raise RuntimeError(f"the embedded DynamoDB exited (exit code {code}); its output above says why")
        report: dict[str, Any] = json.loads(result[0])
        return report

    def _notify(self, fd: int) -> None:
        """Wake the listeners once per batch of write notifications; ends when the child's end closes."""
        with os.fdopen(fd, "rb", buffering=0) as writes:
            while writes.read(4096):
                for listener in list(self._listeners):
                    listener()

    def on_write(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (in the notification thread) after writes to the tables; keep it quick."""
        self._listeners.append(listener)

    # --- orders -----------------------------------------------------------------------------------------------
    def _order(self, order: dict[str, Any]) -> None:
        os.write(self._orders, (json.dumps(order) + "\n").encode())

    def declare(self, declared: Declared) -> None:
        """What this run's app registered, kept with the next snapshots."""
        self._order({"declared": {"functions": list(declared.functions), "triggers": list(declared.triggers)}})

    def start_snapshots(self) -> None:
        self._order({"snapshots": True})

    def stop(self) -> None:
        """The last snapshot, then the child exits; raise SnapshotError when that snapshot could not be written."""
        process = self._process
        if process is None:
            return
        self._process = None
        try:
            if process.poll() is None:
                self._order({"stop": True})
                report = self._report(STOP_SECONDS)
                if "error" in report:
                    raise SnapshotError(report["error"])
        except (OSError, RuntimeError) as exc:
            log.error("the embedded DynamoDB did not stop cleanly: %s", exc)
        finally:
            os.close(self._orders)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._answers.close()


# --- the child ---------------------------------------------------------------------------------------------------
class _Child:
    """The child's side: moto, its tables, their snapshots."""

    def __init__(self, reports: int, writes: int, settings: dict[str, Any]) -> None:
        self.reports = reports
        self.writes = writes
        self.tables: dict[str, str] = settings["tables"]
        self.settings = settings
        self.snapshots: Any = None
        self.server: Any = None

    def report(self, message: dict[str, Any]) -> None:
        os.write(self.reports, (json.dumps(message) + "\n").encode())

    def open(self) -> str:
        """Take the data, start moto, make the tables, put the snapshot back; the endpoint. Raises SnapshotError."""
        import boto3
        from iii_stream.infra.embedded_dynamodb import EmbeddedDynamoDB
        from iii_stream.infra.local.snapshots import Snapshots
        from iii_stream.infra.template import create_tables

        if self.settings["data_dir"] is not None:
            directory, seconds = self.settings["data_dir"], self.settings["snapshot_seconds"]
            self.snapshots = Snapshots(directory, self.tables, seconds, owner_pid=os.getppid())  # the service's
            self.snapshots.open()
        self.server = EmbeddedDynamoDB(self.settings["port"])
        endpoint: str = self.server.start()
        client: Any = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        create_tables(client, self.tables)
        if self.snapshots is not None:
            arns = {
                logical: client.describe_table(TableName=name)["Table"]["TableArn"]
                for logical, name in self.tables.items()
            }
            restored = self.snapshots.restore(arns)
            if self.snapshots.loaded is not None:
                log.info("snapshot loaded from %s: %s", self.snapshots.path, restored.summary())
        return endpoint

    def notify(self) -> None:
        """A write: one byte to the parent (a full pipe wakes the pumps anyway; a gone parent needs nothing)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.writes, b"w")

    def ready(self, endpoint: str) -> None:
        loaded = self.snapshots.loaded if self.snapshots is not None else None
        declared = loaded.declared if loaded is not None else Declared()
        self.report(
            {
                "ready": endpoint,
                "data_lines": self.snapshots.describe() if self.snapshots is not None else [],
                "declared": {"functions": list(declared.functions), "triggers": list(declared.triggers)},
            }
        )

    def follow(self, orders: int) -> None:
        """The parent's orders, until ``stop`` or until it goes away."""
        with os.fdopen(orders, "rb") as incoming:
            for line in incoming:
                order = json.loads(line)
                if "stop" in order:
                    return
                if self.snapshots is None:
                    continue
                if "declared" in order:
                    declared = order["declared"]
                    self.snapshots.declared = Declared(tuple(declared["functions"]), tuple(declared["triggers"]))
                elif "snapshots" in order:
                    self.snapshots.start()

    def close(self) -> int:
        """The last snapshot, moto stopped; the outcome reported (if the parent still listens)."""
        outcome: dict[str, Any] = {"stopped": True}
        try:
            if self.snapshots is not None:
                self.snapshots.close()
        except SnapshotError as exc:
            outcome = {"error": str(exc)}
        self.server.stop()
        with contextlib.suppress(BrokenPipeError):
            self.report(outcome)
        return 1 if "error" in outcome else 0


def _serve(orders: int, reports: int, writes: int, settings: dict[str, Any]) -> int:
    from iii_stream.infra import embedded_dynamodb

    child = _Child(reports, writes, settings)
    try:
        endpoint = child.open()
    except SnapshotError as exc:
        if child.snapshots is not None:
            child.snapshots.release()
        child.report({"error": str(exc)})
        return 1
    os.set_blocking(writes, False)
    embedded_dynamodb.on_write(child.notify)
    child.ready(endpoint)
    child.follow(orders)
    return child.close()


def main() -> int:
    orders, reports, writes = (int(fd) for fd in sys.argv[1:4])
    settings = json.loads(sys.argv[4])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)-26s %(message)s", stream=sys.stderr, force=True)
    return _serve(orders, reports, writes, settings)


if __name__ == "__main__":
    sys.exit(main())
