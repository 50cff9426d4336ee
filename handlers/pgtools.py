"""Running PostgreSQL client programs (pg_dump, pg_restore, pg_amcheck) safely: the bundled binaries,
the connection handed over in the environment only (never on the command line), cancellable, output streamed;
and the one reading of pg_restore's output (its table of contents, its errors) for verify, restore and drills."""
from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import Cancelled, DbopsError
from .pginstance import PgBinariesError, bin_dir, pg_tool, sandbox_env
from .report import Progress

# libpq connection keywords and the environment variables libpq reads for them.
_ENV_FOR = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "service": "PGSERVICE", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI", "sslnegotiation": "PGSSLNEGOTIATION", "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH", "channel_binding": "PGCHANNELBINDING", "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB", "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "client_encoding": "PGCLIENTENCODING",
}


_KEPT_FROM_THE_BOT = ("HOME", "TMPDIR")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgToolError(DbopsError):
    """A client program cannot be run, or cannot be given this connection."""


def libpq_env(dsn: str) -> dict[str, str]:
    """The whole environment of a client program that connects as `dsn` says, with nothing on the
    command line and nothing of the bot's: its tokens and keys stay in the bot's process.

    Kept from the bot's environment: HOME (libpq's ~/.postgresql certificates) and TMPDIR. Its
    messages are read by this module, so they are in English (LC_ALL=C). `libpq_env("")` is the
    environment of a program that must not connect anywhere.
    """
    env = sandbox_env() | {name: os.environ[name] for name in _KEPT_FROM_THE_BOT if os.environ.get(name)}
    for key, value in conninfo_to_dict(dsn).items():
        var = _ENV_FOR.get(key)
        if var is None:
            raise PgToolError(f"the connection string uses `{key}`, which dbops cannot hand to a client program "
                                  "without putting it on the command line; remove that parameter")
        if value is not None:
            env[var] = str(value)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def pg_dump_version() -> tuple[tuple[int, int], str]:
    """((major, minor), "pg_dump (PostgreSQL) 18.1") of the pg_dump that backups use."""
    try:
        result = subprocess.run([pg_tool("pg_dump"), "--version"], capture_output=True, text=True, timeout=30,
                                env=libpq_env(""))
    except (PgBinariesError, OSError, subprocess.SubprocessError) as exc:
        raise PgToolError(f"pg_dump cannot be run: {exc}") from None
    text = result.stdout.strip()
    match = _VERSION_RE.search(text)
    if result.returncode != 0 or not match:
        raise PgToolError(f"cannot tell the version of pg_dump ({pg_tool('pg_dump')}): "
                              f"{last_line(result.stderr) or text or 'no output'}")
    return (int(match.group(1)), int(match.group(2) or 0)), text


def require_pg_dump_for(server_version_num: int, server_version: str) -> tuple[int, str]:
    """Refuse a pg_dump older than the server: it cannot read the newer catalogs correctly.

    Returns (pg_dump major version, its version line)."""
    (major, minor), text = pg_dump_version()
    server_major = server_version_num // 10000
    if major < server_major:
        where = (f"DBOPS_PG_BIN={os.environ['DBOPS_PG_BIN']}" if os.environ.get("DBOPS_PG_BIN")
                 else str(bin_dir()))
        raise PgToolError(
            f"pg_dump {major}.{minor} (from {where}) is older than the server, PostgreSQL "
            f"{server_version.split()[0]}: pg_dump must be at least the server's major version ({server_major}). "
            f"Point DBOPS_PG_BIN at a PostgreSQL {server_major} or newer bin folder, or unset it to use the "
            "bundled PostgreSQL 18 tools.")
    return major, text


@functools.lru_cache(maxsize=16)
def pg_dump_supports(method: str, pg_dump_path: str) -> bool:
    """Whether this pg_dump build can compress with `method` (zstd and lz4 are optional at build time).

    pg_dump checks the compression specification before it connects, so a connection that cannot
    succeed (a socket folder that does not exist) is enough to ask it.
    """
    result = subprocess.run([pg_dump_path, "-Fc", "-Z", method, "-f", os.devnull, "-w",
                             "-d", "host=/nonexistent-dbops-probe dbname=probe connect_timeout=1"],
                            capture_output=True, text=True, env=libpq_env(""), timeout=30)
    return "does not support compression" not in result.stderr and "invalid compression" not in result.stderr


def choose_compression(setting: str, level: int | None, major: int) -> str:
    """The -Z value: zstd where this pg_dump has it (16+, built with zstd), gzip otherwise.

    Compression happens in pg_dump, on the bot's machine, so only pg_dump's support matters.
    """
    path = pg_tool("pg_dump")
    if setting == "none":
        return "none"
    if setting in ("zstd", "lz4"):
        if major < 16 or not pg_dump_supports(setting, path):
            raise PgToolError(f"backup.compression = \"{setting}\" but this pg_dump ({path}) was built without "
                                  f"{setting}; use \"auto\" or \"gzip\"")
        method = setting
    elif setting == "auto" and major >= 16 and pg_dump_supports("zstd", path):
        method = "zstd"
    else:
        method = "gzip"
    if level is not None:
        return f"{method}:{level}"
    return {"zstd": "zstd:3", "gzip": "gzip:6", "lz4": "lz4:1"}[method]


