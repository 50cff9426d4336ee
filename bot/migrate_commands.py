"""`migrate check | request | gate | status`, and applying an approved migration.

The ops plan's policy: DROP TABLE, DROP COLUMN with data, lossy type changes
and irreversible migrations wait for an approver's reaction; the checklist
(rehearsed, rollback tested, backup taken, downtime estimated) is filled by the
bot itself, and "tested on staging" is an attestation with a name on it.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.migrations import check_migration
from handlers.report import Outcome, Progress, Report, Section, Table

from . import commands
from .jobs import who
from .approvals import APPLIERS, ApprovalBook, ApprovalRequest, ApprovalSettings, expires_at, report_to_dict
from .registry import Arg, Invocation, command

if TYPE_CHECKING:
    from .service import BotService

log = logging.getLogger("dbops.migrate")

MAX_SQL_BYTES = 5 * 1024 * 1024


def read_sql(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if len(data) > MAX_SQL_BYTES:
        raise UsageError(f"the {what} file {path} is larger than {MAX_SQL_BYTES // 1024 // 1024} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not UTF-8 text") from None


def sql_sha256(up_sql: str) -> str:
    return hashlib.sha256(up_sql.encode()).hexdigest()


def _catalog_target(inv: Invocation):
    """The database whose catalog informs the check: the named target, or prod when one is configured."""
    if getattr(inv.args, "target", None) or inv.settings.targets:
        return inv.target
    return None


def analyse(inv: Invocation, up_sql: str, down_sql: str | None, filename: str):
    target = _catalog_target(inv)
    if target is None:
        return check_migration(up_sql, down_sql, conn=None, filename=filename)
    with target.connect() as conn:
        conn.read_only = True
        return check_migration(up_sql, down_sql, conn=conn, filename=filename)


SLACK_FILES_HINT = "In Slack, run `/db migrate request` with no arguments: a form opens to paste the UP and DOWN SQL."


@command("migrate check", "analyse a migration: forbidden operations, locks, expand/contract hazards",
         Arg("up", "the UP migration file", required=True), Arg("--down", "the DOWN migration file"),
         lock="migrate", needs_state=False, where="cli")
def migrate_check(inv: Invocation) -> Report:
    up_sql = read_sql(inv.args.up, "UP")
    down_sql = read_sql(inv.args.down, "DOWN")
    check = analyse(inv, up_sql, down_sql, Path(inv.args.up).name)
    report = check.to_report()
    report.exact_json = check.to_json()
    return report


# -- requests ------------------------------------------------------------------------
def build_request(inv: Invocation, *, up_sql: str, down_sql: str | None, name: str, attested_by: str | None,
                  apply_by: str, channel: str | None) -> tuple[ApprovalRequest, Report]:
    """Check, rehearse, and record a request; returns it with the report shown in the request message."""
    if inv.state is None:
        raise ConfigError("migrate request needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    if not name.strip():
        raise UsageError("give the migration a name (--name), e.g. --name add-notes-archived-flag")
    inv.progress(Progress("analysing the SQL"))
    check = analyse(inv, up_sql, down_sql, name)
    rehearsal = rehearse(inv, up_sql, down_sql)
    if rehearsal is not None:
        for finding in rehearsal.findings():
            check.add_finding(finding)
    report = check.to_report()
    report.title = f"Migration request: {name}"
    report.sections.insert(0, checklist_section(rehearsal, attested_by, apply_by))
    if rehearsal is not None:  # its details; its checklist lines are already in the checklist above
        report.sections[1:1] = rehearsal.to_sections()[1:]
    settings = ApprovalSettings.from_dict(inv.settings.section("approvals"))
    book = ApprovalBook(inv.state)
    req = book.create(
        kind="migration", name=name, target=inv.target_name, sha256=sql_sha256(up_sql),
        payload={"up": up_sql, "down": down_sql, "apply_by": apply_by,
                 "rehearsal": rehearsal.to_dict() if rehearsal is not None else None},
        analysis={"report": report_to_dict(report), "findings": check.to_json()["findings"]},
        requires_approval=check.requires_approval, required=settings.required, requested_by=inv.actor,
        attested_by=attested_by, channel=None, expires_at=expires_at(settings))
    inv.state.audit(inv.actor, "request", "pending" if req.requires_approval else "recorded", channel=channel,
                    subcommand=f"migration {req.code}", target=req.target, detail=name)
    return req, report


def rehearse(inv: Invocation, up_sql: str, down_sql: str | None):
    """The bot's own checklist: a rehearsal on a copy of the latest verified backup (or the schema)."""
    from . import migrate_flow

    return migrate_flow.rehearse(inv, up_sql, down_sql)


def checklist_section(rehearsal, attested_by: str | None, apply_by: str) -> Section:
    lines = []
    if rehearsal is None:
        lines.append(":warning: not rehearsed: no backup or schema copy could be made")
    else:
        lines += rehearsal.checklist_lines()
    lines.append("tested on staging: " + (f"attested by {who(attested_by)}" if attested_by else
                                          ":warning: not attested by the requester"))
    lines.append("backup taken before applying: " + ("the bot takes a fresh backup right before it applies"
                                                     if apply_by == "bot" else
                                                     "the deploy pipeline applies it: take one with `dbops backup` first"))
    return Section("Pre-migration checklist", text="\n".join(f"• {line}" for line in lines))


