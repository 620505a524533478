"""``iii-stream local``'s data kept across restarts: snapshots of the embedded DynamoDB's tables on disk.

The data directory (``.iii-stream/`` in the working directory by default) holds ``snapshot.json``, ``lock`` (held
with ``flock`` while a service uses the directory, so two services never write over each other; the kernel lets
go of it when the process dies, even on ``kill -9``) and a ``.gitignore`` (written with the directory).

A snapshot is written after a change every ``period`` seconds, and once more on a clean stop (Ctrl-C, SIGTERM),
atomically: a temporary file in the same directory, flushed to disk, then renamed over the last one (a crash leaves
the previous snapshot whole). It holds, at one point in time (see ``embedded_dynamodb.export_tables``):

- ``format`` and ``version``: what reads it checks them first;
- ``tables``: for each table of the template (``ItemsTable``, ``ConnectionsTable``, ``TriggersTable``) its name and
  its items in DynamoDB JSON (``{"pk": {"S": "..."}, ...}``), as a Scan would give them;
- ``declared``: the function and trigger ids the ``--app`` registered, so that the next start removes the ones its
  app no longer declares (as a stack update would) and keeps those registered otherwise (``iii-stream triggers``).

On start the snapshot is read before anything is served. Items and triggers come back as they were (but for rows past
their TTL attribute, which DynamoDB would have deleted by then and the readers skip anyway); the Connections table's
rows do not: they are the previous run's sockets and subscriptions, and every socket closed with that process
(a clean stop has already run their ``$disconnect``; after a crash their leaves never run). The streams are not kept:
restored items are put without a stream record (nothing is broadcast or dispatched for them; a subscriber's sync
reads them), and only changes made after the restart are streamed.

A snapshot that cannot be read, or is not one this version reads, stops the start with :class:`SnapshotError`
naming the file; the file is left as it was (never discarded, never written over).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from iii_stream.infra import embedded_dynamodb
from iii_stream.infra.template import ttl_attribute

log = logging.getLogger("iii_stream.local.snapshots")

FORMAT: Final = "iii-stream local snapshot"
VERSION: Final = 1
DEFAULT_DIRECTORY: Final = ".iii-stream"
SNAPSHOT_FILE: Final = "snapshot.json"
LOCK_FILE: Final = "lock"
# A service that has just died may still hold the lock for a moment: its DynamoDB process writes a last snapshot
# first. A start waits this long for the lock before it says the directory is in use.
LOCK_WAIT_SECONDS: Final = 3.0
DEFAULT_PERIOD_SECONDS: Final = 30.0
# The previous run's sockets and subscriptions: all closed once it stopped, so not restored.
NOT_RESTORED: Final = ("ConnectionsTable",)


class SnapshotError(Exception):
    """The data directory or its snapshot cannot be used; the message says which file and what to do."""


@dataclass(frozen=True)
class Declared:
    """The function and trigger ids an ``--app`` registered."""

    functions: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()


@dataclass
class Snapshot:
    """A snapshot as read: each table's items by logical name (``ItemsTable``...), and what the app declared."""

    tables: dict[str, list[dict[str, Any]]]
    declared: Declared = field(default_factory=Declared)
    written_at: str = ""


