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
(`Rehearsal.private_error_text()`).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psycopg
from psycopg import sql

from handlers import environment, fmt, schemas
from handlers.backup.manifest import capture_manifest
from handlers.errors import Cancelled, DbopsError, TargetUnreachable, UsageError
from handlers.postgres import (
    MARKER_FILE,
    ArchiveContents,
    InstanceError,
    PgBinariesError,
    PgToolError,
    TemporaryInstance,
    last_line,
    libpq_env,
    list_archive,
    pg_tool,
    private_work_dir,
    remove_leftover_instances,
    run_pg_restore,
    run_streaming,
    toc_entry,
    write_use_list,
)
from handlers.report import Outcome, Progress, ProgressFn, Report, Section, Table, no_progress
from handlers.schemadiff import ROLLED_BACK, schema_differences
from handlers.target import Target, dsn_secrets, scrub

from .apply import Batch, error_text, plan_batches
from .model import Finding, Severity
from .nodes import TableName, alter_table_cmds, is_alter_table, table_of
from .parsing import Statement, parse_statements
from .settings import RehearsalSettings

REHEARSAL_PURPOSE = "rehearsal"
WORK_PURPOSE = "rehearsal-work"  # the folder holding the fetched archive (see rehearsal_work_dir)
REHEARSAL_DB = "rehearsal"
APP_ROLE = "app_owner"  # the role UP and DOWN run as
PREVIEW = 200
PRIVATE_TEXT_LIMIT = 300
UNMARKED_WORK_MIN_AGE_S = 3600  # work folders of an older dbops carry no marker: removed when this stale

