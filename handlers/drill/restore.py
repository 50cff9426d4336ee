"""Step 2: pg_restore into the drill instance, every error counted and kept."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..pginstance import pg_tool
from ..report import Progress, ProgressFn
from ..pgtools import libpq_env, run_streaming

PARALLEL_FORMATS = ("CUSTOM", "DIRECTORY", "custom", "directory")
_IGNORED = re.compile(r"errors ignored on restore:\s*(\d+)")
_DATA = re.compile(r'processing data for table "([^"]+)"')


@dataclass
class RestoreOutcome:
    returncode: int
    error_count: int
    errors: list[str] = field(default_factory=list)  # the error lines with the command each came from
    jobs: int = 1

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error_count == 0


def restore_command(archive: Path, archive_format: str, jobs: int) -> tuple[list[str], int]:
    # --no-owner --no-acl: the roles of production do not exist on the drill instance (nor on managed
    # scratch servers); ownership is not what the drill proves. The connection is in the environment
    # (libpq_env); an empty --dbname still makes pg_restore connect instead of printing SQL.
    jobs = jobs if archive_format.upper() in ("CUSTOM", "DIRECTORY") else 1
    cmd = [pg_tool("pg_restore"), "--no-owner", "--no-acl", "--verbose", "--dbname="]
    if jobs > 1:
        cmd += ["--jobs", str(jobs)]
    return cmd + [str(archive)], jobs


def run_restore(archive: Path, dsn: str, archive_format: str, jobs: int, table_data_entries: int,
                progress: ProgressFn, cancel: threading.Event | None = None) -> RestoreOutcome:
    env = libpq_env(dsn)
    cmd, used_jobs = restore_command(archive, archive_format, jobs)
    errors: list[str] = []
    loaded = [0]

    def on_line(line: str) -> None:
        if "pg_restore: error:" in line or line.startswith("pg_restore: fatal"):
            errors.append(line.split("pg_restore: ", 1)[1])
        elif line.startswith("Command was:") and errors:
            errors[-1] += f" ({line.strip()[:300]})"
        match = _DATA.search(line)
        if match:
            loaded[0] += 1
            total = max(table_data_entries, loaded[0])
            progress(Progress("restore", round(loaded[0] / total, 3) if total else None,
                              f"loading {match.group(1)} ({loaded[0]}/{total} tables)"))

    done = run_streaming(cmd, env=env, on_line=on_line, cancel=cancel)
    count = len(errors)
    for line in done.lines:
        match = _IGNORED.search(line)
        if match:
            count = max(count, int(match.group(1)))
    if done.returncode != 0 and count == 0:
        count = 1
        errors.append(f"pg_restore exited with {done.returncode}: " + (done.lines[-1] if done.lines else ""))
    return RestoreOutcome(done.returncode, count, errors, used_jobs)
