"""Daily jobs (backups, index snapshots, the digest, drills), run by exactly one replica.

Every replica runs this loop; a run happens only for the replica whose claim
on (schedule, day) is inserted first in the state store.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .service import BotService

log = logging.getLogger("dbops.scheduler")


@dataclass(frozen=True)
class Schedule:
    name: str
    at: Callable[["BotService"], time | None]  # time of day (UTC), or None when switched off
    run: Callable[["BotService"], None]
    weekdays: Callable[["BotService"], frozenset[int] | None] = lambda svc: None  # None = every day


# Job areas append their schedules here.
SCHEDULES: list[Schedule] = []


def parse_time_of_day(value: str, setting: str) -> time:
    from handlers.errors import ConfigError

    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes), tzinfo=timezone.utc)
    except (ValueError, AttributeError):
        raise ConfigError(f"{setting} must be a time of day in UTC like \"03:30\", not {value!r}") from None


def next_occurrence(at: time, now: datetime, weekdays: frozenset[int] | None = None) -> datetime:
    candidate = datetime.combine(now.date(), at.replace(tzinfo=None), tzinfo=timezone.utc)
    if candidate <= now:
        candidate += timedelta(days=1)
    while weekdays is not None and candidate.weekday() not in weekdays:
        candidate += timedelta(days=1)
    return candidate


def due(at: time, now: datetime, weekdays: frozenset[int] | None) -> str | None:
    """Today's slot name when today's run time has passed, else None."""
    if weekdays is not None and now.weekday() not in weekdays:
        return None
    if now.timetz().replace(tzinfo=timezone.utc) < at:
        return None
    return now.date().isoformat()


class Scheduler:
    def __init__(self, svc: "BotService", interval: float = 30.0) -> None:
        self.svc = svc
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dbops-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick(datetime.now(timezone.utc))

    def tick(self, now: datetime) -> list[str]:
        started = []
        try:
            self.svc.approvals.expire(now)
        except Exception:
            log.exception("expiring approval requests failed")
        for schedule in SCHEDULES:
            try:
                at = schedule.at(self.svc)
                slot = due(at, now, schedule.weekdays(self.svc)) if at else None
                if slot and self.svc.store.claim(schedule.name, slot):
                    log.info("running scheduled %s for %s", schedule.name, slot)
                    self.svc.runner.submit(lambda s=schedule: s.run(self.svc))
                    started.append(schedule.name)
            except Exception:
                log.exception("schedule %s failed", schedule.name)
        return started