# pg_locks mode -> the name in LOCK TABLE / the docs, and what it blocks for the application.
LOCK_NAMES = {
    "AccessShareLock": "ACCESS SHARE", "RowShareLock": "ROW SHARE", "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE", "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}
BLOCKS_READS_AND_WRITES = ("AccessExclusiveLock",)
BLOCKS_WRITES = ("ExclusiveLock", "ShareRowExclusiveLock", "ShareLock")  # strongest first


# -- the result ------------------------------------------------------------------------------

@dataclass
class Rehearsal:
    source: str  # "backup" (data restored) | "schema" (schema only)
    backup_id: str | None = None
    backup_age_s: float | None = None
    schema_target: str | None = None  # the target whose schema was copied (source "schema" from a target)
    up_statements: list[dict] = field(default_factory=list)  # [{line, statement, seconds, locks, outside_transaction}]
    down_statements: list[dict] = field(default_factory=list)
    # Channel-safe: "line 7: SQLSTATE 42501 (insufficient_privilege)", never the server's message.
    up_error: str | None = None
    up_error_line: int | None = None
    up_error_statement: str | None = None
    up_error_sqlstate: str | None = None
    up_error_condition: str | None = None
    up_error_text: str | None = None  # the server's message, scrubbed, <= 300 chars: for the requester only
    down_given: bool = False
    down_error: str | None = None
    down_error_line: int | None = None
    down_error_sqlstate: str | None = None
    down_error_condition: str | None = None
    down_error_text: str | None = None  # as up_error_text
    schema_diff: list[str] = field(default_factory=list)
    data_diff: list[str] = field(default_factory=list)
    checked_columns: list[str] = field(default_factory=list)  # columns whose data was checksummed
    downtime: list[dict] = field(default_factory=list)  # [{relation, mode, seconds, blocks}]
    # DELETE/UPDATE statements of UP that touched every row of their table in the copy:
    # [{line, kind, relation, rows}]. `WHERE "Id" > 0` is a DELETE without WHERE in effect.
    every_row: list[dict] = field(default_factory=list)
    restore_problems: list[str] = field(default_factory=list)
    restore_s: float = 0.0
    up_s: float = 0.0
    down_s: float = 0.0
    total_s: float = 0.0

    # -- verdicts --------------------------------------------------------------
    @property
    def rollback_tested(self) -> bool:
        return self.up_error is None and self.down_given

    @property
    def reversible(self) -> bool | None:
        """True when DOWN brought schema and data back; None when that was not tested."""
        if not self.rollback_tested:
            return None
        return self.down_error is None and not self.schema_diff and not self.data_diff

    def _copy_of(self) -> str:
        if self.source == "backup":
            what = f"backup {self.backup_id}" if self.backup_id else "a backup archive"
            return f"a copy of {what}" + (f" ({fmt.duration(self.backup_age_s)} old)" if self.backup_age_s is not None else "")
        if self.schema_target:
            return f"a schema-only copy of `{self.schema_target}` (no data)"
        what = f"backup {self.backup_id}" if self.backup_id else "a backup archive"
        return f"a schema-only copy of {what} (no data)"

    def private_error_text(self) -> str | None:
        """The failing statement's message, for the requester only (an ephemeral message): it can
        quote rows of the production copy. None when nothing failed."""
        parts = []
        if self.up_error and self.up_error_text:
            parts.append(f"UP {self.up_error}: {self.up_error_text}")
        if self.down_error and self.down_error_text:
            parts.append(f"DOWN {self.down_error}: {self.down_error_text}")
        return "\n".join(parts) or None

    def checklist_lines(self) -> list[str]:
        lines = [f"rehearsed on {self._copy_of()}"]
        if self.restore_problems:
            lines.append(f"the copy was restored with {fmt.plural(len(self.restore_problems), 'problem')}: {self.restore_problems[0]}")
        if self.up_error:
            lines.append(f"UP failed in rehearsal at {self.up_error}")
            lines.append("rollback not tested: UP failed")
            return lines
        count = len(self.up_statements)
        lines.append(f"UP applied in rehearsal: {fmt.plural(count, 'statement')} in {fmt.duration(self.up_s)}")
        if not self.down_given:
            lines.append("rollback not tested: no DOWN migration")
        elif self.down_error:
            lines.append(f"rollback tested: DOWN failed at {self.down_error}")
        elif self.schema_diff:
            lines.append(f"rollback tested: DOWN does not bring the schema back: {_some(self.schema_diff)}")
        elif self.data_diff:
            lines.append(f"rollback tested: schema identical, but DOWN does not bring the data back: "
                         f"{_some(self.data_diff)}")
        else:
            data = (f", data of {fmt.plural(len(self.checked_columns), 'changed column')} identical"
                    if self.checked_columns and self.source == "backup" else "")
            lines.append(f"rollback tested: schema identical{data}")
        caveat = " on a copy without data: expect longer in production" if self.source == "schema" else ""
        if self.downtime:
            for d in self.downtime:
                about = "" if d["seconds"] < 0.1 else "about "
                lines.append(f"downtime estimate: {d['mode']} on {d['relation']} for {about}{fmt.duration(d['seconds'])} "
                             f"(blocks {d['blocks']}){caveat}")
        else:
            lines.append(f"downtime estimate: no lock that blocks reads or writes is held (UP took "
                         f"{fmt.duration(self.up_s)}){caveat}")
        return lines

    def findings(self) -> list[Finding]:
        found = []
        for hit in self.every_row:
            verb = "deletes" if hit["kind"] == "DELETE" else "updates"
            found.append(Finding(
                code="delete-without-where" if hit["kind"] == "DELETE" else "update-without-where",
                severity=Severity.FORBIDDEN, line=hit["line"], statement="",
                message=f"{hit['kind']} {verb} every row of {hit['relation']} in the rehearsal copy "
                        f"({hit['rows']:,} of {hit['rows']:,}): in effect it has no WHERE",
                hint="If that is meant, say so with an approver; otherwise narrow the WHERE clause."))
        if self.up_error:
            found.append(Finding(
                code="rehearsal-failed", severity=Severity.FORBIDDEN, line=self.up_error_line or 0,
                statement=self.up_error_statement or "",
                message=f"UP fails on {self._copy_of()} at {self.up_error}: it would fail in production too",
                hint="Fix the statement (or the rows it trips over, in an earlier migration) and request again."))
        elif self.down_given:
            problem = None
            if self.down_error:
                problem = f"DOWN fails in the rehearsal at {self.down_error}"
            elif self.schema_diff:
                problem = f"DOWN does not bring the schema back: {_some(self.schema_diff, 5)}"
            elif self.data_diff:
                problem = f"DOWN brings the schema back but not the data: {_some(self.data_diff, 5)}"
            if problem:
                found.append(Finding(
                    code="irreversible", severity=Severity.FORBIDDEN, line=0, statement="",
                    message=f"{problem}; the migration cannot be rolled back as it stands",
                    hint="Make DOWN undo every UP statement (in reverse order); for lossy changes keep the old data "
                         "(expand/contract: a new column, backfill, switch, drop later)."))
        return found

    def to_sections(self) -> list[Section]:
        sections = [Section("Rehearsal", text="\n".join(f"• {line}" for line in self.checklist_lines()))]
        for title, rows in (("UP in rehearsal", self.up_statements), ("DOWN in rehearsal", self.down_statements)):
            if rows:
                sections.append(Section(title, table=Table(  # the statement last: it wraps under itself
                    ["line", "seconds", "locks held to commit", "statement"],
                    [[r["line"], r["seconds"], _lock_text(r), _preview(r["statement"], 160)] for r in rows])))
        if self.downtime:
            sections.append(Section("Downtime estimate (locks held to commit)", table=Table(
                ["relation", "lock", "seconds", "blocks"],
                [[d["relation"], d["mode"], d["seconds"], d["blocks"]] for d in self.downtime])))
        if self.schema_diff:
            sections.append(Section("Rollback: schema differences after DOWN",
                                    text="\n".join(f"• {d}" for d in self.schema_diff)))
        if self.data_diff:
            sections.append(Section("Rollback: data differences after DOWN",
                                    text="\n".join(f"• {d}" for d in self.data_diff)))
        if self.restore_problems:
            sections.append(Section("Restoring the copy", text="\n".join(f"• {p}" for p in self.restore_problems)))
        return sections

    def to_report(self) -> Report:
        findings = self.findings()
        verdict = "; ".join(f.message for f in findings) if findings else "; ".join(self.checklist_lines()[1:3])
        return Report(title="Migration rehearsal", summary=f"Rehearsed on {self._copy_of()}: {verdict}.",
                      outcome=Outcome.APPROVAL_REQUIRED if findings else Outcome.OK,
                      sections=self.to_sections(), data={"rehearsal": self.to_dict(),
                                                         "findings": [f.to_json() for f in findings]})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Rehearsal":
        """Back from `to_dict()` (e.g. from the approval request's payload)."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Everything but the private error texts: this goes into reports, job records and approvals."""
        return {
            "source": self.source, "backup_id": self.backup_id,
            "backup_age_s": None if self.backup_age_s is None else round(self.backup_age_s, 1),
            "schema_target": self.schema_target,
            "up_statements": [dict(r) for r in self.up_statements],
            "down_statements": [dict(r) for r in self.down_statements],
            "up_error": self.up_error, "up_error_line": self.up_error_line, "down_given": self.down_given,
            "up_error_sqlstate": self.up_error_sqlstate, "up_error_condition": self.up_error_condition,
            "down_error": self.down_error, "down_error_line": self.down_error_line,
            "down_error_sqlstate": self.down_error_sqlstate, "down_error_condition": self.down_error_condition,
            "schema_diff": list(self.schema_diff), "data_diff": list(self.data_diff),
            "checked_columns": list(self.checked_columns), "downtime": [dict(d) for d in self.downtime],
            "every_row": [dict(e) for e in self.every_row],
            "up_error_statement": self.up_error_statement,
            "restore_problems": list(self.restore_problems), "restore_s": round(self.restore_s, 3),
            "up_s": round(self.up_s, 3), "down_s": round(self.down_s, 3), "total_s": round(self.total_s, 3),
            "reversible": self.reversible, "checklist": self.checklist_lines(),
        }


def _lock_text(row: dict) -> str:
    if row.get("outside_transaction"):
        return "none (ran alone)"  # autocommit: its locks end with the statement
    return ", ".join(f"{LOCK_NAMES.get(l['mode'], l['mode'])} on {l['relation']}" for l in row["locks"]) or "-"


def _some(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _preview(text: str, limit: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- rehearsing ------------------------------------------------------------------------------

def rehearse(up_sql: str, down_sql: str | None, *, archive: Path | None = None, manifest: dict | None = None,
             backup_id: str | None = None, backup_started_at: datetime | None = None,
             schema_source: Target | None = None, settings: RehearsalSettings,
             progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
             up_filename: str = "UP.sql", down_filename: str = "DOWN.sql") -> Rehearsal:
    """Rehearse UP (and DOWN) on a throwaway copy; see the module docstring.

    `archive` is a custom-format file or directory-format folder ready for pg_restore (from
    `handlers.backup.materialize`), `manifest` its backup manifest (BackupManifest.to_dict()),
    used to check the copy's row counts. `schema_source` is used when there is no archive or
    settings.source is "schema". Raises UsageError (SQL does not parse, nothing to copy),
    TargetUnreachable (schema source), DbopsError (the copy cannot be made), Cancelled.
    A failing UP or DOWN statement is a result, not an exception."""
    started = time.monotonic()
    up = plan_batches(parse_statements(up_sql, up_filename), up_filename)
    down = plan_batches(parse_statements(down_sql, down_filename), down_filename) if down_sql is not None else None
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
    if archive is not None and backup_started_at is not None:
        if backup_started_at.tzinfo is None:
            backup_started_at = backup_started_at.replace(tzinfo=timezone.utc)
        result.backup_age_s = (datetime.now(timezone.utc) - backup_started_at).total_seconds()

    instance = TemporaryInstance(purpose=REHEARSAL_PURPOSE, parent=settings.work_dir, settings={
        "maintenance_work_mem": "256MB", "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"})
    app_password = secrets.token_urlsafe(24)
    # the environment's secrets are scrubbed from error texts as a second line of defence (the sandbox holds none)
    hidden = [app_password, *environment.secret_values(), *(dsn_secrets(schema_source.dsn) if schema_source else [])]
    try:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the rehearsal was cancelled before it started")
        progress(Progress("rehearsal", 0.0, "starting a throwaway PostgreSQL"))
        try:
            instance.start()
            hidden += instance.secrets()
            with psycopg.connect(instance.dsn(), autocommit=True) as admin:
                _create_app_role(admin, app_password)
        except (InstanceError, PgBinariesError, psycopg.Error) as exc:
            raise DbopsError(f"could not start the rehearsal's PostgreSQL: {scrub(str(exc), hidden)[:500]}") from None
        admin_dsn = instance.dsn(REHEARSAL_DB)
        app_dsn = instance.dsn(REHEARSAL_DB, user=APP_ROLE, password=app_password)
        t0 = time.monotonic()
        if archive is not None:
            progress(Progress("rehearsal", 0.05, f"restoring {'backup ' + backup_id if backup_id else 'the archive'}"
                                                 f"{'' if with_data else ' (schema only)'}"))
            problems = _restore(Path(archive), admin_dsn, app_dsn, Path(instance.path), settings.jobs,
                                schema_only=not with_data, cancel=cancel)
        else:
            assert schema_source is not None
            progress(Progress("rehearsal", 0.05, f"copying the schema of `{schema_source.name}`"))
            problems = _copy_schema(schema_source, admin_dsn, app_dsn, Path(instance.path), settings.jobs, cancel)
        result.restore_problems = [scrub(p, hidden) for p in problems]
        result.restore_s = time.monotonic() - t0
        if cancel is not None and cancel.is_set():
            raise Cancelled("the rehearsal was cancelled")
        try:
            with psycopg.connect(app_dsn, autocommit=True) as conn, _cancel_on(conn, cancel):
                _rehearse_on(conn, result, up, down, manifest if with_data else {}, settings, progress, cancel, hidden)
        except psycopg.Error as exc:
            if cancel is not None and cancel.is_set():
                raise Cancelled("the rehearsal was cancelled") from None
            # Not the message: after UP and DOWN it can be the requester's own text, or rows.
            raise DbopsError(f"the rehearsal could not measure its copy (SQLSTATE {exc.sqlstate or 'unknown'}, "
                             f"{condition_name(exc.sqlstate)})") from None
    finally:
        instance.stop()
        result.total_s = time.monotonic() - started
    progress(Progress("rehearsal", 1.0, "done"))
    return result


def condition_name(sqlstate: str | None) -> str:
    """PostgreSQL's condition name for a SQLSTATE, e.g. "insufficient_privilege" for 42501."""
    if not sqlstate:
        return "unknown"
    try:
        cls = psycopg.errors.lookup(sqlstate)
    except KeyError:
        return "unknown"
    codes = getattr(psycopg.errors, "_sqlcodes", {})
    for name, known in codes.items():
        if known is cls and not re.fullmatch(r"[0-9A-Z]{5}", name):
            return name.lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _create_app_role(admin: psycopg.Connection, password: str) -> None:
    """The application's role, as on a managed Postgres: owns the database (hence the public schema),
    may log in, and nothing more."""
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                          "NOBYPASSRLS").format(sql.Identifier(APP_ROLE), sql.Literal(password)))
    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(REHEARSAL_DB),
                                                                sql.Identifier(APP_ROLE)))


