"""The migration checklist's moving parts: rehearsal on a copy, apply after a fresh backup, and the
recovery of an apply the bot's process did not finish.

The rehearsal and the apply (psycopg, the embedded server) are imported by the functions that use
them: `dbops migrate check` and `dbops --help` import this module and must stay quick."""
from __future__ import annotations

import logging
import time

from handlers import backup
from handlers.errors import DbopsError
from handlers.report import Note, Progress
from handlers.target import dsn_secrets

from ...core import parts
from ...core.applier import RequestChanged
from ...core.approvals.book import ApprovalRequest, RequestStatus, migration_sha256
from ...core.config import Settings, read_once
from ...core.registry import Applied, Applier, Bot, Invocation
from ..backup import backup_settings

log = logging.getLogger("dbops.migrate")


def _section(settings, name: str) -> dict:
    return dict(settings.section("migrate").get(name, {}))


@read_once
def rehearsal_settings(settings: Settings):
    from handlers.migrations.rehearsal import RehearsalSettings

    return RehearsalSettings.from_dict(_section(settings, "rehearsal"))


@read_once
def apply_settings(settings: Settings):
    from handlers.migrations.apply import ApplySettings

    return ApplySettings.from_dict(_section(settings, "apply"))


def rehearse_on_copy(inv: Invocation, up_sql: str, down_sql: str | None):
    """Rehearses on a copy of the latest verified backup (or a schema-only copy); None when no copy could be made."""
    from handlers.migrations.rehearsal import rehearsal_work_dir
    from handlers.migrations.rehearsal import rehearse as run_rehearsal
    from handlers.postgres import PgBinariesError, VersionError

    settings = rehearsal_settings(inv.settings)
    bsettings = backup_settings(inv.settings)
    record = None
    if settings.source == "backup" and inv.store is not None:
        record = backup.latest_verified(backup.BackupCatalog(inv.store.dsn), inv.target_name)
    try:
        with rehearsal_work_dir(settings) as work:
            archive = manifest = None
            if record is not None:
                inv.progress(Progress(f"fetching backup {record.id} for the rehearsal"))
                archive, found = backup.materialize(backup.BackupCatalog(inv.store.dsn), bsettings, record.id, work)
                manifest = found.to_dict()
            inv.progress(Progress("rehearsing UP and DOWN on a temporary copy"))
            return run_rehearsal(up_sql, down_sql, archive=archive, manifest=manifest,
                                 backup_id=record.id if record else None,
                                 backup_started_at=record.started_at if record else None,
                                 schema_source=None if record else inv.target, settings=settings,
                                 progress=inv.progress, cancel=inv.cancel, target=inv.target)
    except (PgBinariesError, VersionError):
        raise  # the target's PostgreSQL major cannot be run here: said with the install command, nothing recorded
    except DbopsError as exc:
        log.warning("rehearsal could not run: %s", exc)
        return None


def leftover_rehearsals_at_startup(svc: Bot) -> list[str]:
    """A killed rehearsal leaves a server holding a copy of production and its archive: remove both."""
    from handlers.migrations.rehearsal import remove_leftover_rehearsals

    return remove_leftover_rehearsals(rehearsal_settings(svc.settings).work_dir)


# -- did it land? ----------------------------------------------------------------------
# The apply writes a row here, in the target, inside the migration's own (last) transaction: the
# row exists exactly when the change was committed. The target need not be the state database, so
# only the target itself can answer "did it land" after a crash. Schema `dbops` is the bot's own in
# every database it touches (backups' manifests and drills leave it out).
MARKS_DDL = ("CREATE SCHEMA IF NOT EXISTS dbops",
             "CREATE TABLE IF NOT EXISTS dbops.migration_marks (request_id bigint NOT NULL, sha256 text NOT NULL,"
             " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (request_id, sha256))")
MARK_SQL = "INSERT INTO dbops.migration_marks (request_id, sha256, name) VALUES (%s, %s, %s)"


