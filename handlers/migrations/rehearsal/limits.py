"""The rehearsal's own limits: a total time and how much its folder may grow once the copy is made.

The requester's SQL runs there, so it must not hold the machine: a statement_timeout per statement
is not a total (a thousand statements of 900 s each), and nothing stopped UP from filling the
disk. A thread watches both and sets `stop`, the event every step of the rehearsal watches instead
of the caller's cancel (which it passes on): the running statement or pg_restore is cancelled, and
`reason` says which limit was passed. Temporary files of one statement are capped by the server's
temp_file_limit, set for the application's role where it cannot change it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..settings import RehearsalSettings

MIB = 1024 * 1024
AUTOMATIC_GROWTH_MIN_MB = 1024  # disk_growth_mb = 0: twice the restored copy, at least this


def folder_size(path: Path | None) -> int:
    """Bytes in the files under `path` (0 when it is gone); files vanishing meanwhile are skipped."""
    total = 0
    for root, _, files in os.walk(path) if path is not None else ():
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class Limits:
    def __init__(self, settings: RehearsalSettings, folder: Callable[[], Path | None],
                 cancel: threading.Event | None, every_s: float = 0.5) -> None:
        self.settings, self.folder, self.cancel, self.every_s = settings, folder, cancel, every_s
        self.stop = threading.Event()
        self.reason: str | None = None
        self.deadline = time.monotonic() + settings.total_timeout_s
        self.base: int | None = None  # the folder's size once the copy is made
        self.allowed = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="rehearsal-limits")

    def start(self) -> "Limits":
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def copy_made(self) -> None:
        """From now on the folder may grow by disk_growth_mb (automatic: twice its size, >= 1 GiB)."""
        self.base = folder_size(self.folder())
        growth = self.settings.disk_growth_mb or max(AUTOMATIC_GROWTH_MIN_MB, 2 * self.base // MIB)
        self.allowed = int(growth * MIB)

    def check(self) -> str | None:
        """Measure now; the limit passed (also set as `reason`, with `stop` set), or None."""
        if self.reason is None:
            if time.monotonic() > self.deadline:
                self._passed(f"the time limit (the rehearsal ran past migrate.rehearsal.total_timeout_s = "
                             f"{self.settings.total_timeout_s:g} s)")
            elif self.base is not None:
                grown = folder_size(self.folder()) - self.base
                if grown > self.allowed:
                    self._passed(f"the disk limit (the copy's folder grew by {grown // MIB:,} MB, more than the "
                                 f"{self.allowed // MIB:,} MB migrate.rehearsal.disk_growth_mb allows)")
        return self.reason

    def _passed(self, reason: str) -> None:
        self.reason = reason
        self.stop.set()

    def _watch(self) -> None:
        while not self._done.wait(self.every_s):
            if self.cancel is not None and self.cancel.is_set():
                self.stop.set()
            if self.check():
                return
