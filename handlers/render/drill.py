"""A restore drill on Render itself: point-in-time recovery into a new, billed instance, verified against
production, then deleted whatever happens. The same steps and report as the local drill.

Render restores take 10 to 30 minutes; the wait polls with a growing interval, says how long it has
waited, and gives up at [render] wait_limit_minutes. Every wait goes through `sleep` and `clock`.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from .. import fmt
from ..drill import checks as C
from ..drill.result import DrillResult
from ..drill.runner import DrillInterrupted, _SigintDeferred
from ..drill.settings import DrillSettings
from ..drill.steps import StepFailed, checks_outcome, run_step
from ..errors import Cancelled, DbopsError
from ..report import Progress, ProgressFn, no_progress
from ..target import Target, dsn_secrets, scrub
from .client import RenderClient, _iso, parse_time
from .errors import RenderError
from .settings import RenderSettings
from .verify import capture_source, verify_copy

DRILL_PREFIX = "dbops-drill-"
KIND = "render-pitr"
_FAILED_STATES = {"recovery_failed", "unavailable", "suspended"}


class InstanceNotDeleted(RenderError):
    """DELETE kept failing: a billed instance is left. The message is the alarm."""


@dataclass
class RenderDrillOutcome:
    result: DrillResult
    alarm: str | None = None  # a billed instance left behind: post loudly


def drill_name(now: datetime) -> str:
    return f"{DRILL_PREFIX}{now.astimezone(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def delete_with_retries(client: RenderClient, instance: dict[str, Any], retries: int,
                        sleep: Callable[[float], Any]) -> bool:
    """Delete, retrying with backoff; True when deleted now, False when already gone. Raises
    InstanceNotDeleted (the alarm, naming the instance and its dashboard URL) in the end."""
    last = ""
    for attempt in range(retries + 1):
        try:
            return client.delete_postgres(instance["id"])
        except DbopsError as exc:
            last = str(exc)
        if attempt < retries:
            sleep(min(60.0, 5.0 * 2 ** attempt))
    raise InstanceNotDeleted(
        f"ALARM: the Render instance {instance.get('name', '?')} ({instance['id']}) could not be deleted after "
        f"{retries + 1} tries (last: {last}). It is billed until it is gone: delete it now in the Render "
        f"Dashboard: {instance.get('dashboardUrl') or 'https://dashboard.render.com'}")


def cleanup_leftover_instances(client: RenderClient, retries: int = 6,
                               sleep: Callable[[float], Any] = time.sleep) -> tuple[list[str], list[str]]:
    """Instances named dbops-drill-* that a crashed or killed drill left: deleted. Returns (lines for the
    channel, alarms for the ones that would not go)."""
    said, alarms = [], []
    for found in client.list_postgres():
        if not str(found.get("name", "")).startswith(DRILL_PREFIX):
            continue
        try:
            delete_with_retries(client, found, retries, sleep)
            said.append(f"deleted a leftover Render drill instance {found['name']} ({found['id']}, plan "
                        f"{found.get('plan', '?')}, created {found.get('createdAt', '?')})")
        except InstanceNotDeleted as exc:
            alarms.append(str(exc))
    return said, alarms


def run_render_drill(client: RenderClient, postgres_id: str, source: Target, settings: RenderSettings,
                     drill_settings: DrillSettings, expected_indexes: Iterable[Any] | None = None,
                     progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
                     sleep: Callable[[float], Any] | None = None, clock: Callable[[], float] = time.monotonic,
                     now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> RenderDrillOutcome:
    """Restore production to `restore_minutes_ago` in a new Render instance, verify it, delete it.

    Ctrl-C deletes the instance too and raises DrillInterrupted carrying the cancelled result."""
    return _PitrDrill(client, postgres_id, source, settings, drill_settings, expected_indexes, progress,
                      cancel or threading.Event(), sleep, clock, now).run()


class _PitrDrill:
    def __init__(self, client, postgres_id, source, settings, drill_settings, expected_indexes, progress, cancel,
                 sleep, clock, now) -> None:
        self.client, self.postgres_id, self.source = client, postgres_id, source
        self.settings, self.drill_settings = settings, drill_settings
        self.expected = list(expected_indexes) if expected_indexes is not None else None
        self.progress, self.cancel, self.clock, self.now = _quiet(progress), cancel, clock, now
        # Waiting for the restore stops at once on cancel; waiting between DELETE tries never does.
        self.sleep = sleep or (lambda s: cancel.wait(s))
        self.delete_sleep = sleep or time.sleep
        self.secrets = list(client.secrets) + dsn_secrets(source.dsn)
        self.created: dict[str, Any] | None = None  # the recovery instance, once Render has it
        self.created_at: float | None = None
        self.billed_s: float | None = None
        self.alarm: str | None = None
        self.interrupted = False
        self.reference: dict[str, Any] = {}
        self.result = DrillResult(backup_id="render-pitr", target=source.name, instance_kind=KIND,
                                  started_at=time.time())

    def run(self) -> RenderDrillOutcome:
        try:
            go = True
            for name, work in (("create instance", self._create), ("restore", self._wait_available),
                               ("verify", self._verify)):
                if go and self.cancel.is_set():
                    self.result.cancelled = True
                if not go or self.result.cancelled:
                    self.result.steps.append({"step": name, "started_at": time.time(), "seconds": 0.0,
                                              "outcome": "skipped", "detail": "cancelled before it started"
                                              if self.result.cancelled else "skipped: an earlier step failed"})
                    go = False
                    continue
                go = self._step(name, work)
        except KeyboardInterrupt:
            self._interrupted()
        finally:
            with _SigintDeferred() as deferred:
                self._step("delete instance", self._delete)
            if deferred.caught:
                self._interrupted()
            self.result.finished_at = time.time()
            if not self.interrupted:
                self.progress(Progress("done", 1.0, self.result.summary))
        if self.interrupted:
            raise DrillInterrupted(self.result)
        return RenderDrillOutcome(self.result, self.alarm)

    def _interrupted(self) -> None:
        self.interrupted = self.result.cancelled = True
        self.cancel.set()

    def _clean(self, text: str) -> str:
        return scrub(text, self.secrets)[:2000]

    def _record(self, check: C.Check) -> None:
        check.detail = self._clean(check.detail)
        self.result.checks.append(check.to_dict())

    def _step(self, name: str, work) -> bool:
        return run_step(self.result, name, work, self.progress, self._clean, self._interrupted)

    # -- step 1: ask Render for the recovery instance ------------------------------------------
    def _create(self) -> str:
        source = self.client.get_postgres(self.postgres_id)
        recovery = self.client.recovery_info(self.postgres_id)
        status = recovery.get("recoveryStatus")
        if status != "AVAILABLE":
            raise StepFailed(f"Render says point-in-time recovery of {source.get('name', self.postgres_id)} is "
                             f"{status}: nothing to restore from (`render status` says more)")
        now = self.now()
        latest = now - timedelta(minutes=self.settings.min_restore_age_minutes)
        restore_time = now - timedelta(minutes=self.settings.restore_minutes_ago)
        starts = parse_time(recovery.get("startsAt"))
        if starts is not None and restore_time < starts:
            restore_time = starts + timedelta(seconds=60)  # the earliest Render offers, with a margin
        if restore_time > latest:
            raise StepFailed(f"point-in-time recovery reaches back only to {recovery.get('startsAt')}: a restore "
                             f"needs a moment at least {self.settings.min_restore_age_minutes} minutes ago; "
                             "try again later")
        restore_time = restore_time.replace(microsecond=0)
        self.result.procedure.append(
            f"Checked point-in-time recovery of {source.get('name')} ({self.postgres_id}, plan {source.get('plan')}, "
            f"PostgreSQL {source.get('version')}): {status}, earliest restorable time {recovery.get('startsAt')}.")
        # Production first: if it cannot be read, no billed instance is made for nothing.
        self.reference = capture_source(self.source)
        self.result.procedure.append(
            f"Captured production's schema inventory and row counts ({len(self.reference['tables'])} tables) "
            "as the reference.")
        self.result.versions["source server"] = f"PostgreSQL {source.get('version', '?')} on Render"
        name = drill_name(now)
        self.result.backup_id = f"pitr@{_iso(restore_time)}"
        self.result.backup = {"created_at": _iso(restore_time), "format": "Render point-in-time recovery",
                              "compression": "", "size": 0, "encrypted": False, "integrity_level": "counts",
                              "tables": len(self.reference["tables"]),
                              "rows": sum(int(t["rows"]) for t in self.reference["tables"])}
        try:
            self.created = self.client.start_recovery(self.postgres_id, restore_time, name, self.settings.drill_plan)
        except DbopsError:
            # The request may have reached Render all the same: find it by name, so it is deleted.
            try:
                found = self.client.list_postgres([name])
                self.created = next((p for p in found if p.get("name") == name), None)
            except DbopsError:
                self.created = {"id": None, "name": name}  # looked for again at the next start-up
            raise
        finally:
            if self.created is not None:
                self.created_at = self.clock()
        self.result.recovery_point_age_s = round((self.now() - restore_time).total_seconds(), 1)
        plan = self.created.get("plan", "?")
        self.result.instance = (f"Render recovery instance {name} ({self.created['id']}), plan {plan}, "
                                f"region {self.created.get('region', '?')}")
        self.result.procedure.append(
            f"Asked Render (POST /postgres/{{id}}/recovery) for a new instance {name}, restored to "
            f"{_iso(restore_time)} ({fmt.duration(self.result.recovery_point_age_s)} before the request); "
            f"plan {plan}, billed while it exists.")
        return f"{name} ({self.created['id']}), restoring to {_iso(restore_time)}, plan {plan}"

    # -- step 2: Render restores; we wait ----------------------------------------------------
    def _wait_available(self) -> str:
        assert self.created is not None
        limit = self.settings.wait_limit_minutes * 60
        started = self.clock()
        interval = self.settings.poll_first_s
        polls = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled("the drill was cancelled")
            found = self.client.get_postgres(self.created["id"])
            polls += 1
            status = found.get("status")
            waited = self.clock() - started
            if status == "available":
                self.created = {**self.created, **found}
                self.result.procedure.append(f"Waited {fmt.duration(waited)} for Render to restore it "
                                             f"({polls} status checks) until it was available.")
                return f"available after {fmt.duration(waited)}"
            if status in _FAILED_STATES:
                raise StepFailed(f"Render's recovery instance became {status} after {fmt.duration(waited)}")
            if waited >= limit:
                raise StepFailed(f"the recovery instance was still {status} after {fmt.duration(waited)} "
                                 f"([render] wait_limit_minutes = {self.settings.wait_limit_minutes}): giving up; "
                                 "it is deleted")
            self.progress(Progress("restore", min(0.95, waited / limit),
                                   f"Render is restoring (status {status}, {fmt.duration(waited)} so far; "
                                   "Render restores take 10 to 30 minutes)"))
            self.sleep(max(0.0, min(interval, limit - waited)))
            interval = min(self.settings.poll_max_s, interval * 1.5)

    # -- step 3: verify the copy against production ------------------------------------------
    def _verify(self) -> str:
        assert self.created is not None
        info = self.client.connection_info(self.created["id"])
        self.secrets += info.secrets()
        for text in (info.internal, info.external):
            if text:
                self.secrets += dsn_secrets(text)
        dsn = info.internal if self.settings.connection == "internal" else info.external
        if not dsn:
            raise StepFailed(f"Render gave no {self.settings.connection} connection string for the recovery instance")
        before = len(self.result.checks)
        try:
            import psycopg

            with psycopg.connect(dsn, connect_timeout=15) as conn:
                self.result.versions["drill server"] = f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]}"
        except Exception as exc:  # noqa: BLE001 -- libpq's text may hold the host; it is scrubbed
            from ..target import connection_reason

            raise StepFailed(f"cannot connect to the recovery instance: {connection_reason(exc, dsn)}") from None
        done = verify_copy(dsn, self.reference, self.expected, amcheck=self.drill_settings.amcheck,
                           jobs=self.drill_settings.jobs, heapallindexed=self.drill_settings.amcheck_heapallindexed,
                           record=self._record, cancel=self.cancel)
        self.result.procedure.append("Read its connection info and verified it: " + ", ".join(done) + ".")
        return checks_outcome(self.result.checks[before:])

    # -- step 4: delete it, whatever happened ------------------------------------------------
    def _delete(self) -> str:
        if self.created is None:
            return "nothing to delete"
        name = self.created.get("name", "?")
        if not self.created.get("id"):
            raise StepFailed(f"Render's answer to the recovery request was lost: the instance {name} may exist; "
                             "the next start-up looks for it by name and deletes it")
        try:
            delete_with_retries(self.client, self.created, self.settings.delete_retries, self.delete_sleep)
        except InstanceNotDeleted as exc:
            self.alarm = self._clean(str(exc))
            raise
        self.billed_s = round(self.clock() - self.created_at, 1) if self.created_at is not None else None
        plan = self.created.get("plan", "?")
        self.result.instance += f", existed {fmt.duration(self.billed_s)} (billed)"
        self.result.backup |= {"billed_s": self.billed_s, "plan": plan}
        self.result.procedure.append(f"Deleted it (DELETE /postgres/{{id}}); the billed instance existed "
                                     f"{fmt.duration(self.billed_s)}, plan {plan}.")
        return f"deleted {name}; it existed {fmt.duration(self.billed_s)} (plan {plan})"


def _quiet(progress: ProgressFn) -> ProgressFn:
    def tell(p: Progress) -> None:
        try:
            progress(p)
        except Exception:  # noqa: BLE001 -- Slack being down must not fail a drill
            pass
    return tell