def encode(tables: Mapping[str, tuple[str, list[dict[str, Any]]]], declared: Declared) -> bytes:
    """A snapshot's file content: ``tables`` maps a logical name to the table's name and its items."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "tables": {logical: {"name": name, "items": items} for logical, (name, items) in tables.items()},
        "declared": {"functions": list(declared.functions), "triggers": list(declared.triggers)},
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes, tables: Mapping[str, str]) -> Snapshot:
    """Read a snapshot's content, checked against ``tables`` (logical name -> table name); raise ValueError."""
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError("it is not JSON this reads (nested too deep)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f'it is not an iii-stream local snapshot (no "format": "{FORMAT}")')
    if document.get("version") != VERSION:
        raise ValueError(
            f"it is format version {document.get('version')!r}, and this iii-stream reads version {VERSION} only"
        )
    written_at = document.get("written_at")
    return Snapshot(
        _tables(document.get("tables"), tables),
        _declared(document.get("declared", {})),
        written_at if isinstance(written_at, str) else "",
    )


def _tables(found: Any, tables: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(found, dict) or set(found) != set(tables):
        names = sorted(found) if isinstance(found, dict) else found
        raise ValueError(f"it holds the tables {names!r}, not {sorted(tables)!r}")
    read: dict[str, list[dict[str, Any]]] = {}
    for logical, name in tables.items():
        table = found[logical]
        if not isinstance(table, dict) or table.get("name") != name:
            held = table.get("name") if isinstance(table, dict) else table
            raise ValueError(f"its {logical} is the table {held!r}, not {name!r}")
        items = table.get("items")
        if not isinstance(items, list):
            raise ValueError(f"its {logical} has no list of items")
        for index, item in enumerate(items):
            if not _is_dynamodb_item(item):
                raise ValueError(f"item {index} of its {logical} is not an item in DynamoDB JSON: {_short(item)}")
        read[logical] = items
    return read


def _declared(declared: Any) -> Declared:
    ids = [declared.get("functions", []), declared.get("triggers", [])] if isinstance(declared, dict) else None
    if ids is None or not all(isinstance(each, list) and all(isinstance(i, str) for i in each) for each in ids):
        raise ValueError('its "declared" is not two lists of ids')
    return Declared(tuple(ids[0]), tuple(ids[1]))


def _is_dynamodb_item(item: Any) -> bool:
    """A non-empty object of attributes, each ``{"TYPE": value}`` (moto checks the types and values)."""
    if not isinstance(item, dict) or not item:
        return False
    return all(isinstance(value, dict) and len(value) == 1 for value in item.values())


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temporary file beside it, on disk, then renamed over it."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself, on disk
    finally:
        os.close(directory)


def _lock(fd: int, wait_seconds: float) -> bool:
    """Take the exclusive lock on ``fd``, waiting up to ``wait_seconds`` for its holder to let go; whether it did."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


@dataclass
class Restored:
    """What a start loaded: rows put back per table name; the Connections table's rows and the expired ones left out."""

    rows: dict[str, int]
    dropped_connections: int
    expired: int = 0

    def summary(self) -> str:
        counts = ", ".join(f"{table} {count}" for table, count in self.rows.items())
        dropped = f"{self.dropped_connections} connection rows of the last run dropped"
        expired = f", {self.expired} rows past their TTL dropped" if self.expired else ""
        return f"{sum(self.rows.values())} rows ({counts}); {dropped}{expired}"


def _alive(items: list[dict[str, Any]], ttl: str | None, now: float) -> list[dict[str, Any]]:
    """The items DynamoDB's TTL would not have deleted yet (moto never deletes them; the readers skip them)."""
    if ttl is None:
        return items
    alive = []
    for item in items:
        try:
            expired = float(item[ttl]["N"]) <= now
        except (KeyError, TypeError, ValueError):  # no TTL, or not a number: DynamoDB's TTL leaves it
            expired = False
        if not expired:
            alive.append(item)
    return alive


class Snapshots:
    """One service's data directory: its lock, its snapshot file, and the saves (see the module).

    ``open()`` (lock, read) before anything starts; ``restore(arns)`` once the tables exist; ``start()`` the periodic
    saves; ``close()`` on a clean stop (the last save, then the lock let go)."""

    def __init__(
        self, directory: Path | str, tables: Mapping[str, str], period_seconds: float, owner_pid: int | None = None
    ) -> None:
        self.directory = Path(directory).absolute()
        self.owner_pid = owner_pid or os.getpid()  # written in the lock file: the service that keeps the data
        self.path = self.directory / SNAPSHOT_FILE
        self.tables = dict(tables)  # logical name -> table name
        self.period_seconds = period_seconds
        self.declared = Declared()  # set by the service once the app has registered
        self.loaded: Snapshot | None = None
        self.restored: Restored | None = None
        self._arns: dict[str, str] = {}
        self._saved_writes: int | None = None  # the write count the file is current at; None: not restored yet
        self._lock_file: Any = None
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- start -----------------------------------------------------------------------------------------------------
    def open(self) -> Snapshot | None:
        """Take the directory (created if need be) and read its snapshot, if any; raise :class:`SnapshotError`."""
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(parents=True)
                (self.directory / ".gitignore").write_text(
                    "# iii-stream local's data (snapshots of its tables): not for version control\n*\n",
                    encoding="utf-8",
                )
            self._lock_file = (self.directory / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as exc:
            raise SnapshotError(
                f"iii-stream local: cannot keep data in {self.directory}: {exc.strerror or exc}. "
                "Start it where it can write (it keeps its data in .iii-stream/ of the working directory), "
                "or with --in-memory (nothing kept)."
            ) from None
        if not _lock(self._lock_file.fileno(), LOCK_WAIT_SECONDS):
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            self._lock_file = None
            raise SnapshotError(
                f"iii-stream local: another iii-stream local (pid {holder}) keeps its data in {self.directory}. "
                "Stop it, or start this one from another directory, or with --in-memory (nothing read or written)."
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{self.owner_pid}\n")
        self._lock_file.flush()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse(f"it cannot be read ({exc.strerror or exc})")
        try:
            self.loaded = decode(data, self.tables)
        except ValueError as exc:
            self._refuse(str(exc))
        return self.loaded

    def _refuse(self, reason: str) -> NoReturn:
        self.release()
        moved = shlex.quote(str(self.path) + ".broken")
        raise SnapshotError(
            f"iii-stream local: cannot load the snapshot {self.path}: {reason}.\n"
            "It is left as it was. To start clean, move it away "
            f"(mv {shlex.quote(str(self.path))} {moved}) and start again, "
            "or run with --in-memory (nothing read or written)."
        )

    def restore(self, arns: Mapping[str, str]) -> Restored:
        """Put the loaded items back (``arns``: logical name -> table ARN), the Connections table's excepted."""
        self._arns = dict(arns)
        rows: dict[str, int] = {}
        dropped = expired = 0
        now = time.time()
        for logical, items in (self.loaded.tables if self.loaded else {}).items():
            if logical in NOT_RESTORED:
                dropped += len(items)
                continue
            alive = _alive(items, ttl_attribute(logical), now)
            expired += len(items) - len(alive)
            try:
                rows[self.tables[logical]] = embedded_dynamodb.import_items(self._arns[logical], alive)
            except Exception as exc:  # noqa: BLE001 - moto's validation errors: one clear message, no traceback
                reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                self._refuse(f"an item of its {logical} is refused by DynamoDB ({reason})")
        self.restored = Restored(rows, dropped, expired)
        self._saved_writes = embedded_dynamodb.writes()  # what was loaded needs no save
        return self.restored

    def start(self) -> None:
        """Save every ``period_seconds``, when something changed."""
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_seconds):
            try:
                self.save()
            except Exception as exc:  # noqa: BLE001 - tried again at the next period; the service goes on
                log.error(
                    "snapshot not saved to %s: %s: %s (tried again in %g s)",
                    self.path,
                    type(exc).__name__,
                    exc,
                    self.period_seconds,
                )

    # --- save ------------------------------------------------------------------------------------------------------
    def save(self) -> bool:
        """Write a snapshot if anything was written since the last one; whether it did."""
        with self._save_lock:
            if self._saved_writes is None or embedded_dynamodb.writes() == self._saved_writes:
                return False
            began = time.monotonic()
            at, exported = embedded_dynamodb.export_tables(self._arns[logical] for logical in self.tables)
            tables = {logical: (name, exported[self._arns[logical]]) for logical, name in self.tables.items()}
            write_atomically(self.path, encode(tables, self.declared))
            self._saved_writes = at
            log.info(
                "snapshot saved: %d rows to %s (%.0f ms)",
                sum(len(items) for _, items in tables.values()),
                self.path,
                (time.monotonic() - began) * 1000,
            )
            return True

    def close(self) -> None:
        """A clean stop: the periodic saves end, the last one is written, the directory is let go.

        Raises :class:`SnapshotError` when the last save fails (the writes since the one before are lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        try:
            self.save()
        except Exception as exc:  # noqa: BLE001 - said once, clearly, at the end
            raise SnapshotError(
                f"iii-stream local: the last snapshot could not be saved to {self.path} "
                f"({type(exc).__name__}: {exc}); the writes since the one before are lost."
            ) from None
        finally:
            self.release()

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # lets go of the flock
            self._lock_file = None

    # --- the banner ------------------------------------------------------------------------------------------------
    def describe(self) -> list[str]:
        if self.loaded is not None and self.restored is not None:
            loaded = f"{self.restored.summary()}, from the snapshot of {self.loaded.written_at or 'an unknown time'}"
        else:
            loaded = "nothing (no snapshot yet: the first is written after the first change)"
        seconds = f"{self.period_seconds:g}"
        return [
            f"Data kept in               {self.path}",
            f"Loaded                     {loaded}",
            f"Snapshots                  every {seconds} s after a change, and on a clean stop (Ctrl-C, SIGTERM): "
            f"a crash loses up to the last {seconds} s of writes; --in-memory keeps nothing",
        ]