def _rehearse_on(conn: psycopg.Connection, result: Rehearsal, up: list[Batch], down: list[Batch] | None,
                 manifest: dict, settings: RehearsalSettings, progress: ProgressFn,
                 cancel: threading.Event | None, hidden: list[str]) -> None:
    progress(Progress("rehearsal", 0.4, "measuring the copy before UP"))
    watched = _changed_columns([s for b in up for s in b.statements])
    before = _snapshot(conn, watched, None)
    if not before.schema.get("tables") and result.restore_problems:
        raise DbopsError(f"the copy to rehearse on could not be made: {result.restore_problems[0]}")
    result.restore_problems += _compare_with_manifest(manifest, before.rows)
    result.checked_columns = [c.label for c in before.columns]

    progress(Progress("rehearsal", 0.5, "applying UP"))
    run = _run_batches(conn, up, settings, before.names, cancel, hidden)
    result.up_statements, result.up_s, result.downtime = run.statements, run.seconds, run.downtime
    result.every_row = run.every_row
    if run.error:
        result.up_error, result.up_error_line, result.up_error_statement = run.error, run.error_line, run.error_statement
        result.up_error_sqlstate, result.up_error_condition = run.error_sqlstate, run.error_condition
        result.up_error_text = run.error_text
        return
    if down is None:
        return
    progress(Progress("rehearsal", 0.7, "applying DOWN"))
    conn.execute("DISCARD ALL")  # DOWN runs in a later session: no SET or temporary table of UP's carries over
    back = _run_batches(conn, down, settings, before.names, cancel, hidden)
    result.down_statements, result.down_s = back.statements, back.seconds
    if back.error:
        result.down_error, result.down_error_line = back.error, back.error_line
        result.down_error_sqlstate, result.down_error_condition = back.error_sqlstate, back.error_condition
        result.down_error_text = back.error_text
        return
    progress(Progress("rehearsal", 0.85, "comparing the schema and data with before UP"))
    after = _snapshot(conn, None, before.columns)
    result.schema_diff = schema_differences(before.schema, after.schema, ROLLED_BACK, sequence_values=False)
    result.data_diff = data_differences(before, after)


