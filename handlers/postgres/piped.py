"""pg_restore reading an archive from a pipe, as it is written or downloaded: its table of contents
(`--list`, which stops reading once it has it: a custom-format archive starts with it) and its full
read (`-f /dev/null`). Neither needs the archive on disk."""
from __future__ import annotations

import os
import subprocess
import threading

from .binaries import pg_tool
from .client import Finished, libpq_env, start_tool, stop_tool


class PipedRestore:
    """pg_restore with `args`, fed the archive piece by piece (`feed`), its output kept."""

    def __init__(self, args: list[str]) -> None:
        self.proc = start_tool([pg_tool("pg_restore"), *args], libpq_env(""), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reading = True  # False once pg_restore stopped reading (it has all it needs, or failed)
        self._reader = threading.Thread(target=self._read, name="pg_restore-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def feed(self, data: bytes) -> None:
        if not self.reading or not data:
            return
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            self.reading = False

    def finish(self) -> Finished:
        """The end of the archive: pg_restore's exit status and output."""
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait()
        self._reader.join(30)
        return Finished(self.proc.returncode, self.lines)

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        stop_tool(self.proc)
        self._reader.join(30)


def toc_listing() -> PipedRestore:
    return PipedRestore(["--list"])


def full_read_piped() -> PipedRestore:
    """Every byte read and decompressed, the restore script thrown away (as `full_read`)."""
    return PipedRestore(["-f", os.devnull])
