"""`backup`, `backup list | info | verify | prune | schedule`, the daily backup, and the staleness line."""
from __future__ import annotations

from datetime import datetime, timezone

from handlers import backup
from handlers.errors import ConfigError
from handlers.report import Report

from ..core.command import Arg, command
from ..core.config import Settings
from ..core.registry import Area, Bot, Invocation, Schedule, StatusLine
from ..core.scheduler import daily_slot



def backup_settings(settings: Settings) -> backup.BackupSettings:
    section = dict(settings.section("backup"))
    found = backup.BackupSettings.from_dict(section)
    if "dir" not in section:
        found.dir = settings.backup_dir  # DBOPS_BACKUP_DIR, or the demo's temporary folder
    return found


def catalog(inv: Invocation) -> backup.BackupCatalog:
    if inv.state is None:
        raise ConfigError("backups need the state store for their catalog: set DBOPS_STATE_URL (or DATABASE_URL)")
    return backup.BackupCatalog(inv.state.dsn)


@command("backup", "take a consistent, checksummed, verified backup now", long_running=True)
def backup_now(inv: Invocation) -> Report:
    result = backup.take_backup(inv.target, backup_settings(inv.settings), catalog(inv), requested_by=inv.actor,
                                scheduled=inv.actor == "scheduler", progress=inv.progress, cancel=inv.cancel)
    return result.to_report()


@command("backup list", "the backup catalog, newest first")
def backup_list(inv: Invocation) -> Report:
    return backup.list_backups(catalog(inv), getattr(inv.args, "target", None))


@command("backup info", "everything known about one backup", Arg("id", "a backup id, e.g. b042", required=True),
         takes_target=False)
def backup_info(inv: Invocation) -> Report:
    return backup.backup_info(catalog(inv), inv.args.id)


@command("backup verify", "check a backup's SHA-256 and read the whole archive",
         Arg("id", "a backup id, e.g. b042", required=True), long_running=True, lock="backup")
def backup_verify(inv: Invocation) -> Report:
    return backup.verify_backup(catalog(inv), backup_settings(inv.settings), inv.args.id, progress=inv.progress)


@command("backup prune", "delete backups beyond the retention policy (never the newest verified one)",
         Arg("--dry-run", "only show what would be deleted", flag=True), long_running=True, lock="backup",
         who="approvers", open_with="--dry-run")
def backup_prune(inv: Invocation) -> Report:
    return backup.prune(catalog(inv), backup_settings(inv.settings), inv.target_name, dry_run=inv.args.dry_run)


@command("backup schedule", "the daily backup schedule and its next run", takes_target=False, needs_state=False)
def backup_schedule(inv: Invocation) -> Report:
    return backup.schedule_report(backup_settings(inv.settings), datetime.now(timezone.utc))


# -- /db status, start-up, schedule -------------------------------------------------------
def freshness_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.state is None:
        return "Backups", True, "no state store: backups are not catalogued"
    ok, line = backup.freshness(inv.state.dsn, inv.target_name, backup_settings(inv.settings))
    return "Backups", ok, line


def cleanup_at_startup(svc: Bot) -> list[str]:
    return backup.cleanup_incomplete(svc.store.dsn, backup_settings(svc.settings))


def _backup_slot(svc: Bot, now: datetime) -> str | None:
    s = backup_settings(svc.settings)
    return daily_slot(now, s.schedule_time, s.tz) if s.schedule_enabled else None


def _scheduled_backup(svc: Bot) -> None:
    for name in svc.settings.targets:
        svc.run_scheduled(["backup", "--target", name])
    for name in svc.settings.targets:
        ok, line = backup.freshness(svc.store.dsn, name, backup_settings(svc.settings))
        if not ok and svc.settings.channel:
            svc.notifier.post(svc.settings.channel, f":rotating_light: backup alarm: {line}")



AREA = Area(
    "backup",
    commands=(backup_now, backup_list, backup_info, backup_verify, backup_prune, backup_schedule),
    settings=(("backup", backup_settings),),
    status_lines=(StatusLine(freshness_line),),
    startup=(cleanup_at_startup,),
    schedules=(Schedule("backup", _backup_slot, _scheduled_backup,
                        lambda settings, now: backup.schedule_report(backup_settings(settings), now).summary),),
)
