"""The migration checklist's moving parts: rehearsal on a copy, apply after a fresh backup, and the
recovery of an apply the bot's process did not finish.

The rehearsal and the apply (psycopg, the embedded server) are imported by the functions that use
them: `dbops migrate check` and `dbops --help` import this module and must stay quick."""
from __future__ import annotations

import logging
import time
from enum import StrEnum

from handlers import backup
from handlers.errors import DbopsError
from handlers.report import Progress
from handlers.target import dsn_secrets

from ...core.approvals.book import ApprovalRequest, RequestStatus
from ...core.registry import Bot, Invocation
from ...core.state.store import JobLock
from ..backup import backup_settings

log = logging.getLogger("dbops.migrate")


class ApplyOutcome(StrEnum):
    """How an apply ended; APPLIED and FAILED are also the request's status and the ledger's result."""

    APPLIED = RequestStatus.APPLIED.value
    FAILED = RequestStatus.FAILED.value
    WITHDRAWN = "withdrawn"  # an approval was withdrawn before any statement ran: the request waits again


def _section(settings, name: str) -> dict:
    return dict(settings.section("migrate").get(name, {}))


def rehearse_on_copy(inv: Invocation, up_sql: str, down_sql: str | None):
    """Rehearses on a copy of the latest verified backup (or a schema-only copy); None when no copy could be made."""
    from handlers.migrations.rehearsal import RehearsalSettings, rehearsal_work_dir
    from handlers.migrations.rehearsal import rehearse as run_rehearsal
    from handlers.postgres import PgBinariesError, VersionError

    settings = RehearsalSettings.from_dict(_section(inv.settings, "rehearsal"))
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
    from handlers.migrations.rehearsal import RehearsalSettings, remove_leftover_rehearsals

    return remove_leftover_rehearsals(RehearsalSettings.from_dict(_section(svc.settings, "rehearsal")).work_dir)


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


def apply_with_backup(svc: Bot, req: ApprovalRequest) -> tuple[ApplyOutcome, str]:
    """Fresh backup, approvals re-checked, UP applied (with its mark), ledger written. The caller holds
    the target's migrate lock. Returns how it ended and what to tell."""
    from handlers.migrations.apply import ApplySettings, apply_migration

    target = svc.settings.target(req.target)
    started = time.monotonic()
    backup_id = None
    try:
        def thread(text: str) -> None:
            if req.message_ts:
                svc.notifier.post(req.channel, text, thread_ts=req.message_ts)

        thread(f":floppy_disk: taking a fresh backup of `{req.target}` before applying `{req.code}`…")
        result = backup.take_backup(target, backup_settings(svc.settings), backup.BackupCatalog(svc.store.dsn),
                                    requested_by=f"migration {req.code}")
        backup_id = result.backup_id
        if result.verify_status in ("failed", "unrestorable"):
            return _ledger(svc, req, backup_id, started, ApplyOutcome.FAILED,
                           f"the pre-apply backup {backup_id} failed verification; nothing was applied")
        thread(f":floppy_disk: backup {backup_id} taken ({result.manifest.total_rows:,} rows); applying UP…")

        def still_approved() -> bool:
            return not req.requires_approval or svc.approvals.book.approvals_count(req.id) >= req.required_approvals

        unmarked = ensure_marks_table(target)
        if unmarked:
            thread(f":warning: could not create dbops.migration_marks in `{req.target}` ({unmarked}): if the bot "
                   "stops while applying, it cannot tell afterwards whether the change landed")
        applied = apply_migration(target, req.payload["up"],
                                  ApplySettings.from_dict(_section(svc.settings, "apply")),
                                  before_first_statement=still_approved,
                                  mark=None if unmarked else (MARK_SQL, (req.id, req.sha256, req.name)))
        if applied.aborted:
            return ApplyOutcome.WITHDRAWN, (f"an approval of `{req.code}` was withdrawn before it was applied; nothing was "
                                 f"applied (backup {backup_id} was taken)")
        if req.message_ts:
            svc.notifier.post_report(req.channel, applied.to_report(), thread_ts=req.message_ts)
        outcome = ApplyOutcome.APPLIED if applied.ok else ApplyOutcome.FAILED
        detail = (f"applied in {applied.duration_s:.1f} s after backup {backup_id}" if applied.ok
                  else f"line {applied.failed_line}: {applied.error}; rolled back" +
                  (f" (already committed: lines {applied.committed_before_failure})"
                   if applied.committed_before_failure else ""))
        return _ledger(svc, req, backup_id, started, outcome, detail)
    except DbopsError as exc:
        return _ledger(svc, req, backup_id, started, ApplyOutcome.FAILED, str(exc))


def ledger_has(svc: Bot, req: ApprovalRequest) -> bool:
    with svc.store.pool.connection() as conn:
        return conn.execute("SELECT 1 FROM dbops.migration_ledger WHERE request_id = %s", (req.id,)).fetchone() is not None