# -- leftovers of killed processes -------------------------------------------------------------

def rehearsal_work_dir(settings: RehearsalSettings):
    """A private 0700 folder for the rehearsal's archive (context manager), marked so that
    `remove_leftover_rehearsals` removes it if the process is killed."""
    return private_work_dir(WORK_PURPOSE, settings.work_dir)


def remove_leftover_rehearsals(work_dir: Path | None = None) -> list[str]:
    """Stop and remove rehearsal servers and work folders that a killed process left (in `work_dir`
    and in the system temp folder); one secret-free line per thing removed, for the channel.

    Work folders made by an older dbops carry no marker: those count as left over once nothing in
    them changed for an hour."""
    said = []
    places = list(dict.fromkeys(Path(p) for p in (work_dir, tempfile.gettempdir()) if p is not None))
    for place in places:
        for path in remove_leftover_instances(place, purpose=REHEARSAL_PURPOSE):
            said.append(f"removed a leftover rehearsal server ({path.name}) from {path.parent}")
        for path in remove_leftover_instances(place, purpose=WORK_PURPOSE):
            said.append(f"removed a leftover rehearsal work folder ({path.name}) from {path.parent}")
        for path in _stale_unmarked_work_dirs(place):
            shutil.rmtree(path, ignore_errors=True)
            said.append(f"removed a leftover rehearsal work folder ({path.name}) from {path.parent}")
    return said


