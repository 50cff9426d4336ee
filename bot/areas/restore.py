"""`restore [BACKUP_ID|latest] --into TARGET`: in the terminal after typing the target's name (or
--confirm TARGET); in Slack as an approval request (one approver, two with --overwrite), applied by
the bot once approved. Works with the state database down, from the backup storage alone."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
import sys
from typing import TYPE_CHECKING

from handlers import backup
from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.report import Outcome, Report, Section

from ..core.approvals.book import ApprovalBook, ApprovalRequest, RequestStatus
from ..core.approvals.settings import expires_at
from ..core.command import Arg, command
from ..core.registry import Applied, Applier, Area, Bot, Invocation, StatusLine, approval_settings
from .backup import backup_settings, catalog, from_storage
from .drill import drill_settings
from .indexes import index_settings

# handlers.restore (psycopg) is imported by the functions that restore: declaring the commands,
# which every `dbops` invocation does, must not load it.
if TYPE_CHECKING:
    from handlers.restore import RestoreOptions

_ARGS = (
    Arg("backup", "a backup id, or latest: the newest verified backup of --from", default="latest"),
    Arg("--into", "the configured target to restore into, e.g. recovery ([targets.recovery] in dbops.toml)",
        required=True),
    Arg("--from", "whose backups `latest` picks from", default="prod"),
    Arg("--overwrite", "drop what the target holds first (also needed to restore over the source itself)",
        flag=True),
    Arg("--backup-after", "take a fresh backup of the restored target", flag=True),
)


def _options(inv: Invocation) -> RestoreOptions:
    from handlers.restore import RestoreOptions

    drills = drill_settings(inv.settings)
    # Both are shown in the request message and the report: only the shapes they can have get there.
    if not re.fullmatch(r"latest|[abAB]\d+", inv.args.backup or "latest"):
        raise UsageError("give a backup id (e.g. b042) or `latest`; `backup list` shows the ids")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", getattr(inv.args, "from") or "prod"):
        raise UsageError("--from names a target: letters, digits, `.`, `_` or `-`")
    expected = index_settings(inv.settings).expected
    return RestoreOptions(backup=inv.args.backup or "latest", source=getattr(inv.args, "from") or "prod",
                          overwrite=inv.args.overwrite, jobs=max(1, drills.jobs), amcheck=drills.amcheck,
                          expected_indexes=tuple(expected) if expected is not None else None,
                          smoke_queries=tuple(drills.smoke_queries), smoke_timeout_s=drills.smoke_timeout_s)


def run_restore(inv: Invocation) -> Report:
    from handlers.restore import restore_backup

    into = inv.settings.target(inv.args.into)
    options = _options(inv)
    source = inv.settings.targets.get(options.source)
    settings = backup_settings(inv.settings)
    found = catalog(inv)
    if inv.args.backup_after and inv.store is None:
        raise UsageError("--backup-after records the new backup in the state store, which is unreachable: "
                         "restore without it, then `backup --target " + into.name + "` once DBOPS_STATE_URL works")
    if not getattr(found, "from_storage", False):
        try:
            backup.sync_catalog(found, settings, adopt=False)
        except backup.StorageError:
            pass  # the catalog alone then; fetching the archive says what is wrong with the storage

    def fresh_backup() -> Report:
        return backup.take_backup(into, settings, backup.BackupCatalog(inv.store.dsn), requested_by=inv.actor,
                                  progress=inv.progress, cancel=inv.cancel).to_report()

    inv.ensure_lock()
    inv.ensure_approved()
    return restore_backup(found, settings, options, into, source, progress=inv.progress, cancel=inv.cancel,
                          backup_after=fresh_backup if inv.args.backup_after else None)


def confirm_in_terminal(into: str, given: str | None, stdin=None) -> None:
    """The target's name, typed: given with --confirm, or asked for on a terminal."""
    from handlers.restore import RestoreRefused

    if given is not None:
        if given != into:
            raise RestoreRefused(f"--confirm {given!r} does not name the target `{into}`; nothing was changed")
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise UsageError(f"restoring into `{into}` replaces what it holds: pass --confirm {into} "
                         "(no terminal to ask on)")
    sys.stderr.write(f"This restores a backup into `{into}`. Type the target's name to go on: ")
    sys.stderr.flush()
    if stdin.readline().strip() != into:
        raise RestoreRefused(f"the name typed is not `{into}`; nothing was changed")


@from_storage
@command("restore", "restore a backup into a configured target, and prove it against the backup's manifest",
         *_ARGS, Arg("--confirm", "the target's name again, so no question is asked"),
         long_running=True, lock="restore", takes_target=False, who="approvers", where="cli")
def restore_cli(inv: Invocation) -> Report:
    inv.settings.target(inv.args.into)  # an unknown target is named before the question
    confirm_in_terminal(inv.args.into, inv.args.confirm)
    return run_restore(inv)


