"""The daily scheduled backup: when it runs next, and which replica runs it (exactly one)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from .. import fmt
from ..report import Report, key_values
from .settings import BackupSettings


def next_run(settings: BackupSettings, now: datetime) -> datetime:
    """The next daily run strictly after `now` (aware datetime, in the schedule's time zone)."""
    tz = settings.tz
    local = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(tz)
    candidate = datetime.combine(local.date(), settings.schedule_time, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), settings.schedule_time, tzinfo=tz)
    return candidate


def schedule_slot(settings: BackupSettings, run_at: datetime) -> str:
    """The claim key of one scheduled run: its local date."""
    return run_at.astimezone(settings.tz).date().isoformat()


def claim_scheduled_run(state_dsn: str, target_name: str, slot: str, claimed_by: str) -> bool:
    """True for exactly one replica per (target, slot): the one whose INSERT lands first."""
    with psycopg.connect(state_dsn, autocommit=True) as conn:
        row = conn.execute("INSERT INTO dbops.schedule_claims (schedule, slot, claimed_by) VALUES (%s, %s, %s)"
                           " ON CONFLICT DO NOTHING RETURNING 1", (f"backup:{target_name}", slot, claimed_by)
                           ).fetchone()
    return row is not None


def schedule_report(settings: BackupSettings, now: datetime) -> Report:
    r = settings.retention
    rows = [
        ["retention", f"{r.daily} daily, {r.weekly} weekly, {r.monthly} monthly (verified backups only)"],
        ["integrity", settings.integrity],
        ["format", {"directory": f"directory, {settings.jobs} jobs",
                    "auto": f"custom; directory with {settings.jobs} jobs from {settings.parallel_from_gb:g} GB"}.get(
            settings.format, settings.format)],
        ["dumped from", "a Render recovery copy" if settings.scheduled_from == "render-recovery" else "the target"],
        ["storage", settings.storage + (f" (s3://{settings.s3.bucket}/{settings.s3.prefix})"
                                        if settings.storage == "s3" else f" ({settings.dir})")],
        ["encrypted", "yes" if settings.encrypt else "no"],
        ["verify after", "yes" if settings.verify_after else "no"],
        ["stale after", f"{settings.max_age_hours:g} h"],
    ]
    if not settings.schedule_enabled:
        return Report(title="Backup schedule", summary="No scheduled backups (backup.schedule = \"off\").",
                      facts=key_values(rows), data={"enabled": False})
    nxt = next_run(settings, now)
    wait = (nxt - now).total_seconds()
    at = f"{settings.schedule_time:%H:%M} {settings.schedule_timezone}"
    rows.insert(0, ["next run", f"{fmt.when(nxt)} (in {fmt.duration(wait)})"])
    rows.insert(0, ["schedule", f"daily at {at}"])
    return Report(title="Backup schedule",
                  summary=f"Daily backup at {at}; next run {fmt.when(nxt)}, in {fmt.duration(wait)}.",
                  facts=key_values(rows),
                  data={"enabled": True, "time": f"{settings.schedule_time:%H:%M}",
                        "timezone": settings.schedule_timezone, "next_run": nxt.isoformat()})