def _stale_unmarked_work_dirs(place: Path) -> list[Path]:
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    now, found = time.time(), []
    for path in sorted(place.glob(f"dbops-{WORK_PURPOSE}-*")):
        try:
            st = os.lstat(path)
            if not os.path.isdir(path) or path.is_symlink() or (uid is not None and st.st_uid != uid):
                continue
            if (path / MARKER_FILE).exists():
                continue  # marked: its owner is alive, or remove_leftover_instances took it
            newest = max([st.st_mtime, *(e.stat(follow_symlinks=False).st_mtime for e in os.scandir(path))])
        except OSError:
            continue
        if now - newest >= UNMARKED_WORK_MIN_AGE_S:
            found.append(path)
    return found


# -- loading the copy ------------------------------------------------------------------------

def _superuser_entry(what: str) -> bool:
    """Archive entries restored as the superuser: extensions (most need one), their comments, and the
    schemas (an extension may live in one; they are handed to app_owner afterwards)."""
    return what.startswith(("EXTENSION - ", "SCHEMA - ", "COMMENT - EXTENSION "))


def _restore(archive: Path, admin_dsn: str, app_dsn: str, work: Path, jobs: int, schema_only: bool,
             cancel: threading.Event | None) -> list[str]:
    """Restore so that app_owner owns every object of the application (see the module docstring).
    Publications are left out: creating one needs more than app_owner may, and UP and DOWN never
    depend on them."""
    contents = list_archive(archive)
    if contents.errors:
        return contents.errors[:20]
    first = [e for e in contents.entry_lines if _superuser_entry(toc_entry(e))]
    rest = [e for e in contents.entry_lines
            if not _superuser_entry(toc_entry(e)) and not toc_entry(e).startswith("PUBLICATION")]
    problems: list[str] = []
    try:
        if first:
            problems += _restore_entries(archive, contents, first, admin_dsn, work / "superuser.list", 1,
                                         schema_only, cancel)
            try:
                with psycopg.connect(admin_dsn, autocommit=True) as admin:
                    _hand_schemas_to_app(admin)
            except psycopg.Error as exc:
                problems.append(f"could not hand the restored schemas to {APP_ROLE}: {error_text(exc)}")
        problems += _restore_entries(archive, contents, rest, app_dsn, work / "app.list", jobs, schema_only, cancel)
    except Cancelled:
        raise Cancelled("the rehearsal was cancelled while copying the database") from None
    return problems[:20]


def _restore_entries(archive: Path, contents: ArchiveContents, entries: list[str], dsn: str, listing: Path,
                     jobs: int, schema_only: bool, cancel: threading.Event | None) -> list[str]:
    outcome = run_pg_restore(archive, dsn, contents.format, jobs, 0, no_progress, cancel,
                             use_list=write_use_list(entries, listing), schema_only=schema_only)
    return outcome.errors


def _hand_schemas_to_app(admin: psycopg.Connection) -> None:
    rows = admin.execute(f"""
        SELECT n.nspname FROM pg_namespace n
        WHERE {schemas.not_system('n')} AND n.nspname <> 'public'
          AND {schemas.not_extension_member('pg_namespace', 'n')}""").fetchall()
    for (name,) in rows:
        admin.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(APP_ROLE)))


