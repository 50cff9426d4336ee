"""`backup`, `backup list | info | verify | prune | schedule`, the daily backup, and the staleness line."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from handlers import backup, fmt
from handlers.errors import ConfigError
from handlers.report import Level, Note, Report

from ..core import jobs
from ..core.command import Arg, Command, command
from ..core.config import Settings, read_once
from ..core.handover import hand_over
from ..core.registry import Area, Bot, Invocation, Schedule, StatusLine, run_instead
from ..core.scheduler import daily_slot
from ..core.state.store import StateStore


@read_once
def backup_settings(settings: Settings) -> backup.BackupSettings:
    section = dict(settings.section("backup"))
    found = backup.BackupSettings.from_dict(section, serving=settings.serving)
    if "dir" not in section:
        found.dir = settings.backup_dir  # DBOPS_BACKUP_DIR, or the demo's temporary folder
    return found


STATE_DOWN_NOTE = "The state database is unreachable: this comes from the backup storage alone."


def catalog(inv: Invocation):
    """The catalog in the state store; with the state store configured but unreachable (the terminal
    opens it and leaves inv.store None), the storage itself, read only."""
    if inv.store is None:
        if inv.settings.state_url:
            return backup.StorageCatalog(backup_settings(inv.settings))
        raise ConfigError("backups need the state store for their catalog: set DBOPS_STATE_URL (or DATABASE_URL)")
    return backup.BackupCatalog(inv.store.dsn)


def from_storage(cmd: Command) -> Command:
    """A command that still works with the state database down (written above its `@command`): it
    reads the storage instead, and its report says so."""
    def run(inv: Invocation) -> Report:
        report = cmd.run(inv)
        if inv.store is None and inv.settings.state_url:
            report.notes.insert(0, Note(Level.INFO, STATE_DOWN_NOTE))
            report.data["from_storage"] = True
        return report

    return dataclasses.replace(cmd, run=run, works_from_storage=True)


def recovery_copy_for_anyone(settings: Settings) -> bool:
    """backup.recovery_copy_for = "anyone": a backup from a (billed) Render recovery copy is not for approvers only."""
    return backup_settings(settings).recovery_copy_for == "anyone"


@command("backup", "take a consistent, checksummed, verified backup now",
         Arg("--from", "target (the database itself) or render-recovery (a Render point-in-time copy, made for "
                       "the backup and deleted after: no load on production; billed)",
             default="target", choices=("target", "render-recovery")),
         long_running=True, approvers_when=("--from", "render-recovery"), opened_by=recovery_copy_for_anyone,
         cancellable=True)
def backup_now(inv: Invocation) -> Report:
    settings = backup_settings(inv.settings)
    if settings.encrypt and settings.encryption_key() is None:  # refused here, before the catalog records a failure
        raise ConfigError("backup.encrypt is on and DBOPS_BACKUP_KEY is not set here: a new backup is encrypted "
                          "with that key; set it (the key the bot has), or take the backup from the bot: /db backup")
    if getattr(inv.args, "from", "target") == "render-recovery":
        return run_instead(inv, "render backup")  # the Render area's
    result = backup.take_backup(inv.target, settings, catalog(inv), requested_by=inv.actor,
                                scheduled=inv.actor == "scheduler", progress=inv.progress, cancel=inv.cancel)
    return result.to_report()


def _catch_up(inv: Invocation, found) -> str | None:
    """The catalog is a cache of the storage: rows it lacks are added before it is read."""
    if getattr(found, "from_storage", False):
        return None
    try:
        synced = backup.sync_catalog(found, backup_settings(inv.settings), adopt=False)
    except backup.StorageError as exc:
        return f"The backup storage could not be read ({exc}): this is the catalog alone."
    if synced.pending:  # catalogued only after a full verify: never on the way to a read
        return (f"Storage holds {fmt.plural(len(synced.pending), 'backup')} the catalog does not know "
                f"({', '.join(synced.pending[:5])}): `{inv.command_prefix} backup sync` verifies them in full and "
                "catalogues those that pass.")
    return None


@from_storage
@command("backup list", "the backup catalog, newest first")
def backup_list(inv: Invocation) -> Report:
    found = catalog(inv)
    note = _catch_up(inv, found)
    report = backup.list_backups(found, getattr(inv.args, "target", None), prefix=inv.command_prefix)
    from handlers.backup.views import no_key_note  # here: the views read the catalog (psycopg)

    no_key = no_key_note(backup_settings(inv.settings))
    report.notes += [Note(Level.INFO, line) for line in (note, no_key and f"{no_key[:1].upper()}{no_key[1:]}.")
                     if line]
    return report


@from_storage
@command("backup info", "everything known about one backup", Arg("id", "a backup id, e.g. b042", required=True),
         takes_target=False)
def backup_info(inv: Invocation) -> Report:
    found = catalog(inv)
    _catch_up(inv, found)
    return backup.backup_info(found, inv.args.id)


@from_storage
@command("backup verify", "check a backup's manifest seal and SHA-256, decrypt it and read the whole archive",
         Arg("id", "a backup id, e.g. b042", required=True), long_running=True, lock="backup")
def backup_verify(inv: Invocation) -> Report:
    found = catalog(inv)
    _catch_up(inv, found)
    return backup.verify_backup(found, backup_settings(inv.settings), inv.args.id, progress=inv.progress)


@command("backup sync", "rebuild the backup catalog from storage: add what it lacks, adopt backups a killed "
                        "process finished, quarantine archives without a manifest", takes_target=False,
         long_running=True, lock="backup")
def backup_sync(inv: Invocation) -> Report:
    if inv.store is None:
        raise ConfigError("`backup sync` rebuilds the catalog in the state store: set DBOPS_STATE_URL "
                          "(or DATABASE_URL) to a reachable database")
    return backup.sync_report(backup.BackupCatalog(inv.store.dsn), backup_settings(inv.settings))


@command("backup prune", "delete backups beyond the retention policy (never the newest verified one)",
         Arg("--dry-run", "only show what would be deleted", flag=True), long_running=True, lock="backup",
         who="approvers", open_with="--dry-run")
def backup_prune(inv: Invocation) -> Report:
    return backup.prune(catalog(inv), backup_settings(inv.settings), inv.target_name, dry_run=inv.args.dry_run)


@command("backup schedule", "the daily backup schedule and its next run", takes_target=False, needs_state=False)
def backup_schedule(inv: Invocation) -> Report:
    return backup.schedule_report(backup_settings(inv.settings), datetime.now(timezone.utc))


@command("backup delete", "delete one backup (archive and manifest); never the newest verified or the newest "
                         "drilled one, as prune", Arg("id", "a backup id, e.g. b042", required=True),
         takes_target=False, long_running=True, lock="backup", who="approvers")
def backup_delete(inv: Invocation) -> Report:
    if inv.store is None:
        raise ConfigError("`backup delete` records the deletion in the catalog of the state store, which is not "
                          "configured or unreachable")
    return backup.delete_backup(backup.BackupCatalog(inv.store.dsn), backup_settings(inv.settings), inv.args.id)


@from_storage
@command("backup download", "write a backup's archive to a file, streamed from its storage, decrypted, its "
                            "SHA-256 checked on the way", Arg("id", "a backup id, e.g. b042", required=True),
         Arg("--to", "the file (or an existing folder) to write; default: its own name here"),
         takes_target=False, long_running=True, lock="download", where="cli", cancellable=True)
def backup_download(inv: Invocation) -> Report:
    from pathlib import Path

    found = catalog(inv)
    _catch_up(inv, found)
    return backup.download_backup(found, backup_settings(inv.settings), inv.args.id,
                                  Path(inv.args.to).expanduser() if inv.args.to else None,
                                  progress=inv.progress, cancel=inv.cancel)


@from_storage
@command("backup url", "a download link to a backup in S3 that expires soon ([backup.s3] url_minutes), sent to "
                       "you only", Arg("id", "a backup id, e.g. b042", required=True), takes_target=False,
         who="approvers")
def backup_url(inv: Invocation) -> Report:
    from handlers.target import hold, release

    found = catalog(inv)
    _catch_up(inv, found)
    report, link = backup.download_link(found, backup_settings(inv.settings), inv.args.id)
    hold(link.url)  # scrubbed from every log line and message while it is handed over
    try:
        return hand_over(inv, report, link.text(), "the link", f"run `backup url {link.backup_id}` again")
    finally:
        release(link.url)


@command("backup cancel", "stop the backup running on the target: its partial files are removed, the row is "
                         "`cancelled`, the channel is told")
def backup_cancel(inv: Invocation) -> Report:
    return jobs.cancel(inv, jobs.running_job(inv, "backup", inv.target_name))


# -- /db status, start-up, schedule -------------------------------------------------------
def freshness_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.store is None and inv.settings.state_url:
        return "Backups", False, "the state database is unreachable: `backup list` reads the backup storage"
    if inv.store is None:
        return "Backups", True, "no state store: backups are not catalogued"
    ok, line = backup.freshness(inv.store.dsn, inv.target_name, backup_settings(inv.settings))
    return "Backups", ok, line


def state_placement_line(inv: Invocation) -> tuple[str, bool, str | Note]:
    shared = backup.state_shares_target(inv.settings.state_url, {n: t.dsn for n, t in inv.settings.targets.items()})
    if not shared:
        return "State store", True, "on its own database, apart from every target"
    # A warning, not a failure: the bot works, it only would not survive that target's loss.
    return "State store", True, Note.warning(backup.state_placement_warning(shared))


def cleanup_at_startup(svc: Bot) -> list[str]:
    return backup.cleanup_incomplete(svc.store.dsn, backup_settings(svc.settings))


def cleanup_before_a_command(settings: Settings, store: StateStore) -> list[str]:
    return backup.cleanup_incomplete(store.dsn, backup_settings(settings), thorough=False)


def _backup_slot(svc: Bot, now: datetime) -> str | None:
    s = backup_settings(svc.settings)
    return daily_slot(now, s.schedule_time, s.tz) if s.schedule_enabled else None


def _scheduled_backup(svc: Bot) -> None:
    source = backup_settings(svc.settings).scheduled_from
    for name in svc.settings.watched_targets:
        svc.run_scheduled(["backup", "--from", source, "--target", name])
    for name in svc.settings.watched_targets:
        ok, line = backup.freshness(svc.store.dsn, name, backup_settings(svc.settings))
        if not ok and svc.settings.channel:
            svc.notifier.post(svc.settings.channel, f":rotating_light: backup alarm: {line}")



AREA = Area(
    "backup",
    commands=(backup_now, backup_list, backup_info, backup_verify, backup_sync, backup_prune, backup_schedule,
              backup_delete, backup_download, backup_url, backup_cancel),
    settings=(("backup", backup_settings),),
    status_lines=(StatusLine(freshness_line), StatusLine(state_placement_line, per_target=False)),
    startup=(cleanup_at_startup,),
    cleanup=(cleanup_before_a_command,),
    schedules=(Schedule("backup", _backup_slot, _scheduled_backup,
                        lambda settings, now: backup.schedule_report(backup_settings(settings), now).summary),),
)
