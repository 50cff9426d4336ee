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
from handlers.report import Note, Outcome, Report, Section

from ..core.approvals.book import ApprovalBook, ApprovalRequest, RequestStatus
from ..core.approvals.settings import expires_at
from ..core.command import Arg, command
from ..core.config import DEFAULT_TARGET
from ..core.handover import hand_over
from ..core.registry import Applied, Applier, Area, Bot, Invocation, StatusLine, approval_settings
from .backup import backup_settings, catalog, from_storage
from .drill import drill_settings
from .indexes import index_settings
from .render import render_settings

# handlers.restore (psycopg) is imported by the functions that restore: declaring the commands,
# which every `dbops` invocation does, must not load it.
if TYPE_CHECKING:
    from handlers.restore import RestoreOptions

_ARGS = (
    Arg("backup", "a backup id, or latest: the newest verified backup of --from", default="latest"),
    Arg("--into", "the configured target to restore into, e.g. recovery ([targets.recovery] in dbops.toml)"),
    Arg("--from", "whose backups `latest` picks from", default="prod"),
    Arg("--from-url", "an archive made elsewhere (pg_dump -Fc, a Render export), downloaded from this http(s) "
                      "URL: verified as far as it can be, and marked as not from the catalog"),
    Arg("--at", "with --from render: Render's point-in-time recovery of production to this moment (e.g. "
                "'2026-12-07 10:41', UTC unless it says otherwise) into a new Render instance; production is "
                "never touched"),
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


def _point_in_time(inv: Invocation):
    """The moment of a point-in-time restore (`--at T --from render`), or None for a restore into a target."""
    at = getattr(inv.args, "at", None)
    if at is None:
        if getattr(inv.args, "from") == "render":
            raise UsageError("--from render restores Render's point-in-time recovery: say to when with --at, e.g. "
                             "--at '2026-12-07 10:41'")
        return None
    from handlers.render.pitr import parse_moment

    if getattr(inv.args, "from") != "render":
        raise UsageError("--at restores Render's point-in-time recovery: add --from render")
    if inv.args.into or getattr(inv.args, "from_file", None) or getattr(inv.args, "from_url", None) \
            or inv.args.backup not in (None, "latest") or inv.args.overwrite or inv.args.backup_after:
        raise UsageError("--at --from render restores into a new Render instance (production is never touched): "
                         "give no backup id, --into, --from-file, --from-url, --overwrite or --backup-after")
    return parse_moment(at)


def run_point_in_time(inv: Invocation, at) -> Report:
    from handlers import render
    from handlers.render.client import parse_time
    from handlers.render.pitr import Reference, restore_point_in_time
    from handlers.target import hold, release

    settings = render_settings(inv.settings)
    postgres_id = render.postgres_id_for(DEFAULT_TARGET, inv.settings.target_options.get(DEFAULT_TARGET),
                                         DEFAULT_TARGET)
    reference = None
    try:
        found = catalog(inv)
        for record in found.list(DEFAULT_TARGET):
            manifest = found.manifest(record.id) if record.usable else None
            if manifest is not None and parse_time(manifest.created_at) <= at:
                reference = Reference(record.id, manifest.created_at, manifest.to_dict())
                break
    except (ConfigError, backup.StorageError):
        pass  # verified for soundness only; the report says there was no backup to compare with
    drills = drill_settings(inv.settings)
    inv.ensure_lock()
    with settings.client() as client:
        done = restore_point_in_time(client, postgres_id, at, settings, source_name=DEFAULT_TARGET,
                                     reference=reference, expected_indexes=index_settings(inv.settings).expected,
                                     amcheck=drills.amcheck, jobs=max(1, drills.jobs),
                                     smoke_queries=drills.smoke_queries, smoke_timeout_s=drills.smoke_timeout_s,
                                     progress=inv.progress,
                                     cancel=inv.cancel)
    if done.connection is None:
        return done.report
    for secret in done.secrets:
        hold(secret)  # scrubbed from every log line and message while it is handed over
    try:
        return hand_over(inv, done.report, done.handover_text(), "its connection string",
                         "copy it from the Render Dashboard (the instance > Connect)")
    finally:
        for secret in done.secrets:
            release(secret)


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

    at = _point_in_time(inv)
    if at is not None:
        return run_point_in_time(inv, at)
    into = _into(inv)
    foreign = _foreign(inv)
    if foreign is not None:
        inv.ensure_lock()
        inv.ensure_approved()
        return restore_foreign(foreign, into, _options(inv), backup_settings(inv.settings), progress=inv.progress,
                               cancel=inv.cancel)
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


_ASK = "This restores a backup into `{into}`. Type the target's name to go on: "


def confirm_in_terminal(into: str, given: str | None, stdin=None, question: str = _ASK) -> None:
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
    sys.stderr.write(question.format(into=into))
    sys.stderr.flush()
    if stdin.readline().strip() != into:
        raise RestoreRefused(f"the name typed is not `{into}`; nothing was changed")


@from_storage
@command("restore", "restore a backup into a configured target, and prove it against the backup's manifest",
         *_ARGS, Arg("--from-file", "an archive made elsewhere on this machine (a pg_dump -Fc file, a directory "
                                    "dump, a Render export): verified as far as it can be, not from the catalog"),
         Arg("--confirm", "the target's name again, so no question is asked"),
         long_running=True, lock="restore", takes_target=False, who="approvers", where="cli")
def restore_cli(inv: Invocation) -> Report:
    if _point_in_time(inv) is not None:
        confirm_in_terminal("render", inv.args.confirm, question=(
            "This asks Render for a new, billed instance (a copy of production at --at). Type `{into}` to go on: "))
        return run_restore(inv)
    _into(inv)  # an unknown target is named before the question
    _foreign(inv)  # and a wrong combination of arguments
    confirm_in_terminal(inv.args.into, inv.args.confirm)
    return run_restore(inv)


# -- Slack: an approval request, applied once approved ---------------------------------------
@command("restore", "ask to restore a backup into a configured target (approvers; two with --overwrite)",
         *_ARGS, long_running=True, lock="restore", takes_target=False, who="approvers", where="slack",
         recorded_on_standin=True)
def restore_slack(inv: Invocation) -> Report:
    at = _point_in_time(inv)
    if at is not None:
        return _request_point_in_time(inv, at)
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
    settings = approval_settings(inv.settings)
    what = foreign.label if foreign is not None else options.backup
    name = f"{what} into {into.name}" + (" (overwrite)" if options.overwrite else "")
    whose = " (made elsewhere: not from the catalog)" if foreign is not None else f" of `{options.source}`"
    how = ("The bot downloads the archive, reads its table of contents and all of it, restores it with pg_restore, "
           f"then checks the restored database with the verification plan every drill runs ({verification_words(True)})"
           ": it has no manifest to compare rows with." if foreign is not None else
           "The bot restores the backup with pg_restore, then proves it against the backup's manifest with the "
           f"verification plan every drill runs ({verification_words(False)}) and posts the report.")
    report = Report(title=f"Restore request: {name}",
                    summary=f"Restore {what}{whose} into `{into.name}`"
                            f"{', dropping what it holds' if options.overwrite else ''}: needs {required} "
                            f"approval{'s' if required > 1 else ''} (react on the request message).",
                    outcome=Outcome.APPROVAL_REQUIRED,
                    sections=[Section("What happens once approved", text=how)])
    req = ApprovalBook(store).create(
        kind="restore", name=name, target=into.name,
        sha256=restore_binding(words), payload=words,
        analysis={"report": report.to_dict()}, requires_approval=True, required=required,
        requested_by=inv.actor, attested_by=None, channel=None, expires_at=expires_at(settings))
    store.audit(inv.actor, "request", "pending", channel=inv.channel, subcommand=f"restore {req.code}",
                    target=into.name, detail=name)
    if inv.store is None:
        report.notes.append(Note.warning("The state database is unreachable: this request is recorded on a "
                                         "stand-in, and is void if the state database answers before it is approved."))
    report.data = {"request": req.code, "required_approvals": required, **words,
                   **({"from_url": foreign.label} if foreign is not None else {})}
    return report


def _request_point_in_time(inv: Invocation, at) -> Report:
    """A point-in-time restore asked in Slack: one approval, then the bot asks Render for the instance."""
    from handlers.render.pitr import _iso

    if inv.store is None:
        raise ConfigError("a point-in-time restore waits for its approval in the state store, which is "
                          "unreachable: run `dbops restore --at ... --from render` in a terminal")
    when = _iso(at)
    words = {"backup": "latest", "into": None, "from": "render", "overwrite": False, "backup_after": False,
             "at": when}
    settings = approval_settings(inv.settings)
    name = f"{DEFAULT_TARGET} to {when} (Render point-in-time)"
    report = Report(title=f"Restore request: {name}",
                    summary=f"Restore `{DEFAULT_TARGET}` as it was at {when} into a new Render instance (billed "
                            "while it exists; production is never touched): needs 1 approval (react on the request "
                            "message).", outcome=Outcome.APPROVAL_REQUIRED,
                    sections=[Section("What happens once approved", text=(
                        "The bot checks the moment is in Render's recovery window, asks Render for a new instance "
                        "restored to it, waits, verifies it against the bot's backup nearest before that moment, "
                        "sends its connection string to the requester only, and reports what it costs a day and "
                        "how to delete it (`render delete-instance`)."))])
    req = ApprovalBook(inv.store).create(
        kind="restore", name=name, target=DEFAULT_TARGET,
        sha256=restore_binding(words), payload=words,
        analysis={"report": report.to_dict()}, requires_approval=True, required=1, requested_by=inv.actor,
        attested_by=None, channel=None, expires_at=expires_at(settings))
    inv.store.audit(inv.actor, "request", "pending", channel=inv.channel, subcommand=f"restore {req.code}",
                    target=DEFAULT_TARGET, detail=name)
    report.data = {"request": req.code, "required_approvals": 1, **words}
    return report


def verification_words(foreign: bool) -> str:
    """The verification plan's checks as a restore runs them, in words ("copy major, table data, ...")."""
    from handlers.verification.plan import FOREIGN_RESTORE, RESTORE, runs

    return ", ".join(runs(FOREIGN_RESTORE if foreign else RESTORE))


def restore_binding(payload: dict) -> str:
    """What an approval of a restore binds: every word of the request."""
    return hashlib.sha256(repr(sorted(payload.items())).encode()).hexdigest()


def apply_restore(svc: Bot, req: ApprovalRequest, inv: Invocation) -> Applied:
    """The area's work on an approved restore (bot/core/applier.py does the rest): the restore, as the
    requester asked."""
    p = req.payload
    args = argparse.Namespace(backup=p["backup"], into=p["into"], overwrite=bool(p["overwrite"]),
                              backup_after=bool(p["backup_after"]), target=req.target, format="text",
                              confirm=p["into"], from_url=p.get("from_url"), from_file=None, at=p.get("at"))
    setattr(args, "from", p["from"])
    report = run_restore(dataclasses.replace(inv, args=args))
    return Applied(RequestStatus.APPLIED if report.ok else RequestStatus.FAILED, report.summary, report)


def recover_restore(svc: Bot, req: ApprovalRequest) -> Applied:
    """A restore left `applying` by a process that stopped: whatever it did to the target is unfinished,
    and the target says so (handlers/restore/marks.py) until a restore into it finishes."""
    if req.payload.get("at"):
        return Applied(RequestStatus.FAILED, "the bot stopped during the point-in-time restore to "
                                             f"{req.payload['at']}: production was not touched; an instance Render "
                                             "made for it (dbops-restore-*) is deleted after [render] "
                                             "restore_keep_hours, or now by `render delete-instance NAME`; ask again")
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
AREA = Area("restore", commands=(restore_cli, restore_slack),
            status_lines=(StatusLine(incomplete_restore_line, restore_targets=True),),
            appliers=(APPLIER,))
