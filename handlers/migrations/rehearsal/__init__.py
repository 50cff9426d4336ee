"""The pre-migration checklist, done by the bot: rehearse UP and DOWN on a throwaway copy.

A copy of the latest verified backup (or only the schema, for very large databases or when there is
no backup) is restored into a private `TemporaryInstance`; UP runs there exactly as `apply` would run
it (same batches: one transaction, statements that cannot run in one alone), each statement timed
and the relation locks it took read from `pg_locks`; then DOWN; then the schema and the data of the
columns UP touches are compared with what they were before UP. The instance is always deleted.

Locks are held until the transaction ends, so the downtime estimate for a table is the time from
the statement that first took a blocking lock on it to the commit.

The requester's SQL is hostile input, and the copy holds production's rows. So the instance is a
sandbox (see handlers.postgres.instance), and UP and DOWN run connected as `app_owner`, an ordinary role
that owns the application's objects, as the application's own user does on Render's managed
Postgres: no superuser, no CREATEROLE/CREATEDB, no pg_execute_server_program, pg_read_server_files
or pg_write_server_files. Extensions and schemas (which may need a superuser) are restored first as
the instance's superuser, the schemas handed to app_owner; everything else is restored connected as
app_owner. A failing statement is reported by line, SQLSTATE and condition name; its message (which
can quote rows: `RAISE EXCEPTION '%', (SELECT ...)`) is kept apart, for the requester only
(`Rehearsal.private_error_text()`). Names read back after UP are shown only when the copy had them
before or UP and DOWN spell them out (names.py); the rest is counted by kind. The bot's own schema is
not restored, and the rehearsal stops at its own time and disk limits (limits.py).
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from handlers import environment
from handlers.errors import Cancelled, DbopsError, UsageError
from handlers.postgres import (
    InstanceError,
    PgBinariesError,
    TemporaryInstance,
    copy_major,
    major_version,
    short_version,
)
from handlers.report import Progress, ProgressFn, no_progress
from handlers.schemadiff import ROLLED_BACK, schema_differences
from handlers.target import Target, dsn_secrets, scrub

from ..apply import Batch, plan_batches, transaction_control_note
from ..parsing import parse_statements
from ..session import SessionChanged, pin_session
from ..settings import RehearsalSettings
from .compare import changed_columns, changed_tables, data_differences, snapshot
from .content import content_differences, touched
from .copy import compare_with_manifest, copy_schema, restore_copy
from .leftovers import rehearsal_work_dir, remove_leftover_rehearsals
from .limits import Limits
from .names import Nameable, withhold
from .reach import beyond_copy
from .result import APP_ROLE, REHEARSAL_DB, REHEARSAL_PURPOSE, Rehearsal
from .run import BatchRun, cancel_on, condition_name, run_batches


def rehearse(up_sql: str, down_sql: str | None, *, archive: Path | None = None, manifest: dict | None = None,
             backup_id: str | None = None, backup_started_at: datetime | None = None,
             schema_source: Target | None = None, settings: RehearsalSettings,
             progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
             up_filename: str = "UP.sql", down_filename: str = "DOWN.sql", target: Target | None = None) -> Rehearsal:
    """Rehearse UP (and DOWN) on a throwaway copy; see the module docstring.

    `archive` is a custom-format file or directory-format folder ready for pg_restore (from
    `handlers.backup.materialize`), `manifest` its backup manifest (BackupManifest.to_dict()),
    used to check the copy's row counts. `schema_source` is used when there is no archive or
    settings.source is "schema". `target` is the database the migration is for: the copy runs its
    current PostgreSQL major (the backup's source major when it cannot be asked). Raises UsageError
    (SQL does not parse, nothing to copy), TargetUnreachable (schema source), PgBinariesError (that
    major is not installed: the message has the install command), VersionError (the backup cannot
    be restored on that major), DbopsError (the copy cannot be made), Cancelled.
    A failing UP or DOWN statement is a result, not an exception."""
    started = time.monotonic()
    up_parsed = parse_statements(up_sql, up_filename)
    down_parsed = parse_statements(down_sql, down_filename) if down_sql is not None else None
    up = plan_batches(up_parsed, up_filename)
    down = plan_batches(down_parsed, down_filename) if down_parsed is not None else None
    manifest = manifest or {}
    backup_id = backup_id or manifest.get("backup_id")
    if backup_started_at is None and manifest.get("created_at"):
        try:
            backup_started_at = datetime.fromisoformat(str(manifest["created_at"]).replace("Z", "+00:00"))
        except ValueError:
            backup_started_at = None
    if settings.source == "schema" and schema_source is not None:
        archive = None  # a schema-only dump of the target is far quicker than reading the whole archive
    if archive is None and schema_source is None:
        raise UsageError("nothing to rehearse on: no verified backup archive and no target to copy the schema from")
    with_data = archive is not None and settings.source == "backup"
    result = Rehearsal(source="backup" if with_data else "schema", down_given=down is not None,
                       backup_id=backup_id if archive is not None else None,
                       schema_target=schema_source.name if archive is None and schema_source else None)
    result.notes = [note for parsed, whose in ((up_parsed, "UP's"), (down_parsed or [], "DOWN's"))
                    if (note := transaction_control_note(parsed, whose))]
    if archive is not None and backup_started_at is not None:
        if backup_started_at.tzinfo is None:
            backup_started_at = backup_started_at.replace(tzinfo=timezone.utc)
        result.backup_age_s = (datetime.now(timezone.utc) - backup_started_at).total_seconds()

    result.source_name, result.source_version = _current_version(target or schema_source, manifest)
    source_major = major_version(result.source_version) if result.source_version else None
    major = None if source_major is None else copy_major(
        source_major, major_version(manifest.get("pg_dump_version")) if archive is not None else None)
    instance = TemporaryInstance(purpose=REHEARSAL_PURPOSE, parent=settings.work_dir, major=major, settings={
        "maintenance_work_mem": "256MB", "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"})
    app_password = secrets.token_urlsafe(24)
    # the environment's secrets are scrubbed from error texts as a second line of defence (the sandbox holds none)
    hidden = [app_password, *environment.secret_values(), *(dsn_secrets(schema_source.dsn) if schema_source else [])]
    limits = Limits(settings, lambda: instance.server_dir, cancel).start()
    stop = limits.stop  # the caller's cancel, or a limit passed
    try:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the rehearsal was cancelled before it started")
        progress(Progress("rehearsal", 0.0, "starting a throwaway PostgreSQL"))
        try:
            instance.start()
            hidden += instance.secrets()
            with psycopg.connect(instance.dsn(), autocommit=True) as admin:
                _create_app_role(admin, app_password, settings.temp_file_limit_mb)
                result.copy_version = short_version(admin.execute("SHOW server_version").fetchone()[0])
        except (InstanceError, PgBinariesError, psycopg.Error) as exc:
            raise DbopsError(f"could not start the rehearsal's PostgreSQL: {scrub(str(exc), hidden)[:500]}") from None
        admin_dsn = instance.dsn(REHEARSAL_DB)
        app_dsn = instance.dsn(REHEARSAL_DB, user=APP_ROLE, password=app_password)
        t0 = time.monotonic()
        if archive is not None:
            progress(Progress("rehearsal", 0.05, f"restoring {'backup ' + backup_id if backup_id else 'the archive'}"
                                                 f"{'' if with_data else ' (schema only)'}"))
            problems = restore_copy(Path(archive), admin_dsn, app_dsn, Path(instance.path), settings.jobs,
                                schema_only=not with_data, cancel=stop, major=major)
        else:
            assert schema_source is not None
            progress(Progress("rehearsal", 0.05, f"copying the schema of `{schema_source.name}`"))
            problems = copy_schema(schema_source, admin_dsn, app_dsn, Path(instance.path), settings.jobs, stop,
                                   major=major)
        result.restore_problems = [scrub(p, hidden) for p in problems]
        result.restore_s = time.monotonic() - t0
        if stop.is_set():
            raise Cancelled("the rehearsal was cancelled")
        try:
            with psycopg.connect(app_dsn, autocommit=True) as conn, cancel_on(conn, stop):
                _rehearse_on(conn, result, up, down, manifest if with_data else {}, settings, progress, limits, hidden)
        except SessionChanged as exc:
            raise DbopsError(f"the rehearsal could not prepare its session on the copy: {exc}") from None
        except psycopg.Error as exc:
            if stop.is_set():
                raise Cancelled("the rehearsal was cancelled") from None
            # Not the message: after UP and DOWN it can be the requester's own text, or rows.
            raise DbopsError(f"the rehearsal could not measure its copy (SQLSTATE {exc.sqlstate or 'unknown'}, "
                             f"{condition_name(exc.sqlstate)})") from None
    except Cancelled:
        if limits.reason is None:
            raise
        raise DbopsError(f"the rehearsal stopped at {limits.reason}") from None
    finally:
        limits.close()
        instance.stop()
        result.total_s = time.monotonic() - started
    progress(Progress("rehearsal", 1.0, "done"))
    return result




def _current_version(target: Target | None, manifest: dict) -> tuple[str, str]:
    """(the database's name, its PostgreSQL version now, "16.4"): asked of the target; the backup's
    source version when the target cannot be asked; "" when neither says."""
    if target is not None:
        try:
            with target.connect(connect_timeout=10) as conn:
                return target.name, short_version(conn.execute("SHOW server_version").fetchone()[0])
        except DbopsError:
            pass  # the copy then runs the backup's major; applying needs the target anyway
    version = manifest.get("server_version") or manifest.get("server_version_num")
    return str(manifest.get("target") or (target.name if target else "")), short_version(version) if version else ""


def _create_app_role(admin: psycopg.Connection, password: str,
                     temp_file_limit_mb: int = RehearsalSettings.temp_file_limit_mb) -> None:
    """The application's role, as on a managed Postgres: owns the database (hence the public schema),
    may log in, and nothing more. Its temp_file_limit is one only a superuser may change."""
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                          "NOBYPASSRLS").format(sql.Identifier(APP_ROLE), sql.Literal(password)))
    admin.execute(sql.SQL("ALTER ROLE {} SET temp_file_limit = {}").format(
        sql.Identifier(APP_ROLE), sql.Literal(f"{temp_file_limit_mb}MB")))
    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(REHEARSAL_DB),
                                                                sql.Identifier(APP_ROLE)))


def _rehearse_on(conn: psycopg.Connection, result: Rehearsal, up: list[Batch], down: list[Batch] | None,
                 manifest: dict, settings: RehearsalSettings, progress: ProgressFn,
                 limits: Limits, hidden: list[str]) -> None:
    progress(Progress("rehearsal", 0.4, "measuring the copy before UP"))
    up_statements = [s for b in up for s in b.statements]
    before = snapshot(conn, changed_columns(up_statements), None, changed_tables(up_statements))
    if not before.schema.get("tables") and result.restore_problems:
        raise DbopsError(f"the copy to rehearse on could not be made: {result.restore_problems[0]}")
    result.restore_problems += compare_with_manifest(manifest, before.rows)
    result.checked_columns = [c.label for c in before.columns]
    limits.copy_made()
    if result.source == "backup":  # a copy without rows cannot tell what lies past them
        result.beyond_copy = beyond_copy(conn, up_statements)

    shown = Nameable.of(before.schema, before.namespaces, before.types,
                        [s for b in up + (down or []) for s in b.statements])
    progress(Progress("rehearsal", 0.5, "applying UP"))
    pin_session(conn)
    run = _limited(lambda: run_batches(conn, up, settings, before.names, shown, limits.stop, hidden), limits, result)
    result.up_statements, result.up_s, result.downtime = run.statements, run.seconds, run.downtime
    result.every_row = run.every_row
    if run.error:
        result.up_error, result.up_error_line = run.error, run.error_line
        result.up_error_statement = run.error_statement
        result.up_error_sqlstate, result.up_error_condition = run.error_sqlstate, run.error_condition
        result.up_error_text = run.error_text
        return
    if down is None:
        return
    progress(Progress("rehearsal", 0.7, "applying DOWN"))
    conn.execute("DISCARD ALL")  # DOWN runs in a later session: no SET or temporary table of UP's carries over
    pin_session(conn)
    back = _limited(lambda: run_batches(conn, down, settings, before.names, shown, limits.stop, hidden), limits,
                    result)
    result.down_statements, result.down_s = back.statements, back.seconds
    if back.error:
        result.down_error, result.down_error_line = back.error, back.error_line
        result.down_error_sqlstate, result.down_error_condition = back.error_sqlstate, back.error_condition
        result.down_error_text = back.error_text
        return
    progress(Progress("rehearsal", 0.85, "comparing the schema and data with before UP"))
    touched_tables = touched(run.locks | back.locks, before.names, before.contents)
    after = snapshot(conn, None, before.columns, tables=before.tables, touched=touched_tables)
    nameable, withheld = withhold(before.schema, after.schema, shown)
    result.schema_diff = schema_differences(before.schema, nameable, ROLLED_BACK, sequence_values=False) + withheld
    result.data_diff = data_differences(before, after) + content_differences(
        before.contents, after.contents, touched_tables,
        {(c.schema, c.table, c.column) for c in before.checksums}, set(before.row_checksums))
    result.touched_tables = [f"{schema}.{table}" for schema, table in touched_tables]
    result.unmeasured_tables = [sql.Identifier(schema, table).as_string(None) for schema, table in touched_tables
                                if (schema, table) in before.contents.over_budget]


def _limited(run: Callable[[], BatchRun], limits: Limits, result: Rehearsal) -> BatchRun:
    """UP or DOWN run within the rehearsal's limits: one passed is that run's error (`stopped_by`)."""
    try:
        done = run()
    except Cancelled:
        if limits.reason is None:
            raise
        done = BatchRun()
    if done.error is None and limits.check() is not None:
        done.error = limits.reason
    if done.error == limits.reason:
        result.stopped_by = limits.reason
    return done


__all__ = ["APP_ROLE", "REHEARSAL_PURPOSE", "Rehearsal", "RehearsalSettings", "condition_name",
           "rehearsal_work_dir", "rehearse", "remove_leftover_rehearsals", "schema_differences"]
