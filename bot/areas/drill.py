"""`drill [backup-id]`, `drill history | report | schedule`, the drill schedule, the alarm line, start-up cleanup."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from handlers import backup, drill
from handlers.backup.settings import encryption_key_from_env
from handlers.errors import ConfigError, UsageError
from handlers.report import Report

from ..core import jobs
from ..core.command import Arg, command
from ..core.config import Settings, read_once
from ..core.registry import Area, Bot, Invocation, Schedule, StatusLine, run_instead
from ..core.scheduler import daily_slot
from .backup import backup_settings, from_storage
from .backup import catalog as backup_catalog
from .indexes import index_settings


@read_once
def drill_settings(settings: Settings) -> drill.DrillSettings:
    return drill.DrillSettings.from_dict(settings.section("drill"))


def _state(inv: Invocation):
    if inv.store is None:
        raise ConfigError("drills read the backup catalog and keep their reports in the state store: "
                          "set DBOPS_STATE_URL (or DATABASE_URL)")
    return inv.store


def _backup_to_drill(catalog: backup.BackupCatalog, target: str, backup_id: str | None) -> backup.BackupRecord:
    if backup_id:
        record = catalog.require(backup_id)
        if not record.usable:
            raise UsageError(f"backup {record.id} has no archive to restore (it is "
                             f"{'pruned' if record.deleted_at else record.status})")
        return record
    for record in catalog.list(target):
        if record.usable:
            return record
    raise UsageError(f"no completed backup of `{target}` to restore: take one first with `backup`")


@from_storage
@command("drill", "restore drill: restore a backup into a throwaway instance, verify everything, delete it, report",
         Arg("backup_id", "a backup id (default: the latest completed backup of the target)"),
         Arg("--on", "local (a throwaway PostgreSQL) or render (Render's point-in-time recovery into a new, "
                     "billed instance)", default="local", choices=("local", "render")),
         Arg("--from", "backup (the bot's own) or render-export (Render's newest logical export)",
             default="backup", choices=("backup", "render-export")),
         Arg("--allow-newer-major", "when the backup's PostgreSQL major is not installed here, drill on a newer one "
                                    "(it then proves restorability on that major only)", flag=True),
         long_running=True, approvers_when=("--on", "render"), cancellable=True)
def drill_command(inv: Invocation) -> Report:
    if inv.args.on == "render":
        return run_instead(inv, "render drill")  # the Render area's drills
    if getattr(inv.args, "from") == "render-export":
        return run_instead(inv, "render export-drill")
    # Here, not at the top: psycopg, boto3 and psutil are for running a drill, not for declaring it.
    from handlers.backup.crypto import is_encrypted_file
    from handlers.backup.verify import NOT_ENCRYPTED, stored_archive
    from handlers.drill.runner import DrillInterrupted

    settings = drill_settings(inv.settings)
    catalog = backup_catalog(inv)  # the state store's, or the storage's while the state database is down
    record = _backup_to_drill(catalog, inv.target_name, inv.args.backup_id)
    manifest = catalog.manifest(record.id)
    if manifest is None:
        raise UsageError(f"backup {record.id} has no manifest in the catalog: it cannot be checked")
    work = Path(tempfile.mkdtemp(prefix="dbops-drill-work-", dir=settings.work_dir))
    interrupted = None
    try:
        if record.encrypted and encryption_key_from_env() is None:  # here, before any instance starts
            raise ConfigError(f"backup {record.id} is encrypted and DBOPS_BACKUP_KEY is not set here: the drill "
                              "decrypts it with the key it was made with; set that key, or run the drill where "
                              "the bot runs (/db drill)")
        archive, _ = stored_archive(record, manifest, backup_settings(inv.settings), work, inv.progress)
        if backup_settings(inv.settings).encrypt and archive.is_file() and not is_encrypted_file(archive):
            raise UsageError(f"backup {record.id}: {NOT_ENCRYPTED}")
        result = drill.run_drill(manifest, archive, settings, expected_indexes=index_settings(inv.settings).expected,
                                 progress=inv.progress, cancel=inv.cancel,
                                 allow_newer_major=getattr(inv.args, "allow_newer_major", False))
    except DrillInterrupted as stopped:  # Ctrl-C: recorded as cancelled, then the front end says "interrupted"
        result, interrupted = stopped.result, stopped
    finally:
        shutil.rmtree(work, ignore_errors=True)
    drill_id = (drill.DrillStore(inv.store.dsn).record(inv.target_name, record.id, result, inv.actor)
                if inv.store is not None else "(not recorded: no state database)")
    if interrupted is not None:
        raise interrupted
    report = result.to_report(title=f"Restore drill {drill_id} of {inv.target_name} (backup {record.id})")
    report.data |= {"drill_id": drill_id, "backup_id": record.id}
    return report


@command("drill history", "past drills: when, backup used, its age, time per step, total, result, trend")
def drill_history(inv: Invocation) -> Report:
    return drill.DrillStore(_state(inv).dsn).history(inv.target_name, prefix=inv.command_prefix)


@command("drill report", "one drill in full: facts, steps, checks, versions",
         Arg("id", "a drill id, e.g. d007", required=True), takes_target=False)
def drill_report(inv: Invocation) -> Report:
    report = drill.DrillStore(_state(inv).dsn).get(inv.args.id).to_report()  # facts; the Markdown as its file
    report.data = {"markdown": report.file.content}  # --format json: the written report, as before
    return report


@command("drill schedule", "when drills run by themselves, and the alarm", takes_target=False, needs_state=False)
def drill_schedule(inv: Invocation) -> Report:
    return drill.schedule_report(drill_settings(inv.settings), datetime.now(timezone.utc))


@command("drill cancel", "stop the drill running on the target: its instance is deleted, the channel is told")
def drill_cancel(inv: Invocation) -> Report:
    return jobs.cancel(inv, jobs.running_job(inv, "drill", inv.target_name))


# -- /db status, the digest, start-up, schedule ------------------------------------------------
def drill_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.store is None:
        return "Drills", True, "no state store: drills are not recorded"
    ok, line = drill.drill_alarm(inv.store.dsn, inv.target_name, drill_settings(inv.settings),
                                 prefix=inv.command_prefix)
    return "Drills", ok, line


def cleanup_at_startup(svc: Bot) -> list[str]:
    return drill.cleanup_leftovers(drill_settings(svc.settings))


def _drill_slot(svc: Bot, now: datetime) -> str | None:
    schedule = drill_settings(svc.settings).schedule
    at = schedule.time_of_day
    return daily_slot(now, at, timezone.utc, schedule.weekdays) if at else None


def _scheduled_drill(svc: Bot) -> None:
    svc.run_scheduled(["drill"])


AREA = Area(
    "drill",
    commands=(drill_command, drill_history, drill_report, drill_schedule, drill_cancel),
    settings=(("drill", drill_settings),),
    status_lines=(StatusLine(drill_line),),
    startup=(cleanup_at_startup,),
    schedules=(Schedule("drill", _drill_slot, _scheduled_drill,
                        lambda settings, now: drill.schedule_report(drill_settings(settings), now).summary),),
)