def record_ledger(svc: Bot, req: ApprovalRequest, outcome: ApplyOutcome, detail: str) -> None:
    """A ledger row written after the fact (the process that applied it stopped before writing one)."""
    with svc.store.pool.connection() as conn:
        conn.execute(
            "INSERT INTO dbops.migration_ledger (request_id, name, target, sha256, approvers, result, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (req.id, req.name, req.target, req.sha256, svc.approvals.book.approvers_of(req.id), outcome, detail[:2000]))


def _ledger(svc: Bot, req: ApprovalRequest, backup_id: str | None, started: float, outcome: ApplyOutcome,
            detail: str) -> tuple[ApplyOutcome, str]:
    with svc.store.pool.connection() as conn:
        conn.execute(
            "INSERT INTO dbops.migration_ledger (request_id, name, target, sha256, approvers, backup_id, duration_ms,"
            " result, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (req.id, req.name, req.target, req.sha256, svc.approvals.book.approvers_of(req.id), backup_id,
             int((time.monotonic() - started) * 1000), outcome, detail[:2000]))
    return outcome, detail


def apply_approved(svc: Bot, req: ApprovalRequest) -> None:
    """Runs in the worker pool once a request is approved: fresh backup, apply, ledger, thread report.

    Two locks: the target's migrate lock (one migration job at a time), and this request's own
    apply claim, taken before the request is moved to `applying` and held until it leaves it. A
    request found `applying` whose claim nobody holds was left by a process that died."""
    book = svc.approvals.book
    if req.apply_by == "pipeline":
        svc.approvals.tell(req, f":inbox_tray: `{req.code}` is approved; the deploy pipeline may apply it now "
                                "(`dbops migrate gate`). The bot never applies it.", "bot", "approved-for-pipeline",
                           RequestStatus.APPROVED)
        return
    lock = JobLock(svc.store.dsn, req.target, "migrate")
    if not lock.try_acquire():
        detail = f"another migration job runs on `{req.target}`; nothing was applied: request it again when it is done"
        if book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.FAILED, detail):
            svc.approvals.tell(req, f":x: `{req.code}` failed: {detail}", "bot", "apply", ApplyOutcome.FAILED)
        return
    claim = apply_claim(svc, req)
    try:
        if not claim.try_acquire() or not book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.APPLYING):
            return  # another replica took it, or it was withdrawn
        try:
            outcome, detail = apply_with_backup(svc, req)
        except DbopsError as exc:
            outcome, detail = ApplyOutcome.FAILED, str(exc)
        except Exception as exc:
            log.exception("applying %s failed", req.code)
            outcome, detail = ApplyOutcome.FAILED, f"internal error ({type(exc).__name__}); see the bot's log"
        if outcome is ApplyOutcome.WITHDRAWN:
            book.move(req.id, (RequestStatus.APPLYING,), RequestStatus.PENDING, detail)
            svc.approvals.tell(req, f":leftwards_arrow_with_hook: {detail}", "bot", "apply", outcome)
            return
        book.move(req.id, (RequestStatus.APPLYING,), RequestStatus(outcome), detail)
        icon = ":white_check_mark:" if outcome is ApplyOutcome.APPLIED else ":x:"
        svc.approvals.tell(req, f"{icon} `{req.code}` {outcome}: {detail}", "bot", "apply", outcome)
    finally:
        claim.release()
        lock.release()


def apply_claim(svc: Bot, req: ApprovalRequest) -> JobLock:
    return JobLock(svc.store.dsn, req.target, f"apply-{req.id}")


def recover_applying(svc: Bot) -> list[str]:
    """At start-up: requests left `applying` by a process that stopped. The target says whether the
    change landed (its mark, written in the migration's own transaction); each is reported applied or
    failed in its thread, with the ledger row the crash did not write. Returns lines for the channel."""
    book = svc.approvals.book
    lines = []
    for req in book.with_status(RequestStatus.APPLYING):
        if req.kind != "migration":
            continue
        claim = apply_claim(svc, req)
        if not claim.try_acquire():
            continue  # a live process is applying it right now
        try:
            current = book.get(req.id)
            if current is None or current.status is not RequestStatus.APPLYING:
                continue
            try:
                target = svc.settings.target(req.target)
                did_land = landed(target, req)
            except DbopsError as exc:
                lines.append(f":warning: `{req.code}` was being applied when the bot stopped; it could not be "
                             f"checked now ({exc}) and stays `applying` until the next start")
                continue
            if did_land:
                outcome, detail = ApplyOutcome.APPLIED, ("the bot stopped while applying it, after the change committed: "
                                              "the target holds its mark")
            elif all_in_one_transaction(req.payload.get("up", "")):
                outcome, detail = ApplyOutcome.FAILED, ("the bot stopped while applying it, before its transaction committed: "
                                             "nothing was applied; approve a new request to try again")
            else:
                outcome, detail = ApplyOutcome.FAILED, ("the bot stopped while applying it; its statements that run outside a "
                                             "transaction (e.g. CREATE INDEX CONCURRENTLY) may have been applied: "
                                             f"check `{req.target}` before requesting it again")
            if not book.move(req.id, (RequestStatus.APPLYING,), RequestStatus(outcome), detail):
                continue
            if not ledger_has(svc, req):
                record_ledger(svc, req, outcome, detail)
            icon = ":white_check_mark:" if outcome is ApplyOutcome.APPLIED else ":x:"
            svc.approvals.tell(req, f"{icon} `{req.code}` {outcome} (found at start-up): {detail}", "bot",
                               "recover", outcome)
            lines.append(f"{icon} `{req.code}` {req.name}: {outcome} (found `applying` at start-up)")
        finally:
            claim.release()
    return lines
