"""`restore [BACKUP_ID|latest] --into TARGET`: in the terminal after typing the target's name (or
--confirm TARGET); in Slack as an approval request (one approver, two with --overwrite), applied by
the bot once approved. Works with the state database down, from the backup storage alone."""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from typing import TYPE_CHECKING

from handlers import backup
from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.report import Outcome, Report, Section

from ..core import jobs
from ..core.approvals.book import ApprovalBook, ApprovalRequest, RequestStatus
from ..core.approvals.settings import ApprovalSettings, expires_at
from ..core.command import Arg, command
from ..core.registry import Area, Bot, Invocation
from ..core.standin import recorded_on_standin
from .backup import backup_settings, catalog, from_storage
from .drill import drill_settings
from .render import render_settings

# handlers.restore (psycopg) is imported by the functions that restore: declaring the commands,
# which every `dbops` invocation does, must not load it.
if TYPE_CHECKING:
    from handlers.restore import RestoreOptions

log = logging.getLogger("dbops.restore")

_ARGS = (
    Arg("backup", "a backup id, or latest: the newest verified backup of --from", default="latest"),
    Arg("--into", "the configured target to restore into, e.g. recovery ([targets.recovery] in dbops.toml)"),
    Arg("--from", "whose backups `latest` picks from", default="prod"),
    Arg("--from-url", "an archive made elsewhere (pg_dump -Fc, a Render export), downloaded from this http(s) "
                      "URL: verified as far as it can be, and marked as not from the catalog"),
    Arg("--overwrite", "drop what the target holds first (also needed to restore over the source itself)",
        flag=True),
    Arg("--backup-after", "take a fresh backup of the restored target", flag=True),
)


def _options(inv: Invocation) -> RestoreOptions:
    from handlers.restore import RestoreOptions

    drills = drill_settings(inv.settings)
    return RestoreOptions(backup=inv.args.backup or "latest", source=getattr(inv.args, "from") or "prod",
                          overwrite=inv.args.overwrite, jobs=max(1, drills.jobs), amcheck=drills.amcheck)


def _into(inv: Invocation):
    if not inv.args.into:
        raise UsageError("restore needs --into TARGET: the configured target to restore into, e.g. --into recovery")
    return inv.settings.target(inv.args.into)


def _foreign(inv: Invocation):
    """The archive made elsewhere (`--from-file` / `--from-url`), or None for a backup of the catalog."""
    from handlers.restore import ForeignArchive

    path, url = getattr(inv.args, "from_file", None), getattr(inv.args, "from_url", None)
    if path is None and url is None:
        return None
    if inv.args.backup not in (None, "latest") or inv.args.backup_after:
        raise UsageError("--from-file and --from-url restore that archive: give no backup id, and no --backup-after "
                         "(back the target up once it is in use)")
    limits = render_settings(inv.settings)
    return ForeignArchive.of(path, url, max_bytes=limits.export_max_bytes, max_files=limits.export_max_files)


def run_restore(inv: Invocation) -> Report:
    from handlers.restore import restore_backup, restore_foreign

    into = _into(inv)
    foreign = _foreign(inv)
    if foreign is not None:
        drills = drill_settings(inv.settings)
        inv.ensure_lock()
        return restore_foreign(foreign, into, _options(inv), backup_settings(inv.settings), drills.smoke_queries,
                               drills.smoke_timeout_s, progress=inv.progress, cancel=inv.cancel)
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


@command("restore", "restore a backup into a configured target, and prove it against the backup's manifest",
         *_ARGS, Arg("--from-file", "an archive made elsewhere on this machine (a pg_dump -Fc file, a directory "
                                    "dump, a Render export): verified as far as it can be, not from the catalog"),
         Arg("--confirm", "the target's name again, so no question is asked"),
         long_running=True, lock="restore", takes_target=False, who="approvers", where="cli")
@from_storage
def restore_cli(inv: Invocation) -> Report:
    _into(inv)  # an unknown target is named before the question
    _foreign(inv)  # and a wrong combination of arguments
    confirm_in_terminal(inv.args.into, inv.args.confirm)
    return run_restore(inv)


