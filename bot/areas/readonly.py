"""`readonly create | drop` (approval requests), `readonly rotate | check | repair | list`, the daily
check, and the read-only roles' line in /db status and the digest. Thin: the work is in
handlers/readonly. The connection string goes only to the requester (Slack: ephemeral, else a direct
message; terminal: stdout), straight through Slack's client: every other path scrubs it."""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from handlers import readonly
from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.report import Level, Note, Outcome, Report
from handlers.target import hold, release, scrub, scrub_data

from ..core.approvals.book import ApprovalBook, ApprovalRequest, RequestStatus
from ..core.approvals.identity import identities, slack_identity
from ..core.approvals.settings import expires_at
from ..core.command import Arg, command
from ..core.config import Settings, read_once
from ..core.handover import hand_over, send_privately
from ..core.registry import Applied, Applier, Area, Bot, Invocation, Schedule, StatusLine, approval_settings
from ..core.scheduler import daily_slot, next_daily

log = logging.getLogger("dbops.readonly")


@read_once
def readonly_settings(settings: Settings) -> readonly.ReadonlySettings:
    return readonly.ReadonlySettings.from_dict(settings.section("readonly"))


def _book(state) -> readonly.RoleBook:
    if state is None:
        raise ConfigError("read-only roles are listed in the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    return readonly.RoleBook(state.dsn)


@contextmanager
def _held_secrets() -> Iterator[list[str]]:
    """Every secret a command makes is scrubbed from every log line, message and error while it lives."""
    held: list[str] = []
    try:
        yield held
    finally:
        for secret in held:
            release(secret)


def _sink(held: list[str]):
    def add(secret: str) -> None:
        held.append(secret)
        hold(secret)
    return add


def _schemas(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--schemas needs at least one schema name, e.g. --schemas public,reporting")
    return names


# -- handing over ----------------------------------------------------------------------------
def deliver_in_slack(client, channel: str | None, user: str, delivery: readonly.Delivery) -> bool:
    """Ephemeral in the channel where it was asked, else a direct message (bot/core/handover.py)."""
    return send_privately(client, channel, user, delivery.text(), f"the credentials of {delivery.role}")


def _hand_over(inv: Invocation, report: Report, delivery: readonly.Delivery | None) -> Report:
    if delivery is None:
        return report
    return hand_over(inv, report, delivery.text(), "the connection string", f"run `readonly rotate {delivery.role}`")


# -- requests (create, drop) -----------------------------------------------------------------
def _request(inv: Invocation, action: str, name: str, preview: Report, schemas: list[str] | None) -> Report:
    if inv.store is None:
        raise ConfigError("readonly requests need the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    requester_slack = slack_identity(inv.actor, identities(inv.settings))
    if requester_slack is None:
        raise UsageError(f"the connection string is handed over in Slack: map your login to your Slack user under "
                         f"[identities] in dbops.toml (e.g. {inv.actor.removeprefix('cli:')} = \"U0123456789\"), "
                         "or ask in Slack with /db readonly " + action)
    settings = approval_settings(inv.settings)
    payload = {"action": action, "role": name, "schemas": schemas, "requester_slack": requester_slack}
    sha = request_binding(payload, inv.target_name)
    preview.outcome = Outcome.APPROVAL_REQUIRED
    req = ApprovalBook(inv.store).create(
        kind="readonly", name=f"{action} {name}", target=inv.target_name, sha256=sha, payload=payload,
        analysis={"report": preview.to_dict()}, requires_approval=True, required=max(1, settings.required),
        requested_by=inv.actor, attested_by=None, channel=None, expires_at=expires_at(settings))
    inv.store.audit(inv.actor, "request", "pending", channel=inv.channel, subcommand=f"readonly {req.code}",
                    target=req.target, detail=f"{action} {name}")
    preview.notes.insert(0, Note(Level.INFO, f"request `{req.code}` recorded: an approver (not you) approves it "
                                             "in the ops channel."))
    preview.data |= {"request": req.code, "status": req.status}
    return preview


@command("readonly create", "ask to create a read-only role (one approval; it can read every user's data)",
         Arg("name", "the new role's name, e.g. analytics_ro", required=True),
         Arg("--schemas", "comma-separated schemas it reads (default: [readonly].schemas, public)"),
         who="approvers", long_running=True, lock="readonly")
def readonly_create(inv: Invocation) -> Report:
    schemas = _schemas(inv.args.schemas)
    preview = readonly.plan(inv.target, inv.args.name, readonly_settings(inv.settings), schemas)
    return _request(inv, "create", inv.args.name, preview, schemas)


@command("readonly drop", "ask to drop a read-only role dbops manages (one approval)",
         Arg("name", "the role", required=True), who="approvers", lock="readonly")
def readonly_drop(inv: Invocation) -> Report:
    name = inv.args.name
    managed = _book(inv.store).get(inv.target_name, name)
    if managed is None:
        raise UsageError(f"`{name}` is not a read-only role dbops manages on `{inv.target_name}`; `readonly list` "
                         "shows them")
    preview = Report(title=f"Read-only role {name}", summary=f"drop `{name}` on `{inv.target_name}`: its sessions "
                     "end, its privileges are revoked, anything it owns goes to the bot's role")
    return _request(inv, "drop", name, preview, None)


def request_binding(payload: dict, target: str) -> str:
    """What an approval of a read-only request binds: its action, role, schemas, requester and target."""
    return hashlib.sha256(json.dumps({**payload, "target": target}, sort_keys=True).encode()).hexdigest()


def apply_request(svc: Bot, req: ApprovalRequest, inv: Invocation) -> Applied:
    """The area's work on an approved readonly request (bot/core/applier.py does the rest, under the
    `readonly` job lock, so never beside a `readonly rotate`): the role is made (or dropped), the
    connection string goes to the requester only."""
    action, name = req.payload["action"], req.payload["role"]
    settings = readonly_settings(svc.settings)
    roles = readonly.RoleBook(svc.store.dsn)
    delivery = None
    # What is told of it is told after the secrets it made are released: scrubbed of them here.
    with _held_secrets() as held:
        target = svc.settings.target(req.target)
        inv.ensure_lock()
        inv.ensure_approved()
        try:
            if action == "create":
                report, delivery = readonly.create_role(target, name, settings, roles,
                                                        requested_by=req.requested_by,
                                                        schemas=req.payload.get("schemas"), request_id=req.id,
                                                        on_secret=_sink(held))
            else:
                report = readonly.drop_role(target, name, settings, roles)
        except DbopsError as exc:
            raise DbopsError(scrub(str(exc), held)) from None
        if delivery is not None and not deliver_in_slack(svc.notifier.client, req.channel, req.requester_slack,
                                                         delivery):
            report.notes.append(Note.warning("the connection string could not be sent to the requester: "
                                             f"`readonly rotate {name}`"))
        elif delivery is not None:
            report.notes.append(Note(Level.INFO, "the connection string was sent to the requester only"))
        report = Report.from_dict(scrub_data(report.to_dict(), held))
    detail = "; ".join([report.summary, *(note.text for note in report.notes)])
    return Applied(RequestStatus.APPLIED if report.ok else RequestStatus.FAILED, detail, report)


def recover_request(svc: Bot, req: ApprovalRequest) -> Applied:
    """A readonly request left `applying` by a process that stopped: the role book says how far it got."""
    action, name = req.payload["action"], req.payload["role"]
    managed = readonly.RoleBook(svc.store.dsn).get(req.target, name)
    if action == "create" and managed is not None:
        detail = (f"the bot stopped while creating `{name}`: the role was made, but its connection string was "
                  f"never handed over; `readonly rotate {name}` gives a new one and proves the role again")
    elif action == "create":
        detail = (f"the bot stopped while creating `{name}`: it is not recorded, and nothing was handed over; if "
                  f"the role exists on `{req.target}` anyway, drop it by hand, then ask again")
    elif managed is not None:
        detail = f"the bot stopped while dropping `{name}`, which is still managed: ask again to drop it"
    else:
        detail = (f"the bot stopped while dropping `{name}`; it is no longer managed: check it is gone from "
                  f"`{req.target}`")
    return Applied(RequestStatus.FAILED, detail)


APPLIER = Applier("readonly", lock="readonly", apply=apply_request, recover=recover_request,
                  binds=lambda req: request_binding(req.payload, req.target))


# -- rotate, check, repair, list -------------------------------------------------------------
@command("readonly rotate", "a new password for a read-only role, handed to you only",
         Arg("name", "the role", required=True), who="approvers", long_running=True, lock="readonly")
def readonly_rotate(inv: Invocation) -> Report:
    with _held_secrets() as held:
        report, delivery = readonly.rotate_password(inv.target, inv.args.name, readonly_settings(inv.settings),
                                                    _book(inv.store), on_secret=_sink(held))
        return _hand_over(inv, report, delivery)


@command("readonly check", "re-prove a read-only role: reads everything it should, nothing withheld, no write",
         Arg("name", "the role", required=True), long_running=True, lock="readonly")
def readonly_check(inv: Invocation) -> Report:
    return readonly.check_role(inv.target, inv.args.name, readonly_settings(inv.settings), _book(inv.store))


@command("readonly repair", "re-apply a read-only role's grants, default privileges and limits",
         Arg("name", "the role", required=True), who="approvers", long_running=True, lock="readonly")
def readonly_repair(inv: Invocation) -> Report:
    return readonly.repair_role(inv.target, inv.args.name, readonly_settings(inv.settings), _book(inv.store))


@command("readonly list", "the read-only roles dbops manages (Render's dashboard does not show them)")
def readonly_list(inv: Invocation) -> Report:
    return readonly.list_roles(_book(inv.store), getattr(inv.args, "target", None), prefix=inv.command_prefix)


# -- status, digest, daily check -------------------------------------------------------------
def readonly_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.store is None:
        return "Read-only roles", True, "no state store"
    ok, line = readonly.status_line(readonly.RoleBook(inv.store.dsn), inv.target_name)
    return "Read-only roles", ok, line


def _check_slot(svc: Bot, now: datetime) -> str | None:
    at = readonly_settings(svc.settings).check_time
    return daily_slot(now, at, timezone.utc) if at else None


def _daily_check(svc: Bot) -> None:
    """Every managed role of every target; a failure is posted with its fixes (a migration by a new
    owner, e.g. after a Render credential rotation, escapes default privileges)."""
    roles = readonly.RoleBook(svc.store.dsn)
    settings = readonly_settings(svc.settings)
    for managed in roles.all():
        try:
            report = readonly.check_role(svc.settings.target(managed.target), managed.role_name, settings, roles)
        except DbopsError as exc:
            roles.record_check(managed.target, managed.role_name, False, str(exc))
            svc.post_report(Report(title=f"Read-only role {managed.role_name}", outcome=Outcome.FAILED,
                                   summary=f"the daily check could not run: {exc}"))
            continue
        if not report.ok:
            svc.post_report(report)


def _describe(settings: Settings, now: datetime) -> str:
    at = readonly_settings(settings).check_time
    if at is None:
        return "Read-only role check: off (readonly.check_time = \"off\")."
    return f"Read-only role check daily at {at:%H:%M} UTC; next {next_daily(now, at, timezone.utc):%Y-%m-%d %H:%M %Z}."



AREA = Area(
    "readonly",
    commands=(readonly_create, readonly_drop, readonly_rotate, readonly_check, readonly_repair, readonly_list),
    settings=(("readonly", readonly_settings),),
    status_lines=(StatusLine(readonly_line),),
    schedules=(Schedule("readonly-check", _check_slot, _daily_check, _describe),),
    appliers=(APPLIER,),
)
