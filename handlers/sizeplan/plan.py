"""The size plan: from the recorded history, the database's growth and the dates at which, at that
growth, a limit is reached, each with the move to make:

- the backup window: the nightly backup takes (size / the throughput the recent backups had) and
  must fit in [sizeplan] backup_window_minutes;
- the local disk: a drill restores a copy of the database here (about its size) from an archive
  (size x backup.size_factor), beside the local backups when storage is local (which grow too);
- the Render disk: Render's disk-usage metric (or the database's size where there is none) against
  the instance's disk, unless disk autoscaling is on.

Growth is the least-squares slope of the size over [sizeplan] trend_days, projected linearly from
the newest sample: a plan, not a promise; the dates move as the history does.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta

from .. import fmt
from ..report import Outcome, Report, Section, Table, key_values
from .history import SizeSample
from .settings import SizePlanSettings

DAYS_PER_MONTH = 30.44


@dataclass
class Limit:
    name: str  # "backup window", "local disk", "Render disk"
    detail: str  # where it stands today
    move: str  # what to do before it is reached
    when: date | None = None  # the day it is reached at this growth; None: not at this growth, or not known
    reached: bool = False  # already

    def line(self) -> str:
        if self.reached:
            return f"{self.name}: REACHED ({self.detail}): {self.move}"
        if self.when is None:
            return f"{self.name}: {self.detail}"
        return f"{self.name}: reached about {self.when.isoformat()} ({self.detail}): {self.move}"


@dataclass
class Disks:
    """What the plan needs besides the history: the local disk now and how backups are kept."""

    local_free: int | None = None  # bytes free where drill copies are restored
    size_factor: float = 0.6  # archive size = database size x this
    local_archives: int = 0  # archives kept on that same disk (local storage: the retention's count)
    scheduled_from: str = "target"


@dataclass
class SizePlan:
    target: str
    today: date
    settings: SizePlanSettings
    size: int | None = None
    growth_per_day: float | None = None  # bytes
    history_days: int = 0
    samples: int = 0
    limits: list[Limit] = field(default_factory=list)

    @property
    def growth_per_month(self) -> float | None:
        return None if self.growth_per_day is None else self.growth_per_day * DAYS_PER_MONTH

    def soon(self) -> list[Limit]:
        """The limits reached already, or within [sizeplan] warn_days."""
        horizon = self.today + timedelta(days=self.settings.warn_days)
        return [lim for lim in self.limits if lim.reached or (lim.when is not None and lim.when <= horizon)]

    def growth_text(self) -> str:
        if self.growth_per_day is None:
            return (f"growth not known yet ({fmt.plural(self.history_days, 'day')} of history, "
                    f"{self.settings.min_history_days} needed)")
        sign = "+" if self.growth_per_day >= 0 else "-"
        return f"{sign}{fmt.size(abs(self.growth_per_month))}/month"

    def line(self) -> tuple[bool, str]:
        """(ok, text) for /db status and the digest."""
        if self.size is None:
            return True, "no size recorded yet: it is sampled daily (or `size record`)"
        head = f"{fmt.size(self.size)}, {self.growth_text()}"
        soon = self.soon()
        if soon:
            return False, head + "; " + "; ".join(lim.line() for lim in soon)
        dated = [lim for lim in self.limits if lim.when is not None]
        first = min(dated, key=lambda lim: lim.when) if dated else None
        tail = (f"; nothing within {self.settings.warn_days} days (first: {first.name} about "
                f"{first.when.isoformat()})" if first else "; no limit in sight at this growth")
        return True, head + tail

    def to_report(self) -> Report:
        ok, line = self.line()
        rows = [[lim.name, "REACHED" if lim.reached else (lim.when.isoformat() if lim.when else "-"), lim.detail,
                 lim.move if (lim.reached or lim.when) else "-"] for lim in self.limits]
        facts = [["target", self.target], ["size", fmt.size(self.size) if self.size is not None else "-"],
                 ["growth", self.growth_text()], ["history", f"{fmt.plural(self.samples, 'sample')} over "
                                                             f"{fmt.plural(self.history_days, 'day')}"]]
        return Report(title=f"Size plan of {self.target}", summary=line, outcome=Outcome.OK if ok else Outcome.FAILED,
                      facts=key_values(facts),
                      sections=[Section("Limits", table=Table(["limit", "reached", "now", "move"], rows))],
                      data={"target": self.target, "size": self.size, "growth_per_month": self.growth_per_month,
                            "history_days": self.history_days,
                            "limits": [{"name": lim.name, "when": lim.when.isoformat() if lim.when else None,
                                        "reached": lim.reached, "detail": lim.detail, "move": lim.move}
                                       for lim in self.limits]})


def make_plan(target: str, samples: list[SizeSample], today: date, settings: SizePlanSettings,
              disks: Disks) -> SizePlan:
    plan = SizePlan(target, today, settings)
    recent = [s for s in samples if s.day > today - timedelta(days=settings.trend_days)]
    if not recent:
        return plan
    newest = recent[-1]
    plan.size, plan.samples = newest.database_bytes, len(recent)
    plan.history_days = (newest.day - recent[0].day).days
    if plan.history_days >= settings.min_history_days:
        plan.growth_per_day = slope([(s.day, s.database_bytes) for s in recent])
    plan.limits = [backup_window(plan, recent, disks), local_disk(plan, disks), render_disk(plan, recent)]
    plan.limits = [lim for lim in plan.limits if lim is not None]
    return plan


def slope(points: list[tuple[date, float]]) -> float:
    """Least-squares growth per day."""
    xs = [(d - points[0][0]).days for d, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def reached_on(start: date, value: float, limit: float, per_day: float | None) -> tuple[date | None, bool]:
    """The day `value`, growing `per_day` from `start`, reaches `limit`: (day, reached already)."""
    if value >= limit:
        return None, True
    if not per_day or per_day <= 0:
        return None, False
    return start + timedelta(days=math.ceil((limit - value) / per_day)), False


def backup_window(plan: SizePlan, samples: list[SizeSample], disks: Disks) -> Limit:
    window_s = plan.settings.backup_window_minutes * 60
    window = fmt.duration(window_s)
    speeds = [s.database_bytes / s.backup_s for s in samples if s.backup_s][-7:]
    if disks.scheduled_from == "render-recovery":
        move = "the backup runs on a recovery copy: give it more parallel jobs (backup.jobs)"
    else:
        move = ("switch backups to the recovery copy (backup.scheduled_from = \"render-recovery\": no load and no "
                "long snapshot on production, whatever the dump's length)")
    lim = Limit("backup window", "", move)
    if not speeds:
        lim.detail = f"window {window}; no backup duration recorded yet"
        return lim
    speed = statistics.median(speeds)  # bytes of database a second
    lim.detail = f"the backup takes about {fmt.duration(plan.size / speed)} of {window}"
    lim.when, lim.reached = reached_on(samples[-1].day, plan.size, window_s * speed, plan.growth_per_day)
    return lim


def local_disk(plan: SizePlan, disks: Disks) -> Limit | None:
    if disks.local_free is None:
        return None
    f = disks.size_factor
    need = plan.size * (1 + f)  # the restored copy and the archive it is restored from
    lim = Limit("local disk", f"a drill copy needs about {fmt.size(need)}, {fmt.size(disks.local_free)} is free",
                "drill on Render instead (`drill --on render`: nothing is restored here), or give the bot a "
                "bigger disk")
    # The need grows with the database, and so do the local archives that eat into what is free.
    per_day = plan.growth_per_day * (1 + f + disks.local_archives * f) if plan.growth_per_day else None
    lim.when, lim.reached = reached_on(plan.today, need, disks.local_free, per_day)
    return lim


def render_disk(plan: SizePlan, samples: list[SizeSample]) -> Limit | None:
    newest = samples[-1]
    if not newest.render_disk_bytes:
        return None
    if newest.render_disk_autoscaling:
        return Limit("Render disk", f"{fmt.size(newest.render_disk_bytes)}, autoscaling on: Render grows it "
                                    "(and the bill)", "")
    used = [(s.day, s.render_disk_used_bytes) for s in samples if s.render_disk_used_bytes]
    if used and (used[-1][0] - used[0][0]).days >= plan.settings.min_history_days:
        now_used, per_day = used[-1][1], slope(used)
    else:  # no metric history: the database's own growth, from what is used now
        now_used, per_day = (used[-1][1] if used else plan.size), plan.growth_per_day
    lim = Limit("Render disk", f"{fmt.size(now_used)} of {fmt.size(newest.render_disk_bytes)} used",
                "grow the instance's disk (Render Dashboard > the database > Storage) or turn on disk autoscaling")
    lim.when, lim.reached = reached_on(newest.day, now_used, newest.render_disk_bytes, per_day)
    return lim