# -- Slack: an approval request, applied once approved ---------------------------------------
@command("restore", "ask to restore a backup into a configured target (approvers; two with --overwrite)",
         *_ARGS, long_running=True, lock="restore", takes_target=False, who="approvers", where="slack")
@recorded_on_standin
def restore_slack(inv: Invocation) -> Report:
    into = _into(inv)
    foreign = _foreign(inv)
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
    if foreign is not None:
        words["from_url"] = foreign.url  # in the state store only; every message shows foreign.label
    settings = ApprovalSettings.from_dict(inv.settings.section("approvals"))
    what = foreign.label if foreign is not None else options.backup
    name = f"{what} into {into.name}" + (" (overwrite)" if options.overwrite else "")
    whose = " (made elsewhere: not from the catalog)" if foreign is not None else f" of `{options.source}`"
    how = ("The bot downloads the archive, reads its table of contents and all of it, restores it with pg_restore, "
           "then checks the restored database (the archive's tables there, constraints, indexes, pg_amcheck, the "
           "smoke queries): it has no manifest to compare rows with." if foreign is not None else
           "The bot restores the backup with pg_restore, then proves it against the backup's manifest "
           "(rows, checksums, schema, sequences, constraints, pg_amcheck) and posts the report.")
    report = Report(title=f"Restore request: {name}",
                    summary=f"Restore {what}{whose} into `{into.name}`"
                            f"{', dropping what it holds' if options.overwrite else ''}: needs {required} "
                            f"approval{'s' if required > 1 else ''} (react on the request message).",
                    outcome=Outcome.APPROVAL_REQUIRED,
                    sections=[Section("What happens once approved", text=how)])
    req = ApprovalBook(store).create(
        kind="restore", name=name, target=into.name,
        sha256=hashlib.sha256(repr(sorted(words.items())).encode()).hexdigest(), payload=words,
        analysis={"report": report.to_dict()}, requires_approval=True, required=required,
        requested_by=inv.actor, attested_by=None, channel=None, expires_at=expires_at(settings))
    store.audit(inv.actor, "request", "pending", channel=inv.channel, subcommand=f"restore {req.code}",
                    target=into.name, detail=name)
    if inv.store is None:
        report.summary += (" The state database is unreachable: this request is recorded on a stand-in, and is "
                           "void if the state database answers before it is approved.")
    report.data = {"request": req.code, "required_approvals": required, **words,
                   **({"from_url": foreign.label} if foreign is not None else {})}
    return report


def apply_approved(svc: Bot, req: ApprovalRequest) -> None:
    """In the worker pool once approved: runs the restore as the requester asked and tells the thread."""
    approvals = svc.approvals  # with the state database down, the stand-in's: where the votes were counted
    book = approvals.book
    if not book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.APPLYING):
        return  # another replica took it, or it was withdrawn
    p = req.payload
    args = argparse.Namespace(backup=p["backup"], into=p["into"], overwrite=bool(p["overwrite"]),
                              backup_after=bool(p["backup_after"]), target=None, format="text", confirm=p["into"],
                              from_url=p.get("from_url"), from_file=None)
    setattr(args, "from", p["from"])
    inv = Invocation(command=restore_slack, args=args, settings=svc.settings, actor=req.requested_by,
                     registry=svc.registry, channel=req.channel, store=svc.store, front_end="slack")
    try:
        report = jobs.run(inv, approvals.store, work=run_restore)
        outcome, detail = (RequestStatus.APPLIED if report.ok else RequestStatus.FAILED), report.summary
    except DbopsError as exc:
        report, outcome, detail = None, RequestStatus.FAILED, str(exc)
    except Exception as exc:
        log.exception("restore %s failed", req.code)
        report, outcome, detail = None, RequestStatus.FAILED, f"internal error ({type(exc).__name__}); see the bot's log"
    book.move(req.id, (RequestStatus.APPLYING,), outcome, detail[:500])
    icon = ":white_check_mark:" if outcome is RequestStatus.APPLIED else ":x:"
    approvals.tell(req, f"{icon} `{req.code}` {outcome}: {detail}", "bot", "apply", outcome)
    if report is not None:
        svc.post_report(report, req.channel)



AREA = Area("restore", commands=(restore_cli, restore_slack), appliers={"restore": apply_approved})
