"""Loading the copy: the backup restored (superuser entries first, the rest as app_owner), or the
target's schema copied."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
from psycopg import sql

from handlers import schemas
from handlers.errors import Cancelled, DbopsError, TargetUnreachable
from handlers.postgres import (
    ArchiveContents,
    PgToolError,
    last_line,
    libpq_env,
    list_archive,
    pg_tool,
    run_pg_restore,
    run_streaming,
    toc_entry,
    write_use_list,
)
from handlers.report import no_progress
from handlers.target import Target, dsn_secrets, scrub

from ..apply import error_text
from .result import APP_ROLE

# -- loading the copy ------------------------------------------------------------------------

def _superuser_entry(what: str) -> bool:
    """Archive entries restored as the superuser: extensions (most need one), their comments, and the
    schemas (an extension may live in one; they are handed to app_owner afterwards)."""
    return what.startswith(("EXTENSION - ", "SCHEMA - ", "COMMENT - EXTENSION "))


def restore_copy(archive: Path, admin_dsn: str, app_dsn: str, work: Path, jobs: int, schema_only: bool,
             cancel: threading.Event | None, major: int | None = None) -> list[str]:
    """Restore so that app_owner owns every object of the application (see the module docstring).
    Publications are left out: creating one needs more than app_owner may, and UP and DOWN never
    depend on them. So is the bot's own schema (its jobs, audit log and other requests' notes), which
    rehearsal SQL could otherwise read. `major`: the copy's PostgreSQL major, whose pg_restore restores
    (None: the default binaries')."""
    contents = list_archive(archive)
    if contents.errors:
        return contents.errors[:20]
    entries = [e for e in contents.entry_lines if toc_entry(e).split()[:3] != ["SCHEMA", "-", schemas.BOT_SCHEMA]]
    first = [e for e in entries if _superuser_entry(toc_entry(e))]
    rest = [e for e in entries if not _superuser_entry(toc_entry(e)) and not toc_entry(e).startswith("PUBLICATION")]
    problems: list[str] = []
    try:
        if first:
            problems += _restore_entries(archive, contents, first, admin_dsn, work / "superuser.list", 1,
                                         schema_only, cancel, major)
            try:
                with psycopg.connect(admin_dsn, autocommit=True) as admin:
                    _hand_schemas_to_app(admin)
            except psycopg.Error as exc:
                problems.append(f"could not hand the restored schemas to {APP_ROLE}: {error_text(exc)}")
        problems += _restore_entries(archive, contents, rest, app_dsn, work / "app.list", jobs, schema_only, cancel,
                                     major)
    except Cancelled:
        raise Cancelled("the rehearsal was cancelled while copying the database") from None
    return problems[:20]


def _restore_entries(archive: Path, contents: ArchiveContents, entries: list[str], dsn: str, listing: Path,
                     jobs: int, schema_only: bool, cancel: threading.Event | None, major: int | None) -> list[str]:
    outcome = run_pg_restore(archive, dsn, contents.format, jobs, 0, no_progress, cancel,
                             exclude_schemas=(schemas.BOT_SCHEMA,), use_list=write_use_list(entries, listing),
                             schema_only=schema_only, major=major)
    return outcome.errors


def _hand_schemas_to_app(admin: psycopg.Connection) -> None:
    rows = admin.execute(f"""
        SELECT n.nspname FROM pg_namespace n
        WHERE {schemas.not_system('n')} AND n.nspname <> 'public'
          AND {schemas.not_extension_member('pg_namespace', 'n')}""").fetchall()
    for (name,) in rows:
        admin.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(APP_ROLE)))


def copy_schema(source: Target, admin_dsn: str, app_dsn: str, work: Path, jobs: int,
                 cancel: threading.Event | None, major: int | None = None) -> list[str]:
    """The target's schema (pg_dump --schema-only) restored into the copy. `major`: the target's and the
    copy's PostgreSQL major: pg_dump and pg_restore of that major (None: the default binaries')."""
    dump = work / "schema.dump"
    try:
        env = libpq_env(source.dsn)
    except PgToolError as exc:
        raise DbopsError(f"cannot copy the schema of `{source.name}`: {exc}") from None
    os.close(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # pg_dump keeps the mode
    rc, stderr = _run_tool([pg_tool("pg_dump", major), "--schema-only", "-Fc", "-w", "-f", str(dump)], env, cancel)
    if rc != 0:
        reason = scrub(last_line(stderr), dsn_secrets(source.dsn))
        if "connection to server" in stderr or "could not connect" in stderr:
            raise TargetUnreachable(f"target `{source.name}` ({source.label}) is unreachable: {reason}")
        raise DbopsError(f"pg_dump --schema-only of `{source.name}` failed: {reason}")
    try:
        return restore_copy(dump, admin_dsn, app_dsn, work, jobs, schema_only=True, cancel=cancel, major=major)
    finally:
        dump.unlink(missing_ok=True)


def _run_tool(cmd: list[str], env: dict[str, str], cancel: threading.Event | None) -> tuple[int, str]:
    """(exit status, output) of a client program run with credentials in `env` only."""
    try:
        done = run_streaming(cmd, env, cancel=cancel)
    except Cancelled:
        raise Cancelled("the rehearsal was cancelled while copying the database") from None
    return done.returncode, "\n".join(done.lines)


def compare_with_manifest(manifest: dict, rows: dict[str, int]) -> list[str]:
    """The backup's own row counts against the restored copy's: a short copy rehearses on less data."""
    problems = []
    for t in manifest.get("tables", []):
        key = f"{t['schema']}.{t['name']}"
        if key in rows and rows[key] != t.get("rows"):
            problems.append(f"table {key}: {t.get('rows')} rows in the backup, {rows[key]} in the copy")
        elif key not in rows:
            problems.append(f"table {key}: in the backup, missing from the copy")
    return problems