@command("migrate request", "ask for approval of a migration (rehearses it, fills the checklist, posts the request)",
         Arg("up", "the UP migration file", required=True), Arg("--down", "the DOWN migration file"),
         Arg("--name", "a short name for the migration", required=True),
         Arg("--tested-on-staging", "you attest it was tested on staging with production-like data", flag=True),
         Arg("--apply-by", "who applies it once approved", default="bot", choices=("bot", "pipeline")),
         long_running=True, lock="migrate", where="cli")
def migrate_request(inv: Invocation) -> Report:
    up_sql = read_sql(inv.args.up, "UP")
    down_sql = read_sql(inv.args.down, "DOWN")
    req, report = build_request(inv, up_sql=up_sql, down_sql=down_sql, name=inv.args.name,
                                attested_by=inv.actor if inv.args.tested_on_staging else None,
                                apply_by=inv.args.apply_by, channel=None)
    # The bot posts it to DBOPS_CHANNEL (it holds the Slack token); the terminal needs only the database.
    report.summary = (f"request `{req.code}` recorded; the bot posts it to the ops channel. " + report.summary)
    report.data |= {"request": req.code, "sha256": req.sha256, "status": req.status}
    return report


@command("migrate gate", "exit 0 only if this exact UP SQL is approved, not expired and not yet applied",
         Arg("up", "the UP migration file", required=True),
         Arg("--mark-applied", "record that the pipeline is applying it now (the approval is used up)", flag=True),
         lock="migrate", where="cli")
def migrate_gate(inv: Invocation) -> Report:
    if inv.state is None:
        raise ConfigError("migrate gate needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    sha = sql_sha256(read_sql(inv.args.up, "UP"))
    book = ApprovalBook(inv.state)
    now = datetime.now(timezone.utc)
    book.expire_due(now)
    requests = book.by_sha(sha, inv.target_name)
    usable = [r for r in requests if r.status == "approved" and not r.expired(now)]
    if not usable:
        why = ("no request has this exact SQL (any edit after approval needs a new approval)" if not requests else
               "its request is " + ", ".join(f"`{r.code}` {r.status}" for r in requests[:3]))
        return Report(title="Migration gate", outcome=Outcome.FAILED, summary=f"not approved: {why}",
                      data={"sha256": sha, "approved": False})
    req = usable[0]
    if inv.args.mark_applied and not book.move(req.id, ("approved",), "applied", f"applied by {inv.actor}"):
        return Report(title="Migration gate", outcome=Outcome.FAILED,
                      summary=f"`{req.code}` changed state while checking; run the gate again")
    approvers = ", ".join(book.approvers_of(req.id)) or "no approval needed"
    return Report(title="Migration gate", summary=f"approved: request `{req.code}` ({req.name}) by {approvers}",
                  data={"sha256": sha, "approved": True, "request": req.code})


@command("migrate status", "migration requests: pending, approved, applied, rejected, expired", lock="migrate")
def migrate_status(inv: Invocation) -> Report:
    if inv.state is None:
        raise ConfigError("migrate status needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    book = ApprovalBook(inv.state)
    book.expire_due(datetime.now(timezone.utc))
    rows = [[r.code, r.name, r.target, r.status, r.requested_by, ", ".join(book.approvers_of(r.id)),
             r.created_at, r.expires_at] for r in book.recent() if r.kind == "migration"]
    counts = {}
    for row in rows:
        counts[row[3]] = counts.get(row[3], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no migration requests yet"
    return Report(title="Migration requests", summary=summary, sections=[Section("Requests", table=Table(
        ["id", "name", "target", "status", "requested by", "approved by", "created", "expires"], rows))])


def pending_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.state is None:
        return "Approvals", True, "no state store"
    pending = [r for r in ApprovalBook(inv.state).recent(100) if r.status in ("pending", "approved", "applying")]
    if not pending:
        return "Approvals", True, "no pending requests"
    items = ", ".join(f"`{r.code}` {r.name} ({r.status}, expires {r.expires_at:%Y-%m-%d %H:%M %Z})" for r in pending[:5])
    return "Approvals", True, f"{len(pending)} open: {items}"


commands.STATUS_LINES.append(pending_line)


# -- applying ------------------------------------------------------------------------
def apply_approved(svc: "BotService", req: ApprovalRequest) -> None:
    """Runs in the worker pool once a request is approved: fresh backup, apply, ledger, thread report."""
    from . import migrate_flow

    book = svc.approvals.book
    if req.payload.get("apply_by") == "pipeline":
        svc.approvals.tell(req, f":inbox_tray: `{req.code}` is approved; the deploy pipeline may apply it now "
                                "(`dbops migrate gate`).", "bot", "approved-for-pipeline", "approved")
        return
    if not book.move(req.id, ("approved",), "applying"):
        return  # another replica took it, or it was withdrawn
    svc.approvals.refresh_message(req)
    try:
        outcome, detail = migrate_flow.apply_with_backup(svc, req)
    except DbopsError as exc:
        outcome, detail = "failed", str(exc)
    except Exception as exc:
        log.exception("applying %s failed", req.code)
        outcome, detail = "failed", f"internal error ({type(exc).__name__}); see the bot's log"
    if outcome == "withdrawn":
        book.move(req.id, ("applying",), "pending", detail)
        svc.approvals.tell(req, f":leftwards_arrow_with_hook: {detail}", "bot", "apply", "withdrawn")
        return
    book.move(req.id, ("applying",), outcome, detail)
    icon = ":white_check_mark:" if outcome == "applied" else ":x:"
    svc.approvals.tell(req, f"{icon} `{req.code}` {outcome}: {detail}", "bot", "apply", outcome)


APPLIERS["migration"] = apply_approved
