"""The one reading of pg_restore's output (an archive's table of contents, its errors) for verify,
restore, rehearsals and drills, and the one pg_restore command line."""
from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from handlers.report import Progress

from .binaries import pg_tool
from .client import Finished, last_line, libpq_env, run_streaming
from .errors import PgToolError


def toc_table_data(archive: Path) -> list[str]:
    """The TABLE DATA lines of an archive's table of contents (pg_restore --list)."""
    contents = list_archive(archive)
    if contents.errors:
        raise PgToolError(f"pg_restore cannot read the archive's table of contents: {contents.errors[-1][:400]}")
    return contents.table_data_lines


def missing_table_data(archive: Path, tables: list[dict]) -> list[str]:
    """Manifest tables that have no TABLE DATA entry in the archive."""
    return tables_without_data(toc_table_data(archive), tables)


def tables_without_data(lines: list[str], tables: list[dict]) -> list[str]:
    """Manifest tables that no TABLE DATA line of a table of contents names."""
    missing = []
    for t in tables:
        needle = f" TABLE DATA {t['schema']} {t['name']} "
        if not any(needle in line + " " for line in lines):
            missing.append(f"{t['schema']}.{t['name']}")
    return missing


def full_read(archive: Path, timeout: float | None = None) -> tuple[bool, str]:
    """Read and decompress every byte of the archive (pg_restore to /dev/null): (ok, reason).

    `pg_restore --list` only reads the table of contents, so it passes truncated and corrupted
    archives; writing the whole restore script to /dev/null makes pg_restore read all the data.
    """
    result = subprocess.run([pg_tool("pg_restore"), "-f", os.devnull, str(archive)], capture_output=True,
                            text=True, timeout=timeout, env=libpq_env(""))
    if result.returncode != 0:
        return False, last_line(result.stderr) or f"pg_restore exited with status {result.returncode}"
    return True, "every object and all table data read back"


# -- pg_restore: reading an archive's table of contents, and restoring it ----------------------

_TOC_ENTRY = re.compile(r"^\d+;\s+\d+\s+\d+\s+")
_TOC_HEADER = {
    "Format": "format",
    "Dumped from database version": "dumped_from",
    "Dumped by pg_dump version": "dumped_by",
    "Compression": "compression",
}
_ERRORS_IGNORED = re.compile(r"errors ignored on restore:\s*(\d+)")
_TABLE_DATA = re.compile(r'processing data for table "([^"]+)"')


@dataclass
class ArchiveContents:
    """What `pg_restore --list` says about an archive."""

    format: str = ""  # CUSTOM, DIRECTORY, TAR
    entry_lines: list[str] = field(default_factory=list)  # as --use-list takes them
    table_data_lines: list[str] = field(default_factory=list)  # one "processing data" line each when restored
    owners: list[str] = field(default_factory=list)  # the roles the archive's objects belong to
    dumped_from: str = ""  # server version
    dumped_by: str = ""  # pg_dump version
    compression: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return len(self.entry_lines)

    @property
    def table_data(self) -> int:
        return len(self.table_data_lines)


def _read_toc(archive: Path) -> Finished:
    """`pg_restore --list`: the archive's table of contents, read without a connection."""
    return run_streaming([pg_tool("pg_restore"), "--list", str(archive)], env=libpq_env(""))


def list_archive(archive: Path) -> ArchiveContents:
    """Read the table of contents (no connection); a truncated or foreign file shows up here first."""
    return read_listing(_read_toc(archive))


def read_listing(done: Finished) -> ArchiveContents:
    """What `pg_restore --list` printed, read."""
    contents = ArchiveContents()
    owners = set()
    for line in done.lines:
        if line.startswith(";"):
            key, _, value = line.lstrip("; ").partition(":")
            attr = _TOC_HEADER.get(key.strip())
            if attr:
                setattr(contents, attr, value.strip())
        elif _TOC_ENTRY.match(line):
            contents.entry_lines.append(line)
            if " TABLE DATA " in line:
                contents.table_data_lines.append(line)
            parts = line.split()
            # An entry without an owner (an extension, its comment) ends in the space before its empty owner.
            if len(parts) >= 6 and parts[-1] != "-" and not line.endswith(" "):
                owners.add(parts[-1])
        elif "pg_restore:" in line:
            contents.errors.append(line)
    contents.owners = sorted(owners)
    if done.returncode != 0 and not contents.errors:
        contents.errors.append(f"pg_restore --list exited with {done.returncode}")
    return contents


def major_version(text: str | int | None) -> int | None:
    """18 from "18.1", "18.1 (Debian ...)", "pg_dump (PostgreSQL) 18.1", 180001 or "9.6.24" (-> 9)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text // 10000 if text >= 100000 else text
    match = re.search(r"(\d+)(?:\.(\d+))?", str(text))
    if not match:
        return None
    return int(match.group(1))


@dataclass
class RestoreOutcome:
    returncode: int
    error_count: int
    errors: list[str] = field(default_factory=list)  # the error lines with the command each came from
    jobs: int = 1
    tables_loaded: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error_count == 0


def toc_entry(line: str) -> str:
    """What a table-of-contents line restores, without its ids: "SCHEMA - dbops postgres",
    "TABLE DATA public notes app", "EXTENSION - pgcrypto"."""
    return _TOC_ENTRY.sub("", line, count=1)


# What restore_command leaves out (--no-subscriptions, --no-security-labels), by table-of-contents type.
LEFT_OUT_ON_RESTORE = ("SUBSCRIPTION", "SECURITY LABEL")


def left_out_on_restore(contents: ArchiveContents) -> list[str]:
    """The archive's entries a restore skips, as "SUBSCRIPTION - notes_sync app"."""
    return [toc_entry(line) for line in contents.entry_lines if toc_entry(line).startswith(LEFT_OUT_ON_RESTORE)]