# -- Slack: an approval request, applied once approved ---------------------------------------
@command("restore", "ask to restore a backup into a configured target (approvers; two with --overwrite)",
         *_ARGS, long_running=True, lock="restore", takes_target=False, who="approvers", where="slack",
         recorded_on_standin=True)
def restore_slack(inv: Invocation) -> Report:
    into = inv.settings.target(inv.args.into)
    store = inv.requests or inv.store
    if store is None:
        raise ConfigError("restore requests in Slack wait for approvals in the state store, which is unreachable: "
                          "run `dbops restore` in a terminal")
    if inv.store is None and inv.args.backup_after:
        raise UsageError("--backup-after records the new backup in the state store, which is unreachable: "
                         "ask without it, and back up the restored target once the state store answers")
    options = _options(inv)
    required = 2 if options.overwrite else 1
    words = {"backup": options.backup, "into": into.name, "from": options.source, "overwrite": options.overwrite,
             "backup_after": bool(inv.args.backup_after)}
    settings = approval_settings(inv.settings)
    name = f"{options.backup} into {into.name}" + (" (overwrite)" if options.overwrite else "")
    report = Report(title=f"Restore request: {name}",
                    summary=f"Restore {options.backup} of `{options.source}` into `{into.name}`"
                            f"{', dropping what it holds' if options.overwrite else ''}: needs {required} "
                            f"approval{'s' if required > 1 else ''} (react on the request message).",
                    outcome=Outcome.APPROVAL_REQUIRED,
                    sections=[Section("What happens once approved", text=(
                        "The bot restores the backup with pg_restore, then proves it against the backup's manifest "
                        f"with the checks every drill makes ({verification_words()}) and posts the report."))])
    req = ApprovalBook(store).create(
        kind="restore", name=name, target=into.name,
        sha256=restore_binding(words), payload=words,
        analysis={"report": report.to_dict()}, requires_approval=True, required=required,
        requested_by=inv.actor, attested_by=None, channel=None, expires_at=expires_at(settings))
    store.audit(inv.actor, "request", "pending", channel=inv.channel, subcommand=f"restore {req.code}",
                    target=into.name, detail=name)
    if inv.store is None:
        report.summary += (" The state database is unreachable: this request is recorded on a stand-in, and is "
                           "void if the state database answers before it is approved.")
    report.data = {"request": req.code, "required_approvals": required, **words}
    return report


def verification_words() -> str:
    """The verification plan's checks as a restore runs them, in words ("copy major, table data, ...")."""
    from handlers.verification.plan import RESTORE, plan_for

    return ", ".join(p.name for p in plan_for(RESTORE))


def restore_binding(payload: dict) -> str:
    """What an approval of a restore binds: every word of the request."""
    return hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()


def apply_restore(svc: Bot, req: ApprovalRequest, inv: Invocation) -> Applied:
    """The area's work on an approved restore (bot/core/applier.py does the rest): the restore, as the
    requester asked."""
    p = req.payload
    args = argparse.Namespace(backup=p["backup"], into=p["into"], overwrite=bool(p["overwrite"]),
                              backup_after=bool(p["backup_after"]), target=req.target, format="text",
                              confirm=p["into"])
    setattr(args, "from", p["from"])
    report = run_restore(dataclasses.replace(inv, args=args))
    return Applied(RequestStatus.APPLIED if report.ok else RequestStatus.FAILED, report.summary, report)


def recover_restore(svc: Bot, req: ApprovalRequest) -> Applied:
    """A restore left `applying` by a process that stopped: whatever it did to the target is unfinished,
    and the target says so (handlers/restore/marks.py) until a restore into it finishes."""
    into = req.payload.get("into", req.target)
    return Applied(RequestStatus.FAILED, f"the bot stopped while restoring into `{into}`: it may hold a partial "
                                         "restore, marked incomplete until a restore into it finishes (`status` "
                                         f"shows it). Do not point the application at it; ask again with --overwrite")


def incomplete_restore_line(inv: Invocation) -> tuple[str, bool, str] | None:
    """A target holding a restore that did not finish (the process stopped, or it failed) is a problem;
    otherwise nothing is said (an unreachable target is said by the targets' table)."""
    from handlers.restore import restore_mark

    try:
        mark = restore_mark(inv.target)
    except DbopsError:
        return None
    if mark is None:
        return None
    return "Restore", False, (f"`{inv.target_name}` holds an unfinished restore ({mark}): do not point the "
                              f"application at it; restore into it again with --overwrite")


APPLIER = Applier("restore", lock="restore", per_target=False, apply=apply_restore, recover=recover_restore,
                  binds=lambda req: restore_binding(req.payload))
AREA = Area("restore", commands=(restore_cli, restore_slack), status_lines=(StatusLine(incomplete_restore_line),),
            appliers=(APPLIER,))
