"""`size` (the size plan), `size record`, the daily size sample, and the size plan's line in
/db status and the digest. Thin: the work is in handlers/sizeplan."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, time, timedelta, timezone

from handlers import sizeplan
from handlers.errors import ConfigError, DbopsError
from handlers.report import Report

from ..core.command import command
from ..core.config import DEFAULT_TARGET, Settings
from ..core.registry import Area, Bot, Invocation, Schedule, StatusLine
from ..core.scheduler import daily_slot
from .backup import backup_settings
from .drill import drill_settings
from .render import render_settings

SAMPLE_AT = time(0, 15)  # UTC, after the index snapshot


def sizeplan_settings(settings: Settings) -> sizeplan.SizePlanSettings:
    return sizeplan.SizePlanSettings.from_dict(settings.section("sizeplan"))


def _state_dsn(inv: Invocation) -> str:
    if inv.store is None:
        raise ConfigError("the size plan is recorded in the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    return inv.store.dsn


def current_plan(settings: Settings, state_dsn: str, target: str, now: datetime | None = None) -> sizeplan.SizePlan:
    now = now or datetime.now(timezone.utc)
    plan_settings, backups = sizeplan_settings(settings), backup_settings(settings)
    work_dir = drill_settings(settings).work_dir
    samples = sizeplan.history(state_dsn, target, now.date() - timedelta(days=plan_settings.trend_days))
    try:
        free = shutil.disk_usage(work_dir).free
    except OSError:
        free = None
    try:  # local backups on the disk drill copies go to eat into it as they grow
        same_disk = backups.storage == "local" and os.stat(backups.dir).st_dev == os.stat(work_dir).st_dev
    except OSError:
        same_disk = False
    r = backups.retention
    disks = sizeplan.Disks(local_free=free, size_factor=backups.size_factor,
                           local_archives=(r.daily + r.weekly + r.monthly) if same_disk else 0,
                           scheduled_from=backups.scheduled_from)
    return sizeplan.make_plan(target, samples, now.date(), plan_settings, disks)


def render_disk(settings: Settings, target: str) -> sizeplan.RenderDisk | None:
    """What Render's API says of the target's disk; None when it is not on Render or not reachable."""
    from handlers import render

    found = render_settings(settings)
    if not found.api_key:
        return None
    try:
        postgres_id = render.postgres_id_for(target, settings.target_options.get(target), DEFAULT_TARGET)
        with found.client() as client:
            doc = client.get_postgres(postgres_id)
            used = client.disk_usage(postgres_id)
    except DbopsError:
        return None  # the sample keeps the database's size; Render's figures wait for the next one
    size_gb = doc.get("diskSizeGB")
    return sizeplan.RenderDisk(used_bytes=used, size_bytes=int(size_gb * 1024 ** 3) if size_gb else None,
                               autoscaling=doc.get("diskAutoscalingEnabled"))


def record_sample(settings: Settings, state_dsn: str, target: str) -> sizeplan.SizeSample:
    sample = sizeplan.measure(settings.target(target), state_dsn, drill_settings(settings).work_dir,
                              render_disk(settings, target))
    sizeplan.record(state_dsn, target, sample)
    return sample


@command("size", "the size plan: the database's size, its growth a month, and when the nightly backup outgrows its "
                 "window, the local disk a drill copy, or Render's disk fills, with the move to make")
def size_command(inv: Invocation) -> Report:
    return current_plan(inv.settings, _state_dsn(inv), inv.target_name).to_report()


@command("size record", "record today's size sample now (one is taken daily at 00:15 UTC)", long_running=True,
         lock="size")
def size_record(inv: Invocation) -> Report:
    record_sample(inv.settings, _state_dsn(inv), inv.target_name)
    return current_plan(inv.settings, _state_dsn(inv), inv.target_name).to_report()


def size_line(inv: Invocation) -> tuple[str, bool, str]:
    if inv.store is None:
        return "Size plan", True, "no state store: sizes are not recorded"
    ok, line = current_plan(inv.settings, inv.store.dsn, inv.target_name).line()
    return "Size plan", ok, line


def _sample_slot(svc: Bot, now: datetime) -> str | None:
    return daily_slot(now, SAMPLE_AT, timezone.utc)


def _sample_all(svc: Bot) -> None:
    for name in svc.settings.targets:
        try:
            record_sample(svc.settings, svc.store.dsn, name)
        except DbopsError:
            continue  # an unreachable target is the reachability line's to report; tomorrow's sample may work


AREA = Area(
    "sizeplan",
    commands=(size_command, size_record),
    settings=(("sizeplan", sizeplan_settings),),
    status_lines=(StatusLine(size_line),),
    schedules=(Schedule("size-sample", _sample_slot, _sample_all,
                        lambda settings, now: "Size sample (database, Render disk, backup and drill times) daily "
                                              "at 00:15 UTC."),),
)