def toc_table_data(archive: Path) -> list[str]:
    """The TABLE DATA lines of an archive's table of contents (pg_restore --list)."""
    contents = list_archive(archive)
    if contents.errors:
        raise PgToolError(f"pg_restore cannot read the archive's table of contents: {contents.errors[-1][:400]}")
    return contents.table_data_lines


def missing_table_data(archive: Path, tables: list[dict]) -> list[str]:
    """Manifest tables that have no TABLE DATA entry in the archive."""
    lines = toc_table_data(archive)
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


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def server_facts(conn: psycopg.Connection) -> dict:
    row = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
                       " current_database(), pg_database_size(current_database())").fetchone()
    return {"server_version": row[0], "server_version_num": row[1], "database": row[2], "database_size": row[3]}


@dataclass
class Finished:
    returncode: int
    lines: list[str]  # stderr and stdout lines, in order


def run_streaming(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None] | None = None,
                  cancel: threading.Event | None = None, cwd: str | None = None) -> Finished:
    """Run `cmd`, feeding each output line to `on_line`; stop it (and raise Cancelled) on `cancel`."""
    proc = start_tool(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if on_line:
                try:
                    on_line(line)
                except Exception:  # a progress callback must never break the restore
                    pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"cancelled while {Path(cmd[0]).name} ran")
    except BaseException:
        stop_tool(proc)
        raise
    reader.join(timeout=10)
    return Finished(proc.returncode, lines)


def start_tool(cmd: list[str], env: dict[str, str], stdout: Any, stderr: Any, text: bool = False,
               cwd: str | None = None) -> subprocess.Popen:
    """Start a client program so that it can be stopped whole and never outlives the bot:
    - its own session and process group: pg_dump -j and pg_restore -j workers stop with it;
    - SIGTERM when the thread that started it dies (Linux), so a killed bot leaves no pg_dump
      writing on into a partial file (callers wait for the program in that same thread);
    - umask 077: what it writes (an archive, its folder) is private from its first byte.
    Until its own session starts, the child is a copy of this process running Python (the
    parent-death hook), in the terminal's process group: a Ctrl-C then would raise there. So SIGINT
    is blocked around the fork: the child keeps it blocked (programs are stopped with SIGTERM),
    and this process gets it as soon as the mask is restored."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                text=text, errors="replace" if text else None, start_new_session=True,
                                umask=0o077, preexec_fn=_parent_death_signal())
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except KeyboardInterrupt:  # the Ctrl-C that came during the fork: the program goes too
        stop_tool(proc)
        raise
    return proc


def stop_tool(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the program's whole process group, SIGKILL after `grace_s`; always reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def exit_text(tool: str, returncode: int) -> str:
    """"pg_dump was killed (SIGKILL)" or "pg_dump exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{tool} was killed ({name})"
    return f"{tool} exited with status {returncode}"


@functools.cache
def _parent_death_signal() -> Callable[[], None] | None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) for the child, looked up here: nothing may be imported or
    loaded between fork and exec in a program with threads."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: cleanup_incomplete still removes a dead backup's files at the next start

    def set_it() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_it


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
    done = _read_toc(archive)
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
            if len(parts) >= 6 and parts[-1] != "-":
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


def schemaless_toc(archive: Path, exclude_schemas: tuple[str, ...]) -> Path:
    """A table of contents for --use-list without the excluded schemas' own entries: --exclude-schema
    leaves out what is *in* a schema but still creates the schema, empty."""
    contents = list_archive(archive)
    if contents.errors:
        raise PgToolError(f"pg_restore --list failed: {contents.errors[-1][:400]}")
    unwanted = {("SCHEMA", "-", name) for name in exclude_schemas}
    kept = [line for line in contents.entry_lines if tuple(toc_entry(line).split()[:3]) not in unwanted]
    return write_use_list(kept, archive.parent / f".{archive.name}.toc")


def restore_command(archive: Path, archive_format: str, jobs: int, exclude_schemas: tuple[str, ...] = (),
                    use_list: Path | None = None, schema_only: bool = False) -> tuple[list[str], int]:
    """The pg_restore command line, and the number of jobs it uses (only custom and directory
    archives restore in parallel)."""
    # --no-owner --no-acl: the source's roles need not exist where the archive is restored; the
    # objects belong to the connecting user. No security labels (their providers are the source
    # server's) and no subscriptions: a copy that subscribes competes with the original for its
    # publisher's slot. The connection is in the environment (libpq_env); an empty --dbname still
    # makes pg_restore connect instead of printing SQL.
    jobs = max(1, jobs) if archive_format.upper() in ("CUSTOM", "DIRECTORY") else 1
    cmd = [pg_tool("pg_restore"), "--no-owner", "--no-acl", "--no-security-labels", "--no-subscriptions",
           "--verbose"]
    if exclude_schemas:
        use_list = schemaless_toc(archive, exclude_schemas)
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
                   schema_only: bool = False) -> RestoreOutcome:
    """pg_restore `archive` into `dsn`, every error counted and kept with the command it came from;
    progress ("restore" phase) for each table loaded. Raises Cancelled on `cancel`."""
    cmd, used_jobs = restore_command(archive, archive_format, jobs, exclude_schemas, use_list, schema_only)
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
