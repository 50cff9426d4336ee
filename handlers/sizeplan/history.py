"""The size history in the state store (dbops.size_history): one sample per target and day.

A sample is what can be measured that day: the database's size (pg_database_size), Render's disk
usage and the plan's disk where the API has them, the newest backup's and drill's durations (from
the catalog and the drill history), and the local disk drill copies go to. A second sample the
same day replaces what it measured and keeps what it did not.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from ..target import Target, connect

RECENT = timedelta(hours=36)  # a backup or drill this recent is the sample's


@dataclass
class SizeSample:
    day: date
    database_bytes: int
    render_disk_used_bytes: int | None = None
    render_disk_bytes: int | None = None
    render_disk_autoscaling: bool | None = None
    backup_s: float | None = None
    backup_bytes: int | None = None
    drill_s: float | None = None
    local_disk_bytes: int | None = None
    local_free_bytes: int | None = None


_COLUMNS = [f.name for f in fields(SizeSample)]


@dataclass
class RenderDisk:
    """What Render's API says of the instance's disk; any part None where it says nothing."""

    used_bytes: int | None = None
    size_bytes: int | None = None
    autoscaling: bool | None = None


def record(state_dsn: str, target: str, sample: SizeSample) -> None:
    values = [getattr(sample, c) for c in _COLUMNS]
    kept = ", ".join(f"{c} = coalesce(excluded.{c}, size_history.{c})" for c in _COLUMNS[1:])
    with connect(state_dsn, name="state store") as conn:
        conn.execute(f"INSERT INTO dbops.size_history (target, {', '.join(_COLUMNS)}) "
                     f"VALUES (%s, {', '.join(['%s'] * len(_COLUMNS))}) "
                     f"ON CONFLICT (target, day) DO UPDATE SET recorded_at = now(), {kept}", [target, *values])


def history(state_dsn: str, target: str, since: date) -> list[SizeSample]:
    """The samples from `since` on, oldest first."""
    with connect(state_dsn, name="state store") as conn:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM dbops.size_history WHERE target = %s AND day >= %s "
                            "ORDER BY day", (target, since)).fetchall()
    return [SizeSample(*row) for row in rows]


def measure(target: Target, state_dsn: str, local_dir: Path, render: RenderDisk | None = None,
            now: datetime | None = None) -> SizeSample:
    """Today's sample of `target`: measured on it, in the state store and on this machine's disk."""
    now = now or datetime.now(timezone.utc)
    with target.connect() as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    backup_s, backup_bytes, drill_s = newest_runs(state_dsn, target.name, now)
    disk = shutil.disk_usage(local_dir)
    render = render or RenderDisk()
    return SizeSample(day=now.date(), database_bytes=int(size), render_disk_used_bytes=render.used_bytes,
                      render_disk_bytes=render.size_bytes, render_disk_autoscaling=render.autoscaling,
                      backup_s=backup_s, backup_bytes=backup_bytes, drill_s=drill_s, local_disk_bytes=disk.total,
                      local_free_bytes=disk.free)


def newest_runs(state_dsn: str, target: str, now: datetime) -> tuple[float | None, int | None, float | None]:
    """(seconds, archive bytes) of the newest completed backup and the seconds of the newest drill, of
    the last 36 hours."""
    since = now - RECENT
    with connect(state_dsn, name="state store") as conn:
        backup = conn.execute("SELECT duration_s, size_bytes FROM dbops.backups WHERE target = %s AND status = "
                              "'completed' AND started_at >= %s ORDER BY started_at DESC LIMIT 1",
                              (target, since)).fetchone()
        drill = conn.execute("SELECT total_s FROM dbops.drills WHERE target = %s AND started_at >= %s "
                             "AND outcome <> 'cancelled' ORDER BY started_at DESC LIMIT 1", (target, since)).fetchone()
    return (backup[0] if backup else None, backup[1] if backup else None, drill[0] if drill else None)
