"""The schedules the areas declare (daily backups, the digest, drills...), each run by exactly one replica.

Every replica runs this loop; a run happens only for the replica whose claim
on (schedule, day) is inserted first in the state store.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from .registry import Bot, Schedule
from .state import store as state_store

log = logging.getLogger("dbops.scheduler")
RECONCILE_EVERY = timedelta(minutes=1)  # open requests' reactions read back (one reactions.get each)


def configured_interval() -> float:
    """Seconds between the scheduler's ticks (DBOPS_SCHEDULER_INTERVAL, default 5)."""
    return float(os.environ.get("DBOPS_SCHEDULER_INTERVAL", "5"))


def daily_slot(now: datetime, at: time, tz: ZoneInfo | None = None,
               weekdays: frozenset[int] | None = None) -> str | None:
    """Today's slot (the local date) once today's run time has passed, else None."""
    local = now.astimezone(tz or timezone.utc)
    if weekdays is not None and local.weekday() not in weekdays:
        return None
    if local.time().replace(tzinfo=None) < at.replace(tzinfo=None):
        return None
    return local.date().isoformat()


def next_daily(now: datetime, at: time, tz: ZoneInfo | None = None, weekdays: frozenset[int] | None = None) -> datetime:
    tz = tz or timezone.utc
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at.replace(tzinfo=None), tzinfo=tz)
    while candidate <= local or (weekdays is not None and candidate.weekday() not in weekdays):
        candidate += timedelta(days=1)
    return candidate


class Scheduler:
    """Every tick: interrupted jobs, approval housekeeping, then each of the registry's schedules."""

    def __init__(self, svc: Bot, interval: float | None = None) -> None:
        self.svc = svc
        # Short: requests recorded from a terminal are posted on the next tick.
        self.interval = interval or configured_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dbops-scheduler", daemon=True)
        self._reconciled_at: datetime | None = None  # the first tick reads back what a restart missed

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick(datetime.now(timezone.utc))

    def tick(self, now: datetime) -> list[str]:
        started: list[str] = []
        connected = self.svc.reconnect()
        if connected:
            self.svc.waiting.beat()
            try:
                self.svc.recover_orphans()
            except Exception:
                log.exception("checking for interrupted jobs failed")
        approvals = self.svc.approvals  # degraded: the stand-in's, once a restore was asked for
        if approvals is not None:
            try:
                approvals.expire(now)
                approvals.post_unposted()
                if self._reconciled_at is None or now - self._reconciled_at >= RECONCILE_EVERY:
                    self._reconciled_at = now
                    approvals.reconcile(now)
            except Exception:
                log.exception("approval housekeeping failed")
        if not connected:
            return started  # degraded: nothing scheduled runs without the state store
        for schedule in self.svc.registry.schedules:
            try:
                slot = schedule.slot(self.svc, now)
                attempt = self.svc.store.claim(schedule.name, slot) if slot else None
                if attempt:
                    log.info("running scheduled %s for %s (attempt %s)", schedule.name, slot, attempt)
                    self._start(schedule, slot, attempt)
                    started.append(schedule.name)
            except Exception:
                log.exception("schedule %s failed", schedule.name)
        return started

    def _start(self, schedule: Schedule, slot: str, attempt: int) -> None:
        """Runs a claimed slot; the claim's heartbeat says it is alive, so a run whose process dies
        is claimed again by the next tick of any replica, and one that raises is retried later."""
        store, stop = self.svc.store, threading.Event()

        def beat() -> None:
            while not stop.wait(state_store.HEARTBEAT_S):
                try:
                    store.beat_claim(schedule.name, slot)
                except Exception:
                    log.warning("could not refresh the claim on %s %s", schedule.name, slot)

        def run() -> None:
            try:
                if attempt > 1:
                    self._say(f":repeat: running the scheduled `{schedule.name}` for {slot} again (attempt {attempt} "
                              f"of {state_store.SCHEDULE_ATTEMPTS}): the previous try did not finish.")
                schedule.run(self.svc)
                store.finish_claim(schedule.name, slot, "succeeded")
            except Exception as exc:
                log.exception("scheduled %s for %s failed", schedule.name, slot)
                store.finish_claim(schedule.name, slot, "failed", type(exc).__name__)
                more = ("it will be tried again in 15 minutes" if attempt < state_store.SCHEDULE_ATTEMPTS
                        else f"it was tried {attempt} times; run it by hand")
                self._say(f":x: the scheduled `{schedule.name}` for {slot} failed with an internal error "
                          f"({type(exc).__name__}; details in the bot's log): {more}.")
            finally:
                stop.set()

        threading.Thread(target=beat, name=f"dbops-claim-{schedule.name}", daemon=True).start()
        self.svc.runner.submit(run)

    def _say(self, text: str) -> None:
        if self.svc.settings.channel:
            self.svc.notifier.post(self.svc.settings.channel, text)