def write_use_list(entries: list[str], path: Path) -> Path:
    """A --use-list file restoring exactly `entries` (lines of the archive's table of contents)."""
    path.write_text("\n".join(entries) + "\n")
    return path


def schemaless_toc(archive: Path, exclude_schemas: tuple[str, ...], leave_out: tuple[str, ...] = ()) -> Path:
    """A table of contents for --use-list without the excluded schemas' own entries (--exclude-schema
    leaves out what is *in* a schema but still creates the schema, empty) and without the entries
    `leave_out` names (as `toc_entry` spells them, e.g. "COMMENT - EXTENSION citext")."""
    contents = list_archive(archive)
    if contents.errors:
        raise PgToolError(f"pg_restore --list failed: {contents.errors[-1][:400]}")
    unwanted = {("SCHEMA", "-", name) for name in exclude_schemas}
    kept = [line for line in contents.entry_lines if tuple(toc_entry(line).split()[:3]) not in unwanted
            and toc_entry(line).strip() not in leave_out]
    return write_use_list(kept, archive.parent / f".{archive.name}.toc")


def restore_command(archive: Path, archive_format: str, jobs: int, exclude_schemas: tuple[str, ...] = (),
                    use_list: Path | None = None, schema_only: bool = False,
                    major: int | None = None, leave_out: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """The pg_restore command line, and the number of jobs it uses (only custom and directory
    archives restore in parallel). `major`: the pg_restore of the server restored into
    (versions.restore_major); None: the default binaries'."""
    # --no-owner --no-acl: the source's roles need not exist where the archive is restored; the
    # objects belong to the connecting user. No security labels (their providers are the source
    # server's) and no subscriptions: a copy that subscribes competes with the original for its
    # publisher's slot. The connection is in the environment (libpq_env); an empty --dbname still
    # makes pg_restore connect instead of printing SQL.
    jobs = max(1, jobs) if archive_format.upper() in ("CUSTOM", "DIRECTORY") else 1
    cmd = [pg_tool("pg_restore", major), "--no-owner", "--no-acl", "--no-security-labels", "--no-subscriptions",
           "--verbose"]
    if (exclude_schemas or leave_out) and use_list is None:  # a caller's own list leaves them out itself
        use_list = schemaless_toc(archive, exclude_schemas, leave_out)
    if exclude_schemas:
        cmd += [f"--exclude-schema={schema}" for schema in exclude_schemas]
    if use_list is not None:
        cmd += [f"--use-list={use_list}"]
    if schema_only:
        cmd += ["--schema-only"]
    cmd += ["--dbname="]
    if jobs > 1:
        cmd += ["--jobs", str(jobs)]
    return cmd + [str(archive)], jobs


def run_pg_restore(archive: Path, dsn: str, archive_format: str, jobs: int, table_data_entries: int,
                   progress: Callable[[Progress], None], cancel: threading.Event | None = None,
                   exclude_schemas: tuple[str, ...] = (), use_list: Path | None = None,
                   schema_only: bool = False, major: int | None = None,
                   leave_out: tuple[str, ...] = ()) -> RestoreOutcome:
    """pg_restore `archive` into `dsn`, every error counted and kept with the command it came from;
    progress ("restore" phase) for each table loaded. Raises Cancelled on `cancel`. `major`: as in
    restore_command."""
    cmd, used_jobs = restore_command(archive, archive_format, jobs, exclude_schemas, use_list, schema_only, major,
                                     leave_out)
    errors: list[str] = []
    loaded = [0]

    def on_line(line: str) -> None:
        if "pg_restore: error:" in line or line.startswith("pg_restore: fatal"):
            errors.append(line.split("pg_restore: ", 1)[1])
        elif line.startswith("Command was:") and errors:
            errors[-1] += f" ({line.strip()[:300]})"
        match = _TABLE_DATA.search(line)
        if match:
            loaded[0] += 1
            total = max(table_data_entries, loaded[0])
            progress(Progress("restore", round(loaded[0] / total, 3) if total else None,
                              f"loading {match.group(1)} ({loaded[0]}/{total} tables)"))

    done = run_streaming(cmd, env=libpq_env(dsn), on_line=on_line, cancel=cancel)
    count = len(errors)
    for line in done.lines:
        match = _ERRORS_IGNORED.search(line)
        if match:
            count = max(count, int(match.group(1)))
    if done.returncode != 0 and count == 0:
        count = 1
        errors.append(f"pg_restore exited with {done.returncode}: " + last_line("\n".join(done.lines)))
    return RestoreOutcome(done.returncode, count, errors, used_jobs, loaded[0])
