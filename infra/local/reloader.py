"""``iii-stream local --reload``: watch the ``--app`` file, and the Python files beside it, for changes.

Polling (every ``POLL_SECONDS``) needs no library and works on every filesystem, editors' atomic saves included
(a file replaced by a rename has a new inode, so it counts as changed). A change is reported once the files have
been still for one poll, so an editor's save in several writes reloads once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("iii_stream.local")
POLL_SECONDS = 0.3

Stamp = tuple[tuple[str, int, int, int], ...]


def stamp(app: Path) -> Stamp:
    """What identifies the app's files as they are now: each one's name, inode, size and modification time."""
    found = []
    for path in sorted({app, *app.parent.glob("*.py")}):
        try:
            info = os.stat(path)
        except OSError:  # removed meanwhile (a save by rename, half way)
            continue
        found.append((path.name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(found)


class AppWatcher:
    """Calls ``on_change()`` in its own thread whenever the app's files change (and then hold still)."""

    def __init__(self, app: Path, on_change: Callable[[], object]) -> None:
        self.app = app.resolve()
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="app-watcher", daemon=True)

    def start(self) -> None:
        self._last = stamp(self.app)
        self._thread.start()
        log.info("watching %s and the .py files beside it (--reload)", self.app)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            now = stamp(self.app)
            if now == self._last:
                continue
            while not self._stop.wait(POLL_SECONDS):  # still being written: wait until it holds still
                settled = stamp(self.app)
                if settled == now:
                    break
                now = settled
            before, self._last = self._last, now
            if self._stop.is_set():
                return
            changed = sorted(name for name, *_ in set(now) ^ set(before))
            log.info("%s changed: reloading", ", ".join(dict.fromkeys(changed)) or self.app.name)
            try:
                self._on_change()
            except Exception:  # noqa: BLE001 - the watch goes on; the next save tries again
                log.exception("reload failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