def _copy_schema(source: Target, admin_dsn: str, app_dsn: str, work: Path, jobs: int,
                 cancel: threading.Event | None) -> list[str]:
    dump = work / "schema.dump"
    try:
        env = libpq_env(source.dsn)
    except PgToolError as exc:
        raise DbopsError(f"cannot copy the schema of `{source.name}`: {exc}") from None
    os.close(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # pg_dump keeps the mode
    rc, stderr = _run_tool([pg_tool("pg_dump"), "--schema-only", "-Fc", "-w", "-f", str(dump)], env, cancel)
    if rc != 0:
        reason = scrub(last_line(stderr), dsn_secrets(source.dsn))
        if "connection to server" in stderr or "could not connect" in stderr:
            raise TargetUnreachable(f"target `{source.name}` is unreachable: {reason}")
        raise DbopsError(f"pg_dump --schema-only of `{source.name}` failed: {reason}")
    try:
        return _restore(dump, admin_dsn, app_dsn, work, jobs, schema_only=True, cancel=cancel)
    finally:
        dump.unlink(missing_ok=True)


def _run_tool(cmd: list[str], env: dict[str, str], cancel: threading.Event | None) -> tuple[int, str]:
    """(exit status, output) of a client program run with credentials in `env` only."""
    try:
        done = run_streaming(cmd, env, cancel=cancel)
    except Cancelled:
        raise Cancelled("the rehearsal was cancelled while copying the database") from None
    return done.returncode, "\n".join(done.lines)


def _compare_with_manifest(manifest: dict, rows: dict[str, int]) -> list[str]:
    """The backup's own row counts against the restored copy's: a short copy rehearses on less data."""
    problems = []
    for t in manifest.get("tables", []):
        key = f"{t['schema']}.{t['name']}"
        if key in rows and rows[key] != t.get("rows"):
            problems.append(f"table {key}: {t.get('rows')} rows in the backup, {rows[key]} in the copy")
        elif key not in rows:
            problems.append(f"table {key}: in the backup, missing from the copy")
    return problems


@contextmanager
def _cancel_on(conn: psycopg.Connection, cancel: threading.Event | None) -> Iterator[None]:
    """Cancel the running statement as soon as `cancel` is set, instead of after it."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if cancel.is_set():
                try:
                    conn.cancel_safe(timeout=5)
                except Exception:
                    pass
                return

    thread = threading.Thread(target=watch, daemon=True, name="rehearsal-cancel")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


# -- running the statements ------------------------------------------------------------------

@dataclass
class _Run:
    statements: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    downtime: list[dict] = field(default_factory=list)
    every_row: list[dict] = field(default_factory=list)
    error: str | None = None  # channel-safe: line, SQLSTATE, condition name
    error_line: int | None = None
    error_statement: str | None = None
    error_sqlstate: str | None = None
    error_condition: str | None = None
    error_text: str | None = None  # private: the server's message, scrubbed and cut


_OWN_LOCKS = """
    SELECT l.mode, l.relation, c.oid IS NOT NULL AS known, coalesce(c.oid::regclass::text, '')
    FROM pg_locks l
    LEFT JOIN pg_class c ON c.oid = l.relation
    LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (c.oid IS NULL OR (c.relkind IN ('r', 'p', 'm', 'f', 'v')
                             AND """ + schemas.not_system("n") + "))"


def _own_locks(conn: psycopg.Connection, names: dict[int, str]) -> set[tuple[str, str]]:
    """(mode, relation) of the relation locks this session holds; a relation dropped in this
    transaction is gone from pg_class, so its name comes from `names` (taken before UP)."""
    held = set()
    for mode, oid, known, name in conn.execute(_OWN_LOCKS).fetchall():
        if not known:
            name = names.get(int(oid))
            if name is None:
                continue  # an index, or a table created and dropped within the migration
        held.add((mode, name))
    return held


def _run_batches(conn: psycopg.Connection, batches: list[Batch], settings: RehearsalSettings,
                 names: dict[int, str], cancel: threading.Event | None, hidden: list[str]) -> _Run:
    run = _Run()
    timeout = f"{int(settings.statement_timeout_s * 1000)}ms"
    held_for: dict[tuple[str, str], float] = {}  # (relation, what it blocks) -> seconds held
    strongest: dict[tuple[str, str], str] = {}
    started = time.monotonic()
    for batch in batches:
        if batch.in_transaction:
            conn.execute("BEGIN")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
        else:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (timeout,))
        batch_locks: dict[tuple[str, str], float] = {}  # (relation, what it blocks) -> start of the statement
        held: set[tuple[str, str]] = set()
        for stmt in batch.statements:
            if cancel is not None and cancel.is_set():
                _rollback(conn)
                raise Cancelled("the rehearsal was cancelled")
            rows_before = _rows_of_target(conn, stmt)
            t0 = time.monotonic()
            try:
                cursor = conn.execute(stmt.text)
            except psycopg.Error as exc:
                run.statements.append(_row(stmt, time.monotonic() - t0, [], batch, failed=True))
                return _failed(conn, run, stmt, exc, cancel, started, hidden)
            seconds = time.monotonic() - t0
            if rows_before and cursor.rowcount >= rows_before[1]:
                run.every_row.append({"line": stmt.line, "kind": "DELETE" if stmt.kind == "DeleteStmt" else "UPDATE",
                                      "relation": rows_before[0], "rows": cursor.rowcount})
            new: list[tuple[str, str]] = []
            if batch.in_transaction:
                now_held = _own_locks(conn, names)
                new = _strongest_per_relation(now_held - held)
                held = now_held
                for mode, relation in new:
                    blocks = _blocks(mode)
                    if blocks:
                        batch_locks.setdefault((relation, blocks), t0)
                        key = (relation, blocks)
                        if _rank(mode) > _rank(strongest.get(key, "")):
                            strongest[key] = mode
            run.statements.append(_row(stmt, seconds, new, batch))
        if batch.in_transaction:
            try:
                conn.execute("COMMIT")  # deferred constraints are checked here
            except psycopg.Error as exc:
                return _failed(conn, run, batch.statements[-1], exc, cancel, started, hidden, " (at COMMIT)")
        else:
            conn.execute("RESET statement_timeout")
        end = time.monotonic()
        for key, t0 in batch_locks.items():  # from the statement that took it to the commit
            held_for[key] = held_for.get(key, 0.0) + (end - t0)
    run.seconds = time.monotonic() - started
    run.downtime = _downtime(held_for, strongest)
    return run


def _rows_of_target(conn: psycopg.Connection, stmt: Statement) -> tuple[str, int] | None:
    """(table, rows) for a top-level DELETE or UPDATE, counted as the statement would see the table
    (ONLY or with its children); None for other statements, an empty table, or a table not counted."""
    if stmt.kind not in ("DeleteStmt", "UpdateStmt") or not stmt.node.get("relation"):
        return None
    rel = stmt.node["relation"]
    name = sql.Identifier(*[part for part in (rel.get("schemaname"), rel["relname"]) if part])
    only = sql.SQL("") if rel.get("inh") else sql.SQL("ONLY ")
    try:
        with conn.transaction():  # a savepoint inside UP's transaction: a failed count changes nothing
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}{}").format(only, name)).fetchone()[0]
    except psycopg.Error:
        return None
    label = f'"{rel["relname"]}"' if not rel.get("schemaname") else f'"{rel["schemaname"]}"."{rel["relname"]}"'
    return (label, rows) if rows else None


def _failed(conn: psycopg.Connection, run: _Run, stmt: Statement, exc: psycopg.Error,
            cancel: threading.Event | None, started: float, hidden: list[str], where: str = "") -> _Run:
    _rollback(conn)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the rehearsal was cancelled") from None
    state, condition = exc.sqlstate, condition_name(exc.sqlstate)
    code = f"SQLSTATE {state or 'unknown'} ({condition})"
    if conn.closed:
        raise DbopsError(f"the rehearsal's PostgreSQL went away at line {stmt.line} ({code})") from None
    run.error = f"line {stmt.line}{where}: {code}"
    run.error_line, run.error_statement = stmt.line, _preview(stmt.text)
    run.error_sqlstate, run.error_condition = state, condition
    run.error_text = _cut(error_text(exc, hidden), PRIVATE_TEXT_LIMIT)
    run.seconds = time.monotonic() - started
    return run


def _strongest_per_relation(locks: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """A statement that takes ACCESS EXCLUSIVE and SHARE on one table (ALTER TYPE rebuilding its indexes)
    is shown with the ACCESS EXCLUSIVE only: the weaker lock adds nothing."""
    best: dict[str, str] = {}
    for mode, relation in locks:
        if _rank(mode) > _rank(best.get(relation, "")):
            best[relation] = mode
    return sorted((mode, relation) for relation, mode in best.items())


def _downtime(held_for: dict[tuple[str, str], float], strongest: dict[tuple[str, str], str]) -> list[dict]:
    """One entry per relation and what it blocks; "writes" only when writes were blocked longer than reads."""
    entries = []
    for (relation, blocks), seconds in held_for.items():
        if blocks == "writes" and held_for.get((relation, "reads and writes"), -1.0) >= seconds:
            continue
        entries.append({"relation": relation, "mode": LOCK_NAMES[strongest[(relation, blocks)]],
                        "seconds": round(seconds, 3), "blocks": blocks})
    entries.sort(key=lambda e: (-e["seconds"], e["relation"]))
    return entries


def _blocks(mode: str) -> str | None:
    if mode in BLOCKS_READS_AND_WRITES:
        return "reads and writes"
    if mode in BLOCKS_WRITES:
        return "writes"
    return None


def _rank(mode: str) -> int:
    order = list(LOCK_NAMES)
    return order.index(mode) if mode in order else -1


def _row(stmt: Statement, seconds: float, locks: list[tuple[str, str]], batch: Batch, failed: bool = False) -> dict:
    row = {"line": stmt.line, "statement": _preview(stmt.text), "seconds": round(seconds, 3),
           "locks": [{"mode": m, "relation": r} for m, r in locks], "outside_transaction": not batch.in_transaction}
    if failed:
        row["failed"] = True
    return row


def _rollback(conn: psycopg.Connection) -> None:
    try:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


# -- what UP changes, and measuring it -------------------------------------------------------

@dataclass(frozen=True)
class WatchedColumn:
    schema: str
    table: str
    column: str
    key: tuple[str, ...]  # primary key columns: each value is hashed with its row's key

    @property
    def label(self) -> str:
        return f"{sql.Identifier(self.schema).as_string(None)}.{sql.Identifier(self.table).as_string(None)}." \
               f"{sql.Identifier(self.column).as_string(None)}"

    @property
    def table_key(self) -> str:
        return f"{self.schema}.{self.table}"


def _changed_columns(statements: list[Statement]) -> list[tuple[TableName, str]]:
    """Columns whose values UP rewrites or removes: ALTER COLUMN TYPE, DROP COLUMN, UPDATE ... SET."""
    found: list[tuple[TableName, str]] = []
    for stmt in statements:
        if stmt.kind == "AlterTableStmt" and is_alter_table(stmt.node):
            table = table_of(stmt.node["relation"])
            for _, cmd in alter_table_cmds(stmt.node):
                if cmd.get("subtype") in ("AT_AlterColumnType", "AT_DropColumn") and cmd.get("name"):
                    found.append((table, cmd["name"]))
        elif stmt.kind == "UpdateStmt" and "relation" in stmt.node:
            table = table_of(stmt.node["relation"])
            for target in stmt.node.get("targetList", ()):
                name = target.get("ResTarget", {}).get("name")
                if name:
                    found.append((table, name))
    return list(dict.fromkeys(found))


@dataclass
class _Snapshot:
    schema: dict
    rows: dict[str, int]  # "schema.table" -> rows
    names: dict[int, str]  # table oid -> regclass text, for locks on tables UP drops
    columns: list[WatchedColumn]
    checksums: dict[WatchedColumn, str]


def _snapshot(conn: psycopg.Connection, changed: list[tuple[TableName, str]] | None,
              columns: list[WatchedColumn] | None) -> _Snapshot:
    """Schema, row counts and the changed columns' checksums, in one REPEATABLE READ snapshot."""
    names = dict(conn.execute(
        "SELECT c.oid::int8, c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v') AND " + schemas.not_system("n")).fetchall())
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        if changed is not None:
            columns = _resolve_columns(conn, changed)
        manifest = capture_manifest(conn, "counts")  # pins search_path etc. for the checksums below
        present = {(c["table"], c["name"]) for c in manifest["schema"].get("columns", [])}
        measurable = [c for c in columns or [] if (c.table_key, c.column) in present
                      and all((c.table_key, k) in present for k in c.key)]
        checksums = _checksums(conn, measurable)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    rows = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    return _Snapshot(manifest["schema"], rows, names, list(columns or []), checksums)


def _resolve_columns(conn: psycopg.Connection, changed: list[tuple[TableName, str]]) -> list[WatchedColumn]:
    """The changed columns that exist before UP, with their table's primary key (one query)."""
    if not changed:
        return []
    written = [str(t) for t, _ in changed]  # as the migration names it, resolved by search_path
    rows = conn.execute("""
        SELECT r.i, n.nspname, c.relname,
               (SELECT array_agg(a.attname::text ORDER BY k.ord)
                FROM pg_index x CROSS JOIN unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                WHERE x.indrelid = c.oid AND x.indisprimary),
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = r.col
                       AND a.attnum > 0 AND NOT a.attisdropped)
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(rel, col, i)
        JOIN pg_class c ON c.oid = to_regclass(r.rel) AND c.relkind IN ('r', 'p')
        JOIN pg_namespace n ON n.oid = c.relnamespace
        ORDER BY r.i""", (written, [c for _, c in changed])).fetchall()
    return [WatchedColumn(schema, table, changed[i - 1][1], tuple(key or ()))
            for i, schema, table, key, exists in rows if exists]


def _checksums(conn: psycopg.Connection, columns: list[WatchedColumn]) -> dict[WatchedColumn, str]:
    """Per column, the sum of a 64-bit hash of (primary key, value) over all rows (mod 2^64): independent
    of row order, and tied to the rows so that values moved between rows count as a change."""
    by_table: dict[tuple[str, str], list[WatchedColumn]] = {}
    for c in columns:
        by_table.setdefault((c.schema, c.table), []).append(c)
    result: dict[WatchedColumn, str] = {}
    for (schema, table), cols in by_table.items():
        exprs = [sql.SQL("coalesce(sum(hashtextextended(ROW({fields})::text, 0)), 0)").format(
            fields=sql.SQL(", ").join(sql.Identifier(f) for f in (*c.key, c.column))) for c in cols]
        row = conn.execute(sql.SQL("SELECT {} FROM {} AS t").format(
            sql.SQL(", ").join(exprs), sql.Identifier(schema, table))).fetchone()
        for c, total in zip(cols, row):
            result[c] = f"{int(total) % 2**64:016x}"
    return result


# -- comparing -------------------------------------------------------------------------------

def data_differences(before: _Snapshot, after: _Snapshot) -> list[str]:
    diffs = []
    for key in sorted(before.rows.keys() & after.rows.keys()):
        if before.rows[key] != after.rows[key]:
            diffs.append(f"table {key}: {before.rows[key]} rows before UP, {after.rows[key]} after DOWN")
    for column, checksum in before.checksums.items():
        now = after.checksums.get(column)
        if now is not None and now != checksum:
            diffs.append(f"column {column.label}: its values differ after DOWN (content checksum {now} after, "
                         f"{checksum} before UP): UP changed data that DOWN does not restore")
    return diffs


__all__ = ["Rehearsal", "RehearsalSettings", "condition_name", "rehearsal_work_dir",
           "rehearse", "remove_leftover_rehearsals", "schema_differences"]
