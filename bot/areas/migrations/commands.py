"""`migrate check | request | gate | status` in the terminal, and the request they record.

The policy: DROP TABLE, DROP COLUMN with data, lossy type changes
and irreversible migrations wait for an approver's reaction; the checklist
(rehearsed, rollback tested, backup taken, downtime estimated) is filled by the
bot itself, and "tested on staging" is an attestation with a name on it.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from handlers import fmt
from handlers.errors import ConfigError, UsageError
from handlers.migrations.model import Finding, Severity
from handlers.report import Level, Note, Outcome, Progress, Report, Section, Table
from handlers.sealing import SEAL_KEY_VARIABLE
from handlers.target import scrub

from ...core import parts
from ...core.applier import changed_since_approval
from ...core.approvals.book import ApprovalBook, ApprovalRequest, RequestStatus, migration_sha256
from ...core.approvals.identity import identities, slack_identity
from ...core.approvals.seal import Sealer
from ...core.approvals.settings import ApprovalSettings, expires_at
from ...core.command import Arg, command
from ...core.jobs import who
from ...core.registry import Invocation
from .flow import rehearse_on_copy
from .history import ef_history
from .naming import request_name

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


def _catalog_target(inv: Invocation):
    """The database whose catalog informs the check: the named target, or prod when one is configured."""
    if getattr(inv.args, "target", None) or inv.settings.targets:
        return inv.target
    return None


def analyse(inv: Invocation, up_sql: str, down_sql: str | None, filename: str, down_filename: str = "DOWN.sql"):
    from handlers.migrations import check_migration  # the parser and the rules: not needed to declare commands

    target = _catalog_target(inv)
    if target is None:
        return check_migration(up_sql, down_sql, conn=None, filename=filename, down_filename=down_filename)
    with target.connect() as conn:
        conn.read_only = True
        return check_migration(up_sql, down_sql, conn=conn, filename=filename, down_filename=down_filename)


SLACK_FILES_HINT = "In Slack, run `/db migrate request` with no arguments: a form opens to paste the UP and DOWN SQL."


@command("migrate check", "analyse a migration: forbidden operations, locks, expand/contract hazards",
         Arg("up", "the UP migration file", required=True), Arg("--down", "the DOWN migration file"),
         lock="migrate", needs_state=False, where="cli")
def migrate_check(inv: Invocation) -> Report:
    up_sql = read_sql(inv.args.up, "UP")
    down_sql = read_sql(inv.args.down, "DOWN")
    check = analyse(inv, up_sql, down_sql, Path(inv.args.up).name,
                    Path(inv.args.down).name if inv.args.down else "DOWN.sql")
    report = check.to_report()
    report.exact_json = check.to_json()
    report.data["path"] = inv.args.up  # as typed, so a terminal or CI log can point at the file
    return report


# -- requests ------------------------------------------------------------------------
def build_request(inv: Invocation, *, up_sql: str, down_sql: str | None, name: str, attested_by: str | None,
                  apply_by: str, channel: str | None, extra: dict | None = None) -> tuple[ApprovalRequest, Report]:
    """Check, rehearse, and record a request; returns it with the report shown in the request message.
    `extra` joins the stored payload (e.g. the index suggestion a request came from, for the digest)."""
    if inv.store is None:
        raise ConfigError("migrate request needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    if not name.strip():
        raise UsageError("give the migration a name (--name), e.g. --name add-notes-archived-flag")
    requester = requester_of(inv)
    if attested_by == inv.actor:
        attested_by = requester
    inv.progress(Progress("analysing the SQL"))
    check = analyse(inv, up_sql, down_sql, name)
    rehearsal = rehearse_on_copy(inv, up_sql, down_sql)
    if rehearsal is not None:
        for finding in rehearsal.findings():
            check.add_finding(finding)
    else:  # fail closed: what could not be tried is not passed
        check.add_finding(NOT_REHEARSED)
    report = check.to_report(title=f"Migration request: {name}")
    report.sections.insert(0, checklist_section(rehearsal, attested_by, apply_by))
    if rehearsal is not None:  # its details; its checklist lines are already in the checklist above
        report.sections[1:1] = rehearsal.to_sections()[1:]
    settings = ApprovalSettings.from_dict(inv.settings.section("approvals"))
    requester_slack = slack_identity(requester, identities(inv.settings))
    required = approvals_needed(settings, check, rehearsal, verified=requester_slack is not None,
                                claimed=requester.startswith("cli:"))
    note = rehearsal_error_note(rehearsal)
    book = ApprovalBook(inv.store)
    req = book.create(
        kind="migration", name=name, target=inv.target_name, sha256=migration_sha256(up_sql, down_sql),
        payload={"up": up_sql, "down": down_sql, "apply_by": apply_by, "requester_slack": requester_slack,
                 "rehearsal": rehearsal.to_dict() if rehearsal is not None else None, **(extra or {})},
        analysis={"report": report.to_dict(), "findings": check.to_json()["findings"]},
        requires_approval=required > 0, required=required, requested_by=requester,
        attested_by=attested_by, channel=None,
        expires_at=expires_at(settings))
    if note:  # in memory only, for whoever posts this request now: error texts can quote the copy's rows
        req.payload["requester_note"] = note
    inv.store.audit(requester, "request", "pending" if req.requires_approval else "recorded", channel=channel,
                    subcommand=f"migration {req.code}", target=req.target, detail=name)
    if req.requires_approval:
        report.outcome = Outcome.APPROVAL_REQUIRED
    return req, report


NOT_REHEARSED = Finding(
    code="not-rehearsed", severity=Severity.FORBIDDEN, line=0, statement="",
    message="not rehearsed: no copy of the database (backup or schema) could be made to try UP and DOWN on",
    hint="take a verified backup (`dbops backup`) or make the target reachable, then request again")


def requester_of(inv: Invocation) -> str:
    """Who asked: the Slack user, or `cli:<login>` (in GitHub Actions the login is $GITHUB_ACTOR, the
    person who triggered the run, rather than the runner's account)."""
    if inv.front_end == "cli" and inv.actor.startswith("cli:") and os.environ.get("GITHUB_ACTOR"):
        return f"cli:{os.environ['GITHUB_ACTOR']}"
    return inv.actor


def approvals_needed(settings: ApprovalSettings, check, rehearsal, verified: bool, claimed: bool = False) -> int:
    """`required` approvals; none only when the team opted in and nothing at all was found in a request
    that was rehearsed, asked by someone Slack vouches for (a terminal login is a claim: `claimed`);
    one more when the requester is unverified (they could approve as someone else)."""
    clean = settings.auto_apply_clean and not claimed and rehearsal is not None and not check.findings
    return (0 if clean else settings.required) + (0 if verified else 1)


def rehearsal_error_note(rehearsal) -> str | None:
    """The failing statement's own error text, for the requester only (the channel sees line, SQLSTATE
    and condition name): it can quote the requester's data. Scrubbed by whoever shows it, <= 300 chars."""
    if rehearsal is None:
        return None
    text = rehearsal.private_error_text()
    if not text:
        return None
    return f"Rehearsal error of your migration (shown only to you): {text[:300]}"


def checklist_section(rehearsal, attested_by: str | None, apply_by: str) -> Section:
    lines = []
    if rehearsal is None:
        lines.append(parts.note_line(Note.warning("not rehearsed: no backup or schema copy could be made")))
    else:
        lines += rehearsal.checklist_lines()
    lines.append("tested on staging: " + (f"attested by {who(attested_by)}" if attested_by else
                                          parts.note_line(Note.warning("not attested by the requester"))))
    lines.append("backup taken before applying: "
                 + ("the bot takes a fresh backup right before it applies" if apply_by == "bot" else
                    "the deploy pipeline applies it: take one with `dbops backup` first"))
    return Section("Pre-migration checklist", text="\n".join(f"• {line}" for line in lines))


@command("migrate request", "ask for approval of a migration (rehearses it, fills the checklist, posts the request)",
         Arg("up", "the UP migration file", required=True), Arg("--down", "the DOWN migration file"),
         Arg("--name", "a short name for the migration", required=True),
         Arg("--tested-on-staging", "you attest it was tested on staging with production-like data", flag=True),
         Arg("--apply-by", "who applies it once approved", default="bot", choices=("bot", "pipeline")),
         long_running=True, lock="rehearsal", where="cli")  # not "migrate": a rehearsal never blocks an apply
def migrate_request(inv: Invocation) -> Report:
    name = request_name(inv.args.name)
    up_sql = read_sql(inv.args.up, "UP")
    down_sql = read_sql(inv.args.down, "DOWN")
    req, report = build_request(inv, up_sql=up_sql, down_sql=down_sql, name=name,
                                attested_by=inv.actor if inv.args.tested_on_staging else None,
                                apply_by=inv.args.apply_by, channel=None)
    # The bot posts it to DBOPS_CHANNEL (it holds the Slack token); the terminal needs only the database.
    needs = (f"it needs {req.required_approvals} approval{'s' if req.required_approvals != 1 else ''}"
             + ("" if req.requester_slack else f" (one more because `{req.requested_by}` is not mapped to a Slack "
                                                "user under [identities]: unverified)")
             if req.requires_approval else "no approval needed (approvals.auto_apply_clean)")
    report.notes.insert(0, Note(Level.INFO, f"request `{req.code}` recorded in the state store; {needs}. A bot "
                                            "running on this state store posts it to its channel for approval "
                                            "within a minute (`migrate status` lists it)."))
    report.data |= {"request": req.code, "sha256": req.sha256, "status": req.status,
                    "required_approvals": req.required_approvals, "verified_requester": bool(req.requester_slack)}
    note = req.payload.get("requester_note")
    if note:  # the terminal is the requester's own: shown here, never in the channel or the job record
        print(scrub(note, inv.settings.secrets()), file=sys.stderr)
    return report


@command("migrate gate", "exit 0 only if this exact UP+DOWN is approved for the pipeline, not expired, not yet applied",
         Arg("up", "the UP migration file", required=True),
         Arg("--down", "the DOWN migration file (if the request had one)"),
         Arg("--mark-applied", "record that the pipeline is applying it now (the approval is used up)", flag=True),
         lock="migrate", where="cli")
def migrate_gate(inv: Invocation) -> Report:
    """Only `--apply-by pipeline` requests pass: a request has exactly one path to the database."""
    if inv.store is None:
        raise ConfigError("migrate gate needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    sha = migration_sha256(read_sql(inv.args.up, "UP"), read_sql(inv.args.down, "DOWN"))
    book = ApprovalBook(inv.store)
    now = datetime.now(timezone.utc)
    book.expire_due(now)
    requests = book.by_sha(sha, inv.target_name)

    def refuse(why: str) -> Report:
        return Report(title="Migration gate", outcome=Outcome.FAILED, summary=why,
                      data={"sha256": sha, "approved": False})

    usable = [r for r in requests if r.status == "approved" and not r.expired(now) and r.apply_by == "pipeline"]
    if not usable:
        if not requests:
            return refuse("not approved: no request has this exact UP and DOWN SQL (give --down when the request "
                          "had one; any edit after approval needs a new approval)")
        applied = [r for r in requests if r.status == "applied"]
        if applied and not any(r.status in ("pending", "approved", "applying") for r in requests):
            r = applied[0]
            return refuse(f"already applied: request `{r.code}` was used up ({r.status_detail or 'applied'}); "
                          "applying it again needs a new request")
        bot_requests = [r for r in requests if r.apply_by != "pipeline" and r.status in ("pending", "approved")]
        if bot_requests:
            return refuse(f"request `{bot_requests[0].code}` is applied by the bot (--apply-by bot), not by the "
                          "pipeline: a request has one path to the database. Request it with --apply-by pipeline")
        return refuse("not approved: its request is " + ", ".join(f"`{r.code}` {r.status}" for r in requests[:3]))
    req = usable[0]
    # What the pipeline runs hashes to what the request binds; what the request holds must too, or it was
    # rewritten in the state store after it was posted (and the approvers may have read the rewrite).
    sealer = Sealer.from_environment()
    unverifiable = sealer.unverifiable(req)
    if unverifiable:  # a check not made here changes nothing in the store
        return refuse(unverifiable)
    changed = (changed_since_approval(req, migration_sha256(req.payload.get("up") or "", req.payload.get("down")))
               or sealer.problem(book, req))
    if changed:
        book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.FAILED, changed)
        inv.store.audit(inv.actor, "gate", "refused", subcommand=f"migration {req.code}", target=req.target,
                        detail=changed[:500])
        return refuse(changed)
    if inv.args.mark_applied and not book.move(req.id, ("approved",), "applied",
                                               f"applied by the pipeline ({inv.actor})"):
        now_req = book.get(req.id)
        if now_req is not None and now_req.status == "applied":
            return refuse(f"already applied: request `{req.code}` was used up ({now_req.status_detail or 'applied'})")
        return refuse(f"`{req.code}` changed state while checking; run the gate again")
    approvers = ", ".join(book.approvers_of(req.id)) or "no approval needed"
    done = " and is marked applied (the approval is used up)" if inv.args.mark_applied else ""
    return Report(title="Migration gate", summary=f"approved: request `{req.code}` ({req.name}) by {approvers}{done}",
                  data={"sha256": sha, "approved": True, "request": req.code})


@command("migrate status", "migration requests: pending, approved, applied, rejected, expired", lock="migrate")
def migrate_status(inv: Invocation) -> Report:
    if inv.store is None:
        raise ConfigError("migrate status needs the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    book = ApprovalBook(inv.store)
    book.expire_due(datetime.now(timezone.utc))
    only = getattr(inv.args, "target", None)
    requests = [r for r in book.recent() if r.kind == "migration" and only in (None, r.target)]
    rows = [[r.code, r.name, r.target, r.status, r.requested_by, ", ".join(book.approvers_of(r.id)) or "-",
             _request_detail(r)] for r in requests]
    counts = {}
    for row in rows:
        counts[row[3]] = counts.get(row[3], 0) + 1
    headers = ["id", "name", "target", "status", "by", "approved by", "detail"]
    ef_sections, ef_data, ef_said = ef_history(inv, book)
    if not rows:  # Slack's form asks for the files; a terminal names them
        ask = "migrate request" if inv.front_end == "slack" else "migrate request UP.sql --down DOWN.sql --name NAME"
        return Report(title="Migration requests",
                      summary=f"No migration requests yet. Ask for one: `{inv.command_prefix} {ask}`"
                      + (f". {ef_said}" if ef_said else ""), sections=ef_sections, data={"requests": []} | ef_data)
    summary = ", ".join([f"{n} {s}" for s, n in sorted(counts.items())] + ([ef_said] if ef_said else []))
    return Report(title="Migration requests", summary=summary, sections=[Section("Requests", table=Table(
        headers, rows)), *ef_sections], data={"requests": [dict(zip(headers, row)) for row in rows]} | ef_data)


def _request_detail(r: ApprovalRequest) -> str:
    """What the status alone does not say: until when an open request can be approved, and why one
    failed or was rejected (the book's own words)."""
    if r.status in ("pending", "approved"):
        return f"expires {fmt.when(r.expires_at)}"
    if r.status == "expired":
        return f"expired {fmt.when(r.expires_at)}"
    return r.status_detail or "-"


def pending_line(inv: Invocation) -> tuple[str, bool, str | Note]:
    if inv.store is None:
        return "Approvals", True, "no state store"
    pending = [r for r in ApprovalBook(inv.store).recent(100) if r.status in ("pending", "approved", "applying")]
    line = "no pending requests"
    if pending:
        line = f"{len(pending)} open: " + ", ".join(
            f"`{r.code}` {r.name} ({r.status}, expires {r.expires_at:%Y-%m-%d %H:%M %Z})" for r in pending[:5])
    if Sealer.from_environment().key is None:  # a warning: the gate works, a store writer could forge a vote
        return "Approvals", True, Note.warning(f"{line}; approvals are not sealed ({SEAL_KEY_VARIABLE} is not set), so "
                                               "whoever can write the state database can forge one")
    return "Approvals", True, line