def ensure_marks_table(target) -> str | None:
    """Creates the marks table when absent; returns why it could not (the apply goes on without a mark)."""
    import psycopg

    from handlers.migrations.apply import error_text

    try:
        with target.connect(autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('dbops.migration_marks')").fetchone()[0] is None:
                for statement in MARKS_DDL:
                    conn.execute(statement)
        return None
    except psycopg.Error as exc:
        return error_text(exc, dsn_secrets(target.dsn))


def landed(target, req: ApprovalRequest) -> bool:
    """Whether the target holds this request's mark. Raises TargetUnreachable."""
    with target.connect(autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('dbops.migration_marks')").fetchone()[0] is None:
            return False
        return conn.execute("SELECT 1 FROM dbops.migration_marks WHERE request_id = %s AND sha256 = %s",
                            (req.id, req.sha256)).fetchone() is not None


def all_in_one_transaction(up_sql: str) -> bool:
    """True when UP commits as one transaction: without its mark nothing of it was applied."""
    from handlers.migrations.apply import plan_batches
    from handlers.migrations.parsing import parse_statements

    try:
        batches = plan_batches(parse_statements(up_sql, "UP.sql"))
    except DbopsError:
        return False
    return all(b.in_transaction for b in batches)  # batches in a transaction are only cut by those not


def apply_with_backup(svc: Bot, req: ApprovalRequest, inv: Invocation) -> Applied:
    """The area's work on an approved migration (bot/core/applier.py does the rest): a fresh backup,
    then right before the first statement the lock, the SHA-256 of what is about to run and the
    approvals re-checked, UP applied (with its mark), the ledger written."""
    from handlers.migrations.apply import apply_migration

    target = svc.settings.target(req.target)
    started = time.monotonic()
    backup_id = None
    up = req.payload["up"]
    try:
        def thread(text: str) -> None:
            if req.message_ts:
                svc.notifier.post(req.channel, text, thread_ts=req.message_ts)

        thread(f":floppy_disk: taking a fresh backup of `{req.target}` before applying `{req.code}`…")
        result = backup.take_backup(target, backup_settings(svc.settings), backup.BackupCatalog(svc.store.dsn),
                                    requested_by=f"migration {req.code}")
        backup_id = result.backup_id
        if result.verify_status in ("failed", "unrestorable"):
            return _ledger(svc, req, backup_id, started, RequestStatus.FAILED,
                           f"the pre-apply backup {backup_id} failed verification; nothing was applied")
        thread(f":floppy_disk: backup {backup_id} taken ({result.manifest.total_rows:,} rows); applying UP…")

        def before_first_statement() -> bool:
            inv.ensure_lock()
            inv.ensure_approved()  # UP (`up`: what runs) and DOWN hashed again, against what the approval binds
            return not req.requires_approval or svc.approvals.book.approvals_count(req.id) >= req.required_approvals

        unmarked = ensure_marks_table(target)
        if unmarked:
            thread(parts.note_line(Note.warning(
                f"could not create dbops.migration_marks in `{req.target}` ({unmarked}): if the bot stops while "
                "applying, it cannot tell afterwards whether the change landed")))
        applied = apply_migration(target, up, apply_settings(svc.settings),
                                  before_first_statement=before_first_statement,
                                  mark=None if unmarked else (MARK_SQL, (req.id, req.sha256, req.name)))
        if applied.aborted:
            return Applied(RequestStatus.PENDING, f"an approval was withdrawn before it was applied; nothing was "
                                                  f"applied (backup {backup_id} was taken)")
        status = RequestStatus.APPLIED if applied.ok else RequestStatus.FAILED
        detail = (f"applied in {applied.duration_s:.1f} s after backup {backup_id}" if applied.ok
                  else f"line {applied.failed_line}: {applied.error}; rolled back" +
                  (f" (already committed: lines {applied.committed_before_failure})"
                   if applied.committed_before_failure else ""))
        found = _ledger(svc, req, backup_id, started, status, detail)
        found.report = applied.to_report()
        return found
    except RequestChanged as exc:
        _ledger(svc, req, backup_id, started, RequestStatus.FAILED, str(exc))
        raise
    except DbopsError as exc:
        return _ledger(svc, req, backup_id, started, RequestStatus.FAILED, str(exc))


def ledger_has(svc: Bot, req: ApprovalRequest) -> bool:
    with svc.store.pool.connection() as conn:
        return conn.execute("SELECT 1 FROM dbops.migration_ledger WHERE request_id = %s",
                            (req.id,)).fetchone() is not None


def _ledger(svc: Bot, req: ApprovalRequest, backup_id: str | None, started: float | None, status: RequestStatus,
            detail: str) -> Applied:
    """The ledger row of an apply that ran to its end (`started` None: one a stopped process did not write)."""
    with svc.store.pool.connection() as conn:
        conn.execute(
            "INSERT INTO dbops.migration_ledger (request_id, name, target, sha256, approvers, backup_id, duration_ms,"
            " result, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (req.id, req.name, req.target, req.sha256, svc.approvals.book.approvers_of(req.id), backup_id,
             None if started is None else int((time.monotonic() - started) * 1000), status, detail[:2000]))
    return Applied(status, detail)


def recover_migration(svc: Bot, req: ApprovalRequest) -> Applied:
    """A migration left `applying` by a process that stopped: the target says whether the change landed
    (its mark, written in the migration's own transaction), and the ledger gets the row the crash did
    not write. Raises DbopsError (TargetUnreachable) when the target cannot tell now."""
    did_land = landed(svc.settings.target(req.target), req)
    if did_land:
        found = Applied(RequestStatus.APPLIED, "the bot stopped while applying it, after the change committed: "
                                               "the target holds its mark")
    elif all_in_one_transaction(req.payload.get("up", "")):
        found = Applied(RequestStatus.FAILED, "the bot stopped while applying it, before its transaction committed: "
                                              "nothing was applied; approve a new request to try again")
    else:
        found = Applied(RequestStatus.FAILED, "the bot stopped while applying it; its statements that run outside a "
                                              "transaction (e.g. CREATE INDEX CONCURRENTLY) may have been applied: "
                                              f"check `{req.target}` before requesting it again")
    if not ledger_has(svc, req):
        _ledger(svc, req, None, None, found.status, found.detail)
    return found


APPLIER = Applier("migration", lock="migrate", apply=apply_with_backup, recover=recover_migration,
                  binds=lambda req: migration_sha256(req.payload.get("up") or "", req.payload.get("down")))
