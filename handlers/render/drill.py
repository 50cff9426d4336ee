"""A restore drill on Render itself: point-in-time recovery into a new, billed instance (recovery.py),
verified against production, then deleted whatever happens. The same steps and report as the local drill.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from .. import fmt
from ..drill.result import DrillResult
from ..drill.runner import DrillInterrupted, _SigintDeferred
from ..drill.settings import DrillSettings
from ..postgres import short_version
from ..report import Check, Progress, ProgressFn, no_progress
from ..target import Target, dsn_secrets, scrub
from ..verification.plan import RENDER_PITR_DRILL, AgainstInventory, Options, capture_source, verify
from ..verification.steps import checks_outcome, run_step, run_steps
from .client import RenderClient, _iso
from .recovery import DRILL_PREFIX, InstanceNotDeleted, RecoveryCopy
from .settings import RenderSettings

__all__ = ["DRILL_PREFIX", "KIND", "RenderDrillOutcome", "run_render_drill"]

KIND = "render-pitr"


@dataclass
class RenderDrillOutcome:
    result: DrillResult
    alarm: str | None = None  # a billed instance left behind: post loudly


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
        self.options = Options.of(drill_settings, expected_indexes)
        self.progress, self.cancel, self.now = _quiet(progress), cancel, now
        self.copy = RecoveryCopy(client, postgres_id, settings, DRILL_PREFIX, self.progress, cancel, sleep, clock, now)
        self.secrets = self.copy.secrets + dsn_secrets(source.dsn)
        self.alarm: str | None = None
        self.interrupted = False
        self.reference: AgainstInventory | None = None
        self.result = DrillResult(backup_id="render-pitr", target=source.name, instance_kind=KIND,
                                  started_at=time.time())

    def run(self) -> RenderDrillOutcome:
        try:
            run_steps(self.result, [("create instance", self._create), ("restore", self._wait_available),
                                    ("verify", self._verify)], self._step, self.cancel)
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
        return scrub(text, self.secrets + self.copy.secrets)[:2000]

    def _record(self, check: Check) -> None:
        check.detail = self._clean(check.detail)
        self.result.checks.append(check)

    def _step(self, name: str, work) -> bool:
        return run_step(self.result, name, work, self.progress, self._clean, self._interrupted)

    # -- step 1: ask Render for the recovery instance ------------------------------------------
    def _create(self) -> str:
        restore_time = self.copy.restore_time()
        source, recovery = self.copy.source, self.copy.recovery
        self.result.procedure.append(
            f"Checked point-in-time recovery of {source.get('name')} ({self.postgres_id}, plan {source.get('plan')}, "
            f"PostgreSQL {source.get('version')}): {recovery.get('recoveryStatus')}, earliest restorable time "
            f"{recovery.get('startsAt')}.")
        # Production first: if it cannot be read, no billed instance is made for nothing.
        inventory = capture_source(self.source)
        self.reference = AgainstInventory(inventory, self.source.name)
        self.result.source_version = short_version(self.reference.source_version)
        self.result.procedure.append(
            f"Captured production's schema inventory and row counts ({len(inventory['tables'])} tables) "
            "as the reference.")
        self.result.versions["source server"] = f"PostgreSQL {source.get('version', '?')} on Render"
        self.result.backup_id = f"pitr@{_iso(restore_time)}"
        self.result.backup = {"created_at": _iso(restore_time), "format": "Render point-in-time recovery",
                              "compression": "", "size": 0, "encrypted": False, "integrity_level": "counts",
                              "tables": len(inventory["tables"]),
                              "rows": sum(int(t["rows"]) for t in inventory["tables"])}
        created = self.copy.start(restore_time)
        name = created["name"]
        self.result.recovery_point_age_s = round((self.now() - restore_time).total_seconds(), 1)
        plan = created.get("plan", "?")
        self.result.instance = (f"Render recovery instance {name} ({created['id']}), plan {plan}, "
                                f"region {created.get('region', '?')}")
        self.result.procedure.append(
            f"Asked Render (POST /postgres/{{id}}/recovery) for a new instance {name}, restored to "
            f"{_iso(restore_time)} ({fmt.duration(self.result.recovery_point_age_s)} before the request); "
            f"plan {plan}, billed while it exists.")
        return f"{name} ({created['id']}), restoring to {_iso(restore_time)}, plan {plan}"

    # -- step 2: Render restores; we wait ----------------------------------------------------
    def _wait_available(self) -> str:
        self.copy.wait_available()
        self.result.procedure.append(f"Waited {fmt.duration(self.copy.waited_s)} for Render to restore it "
                                     f"({self.copy.polls} status checks) until it was available.")
        return f"available after {fmt.duration(self.copy.waited_s)}"

    # -- step 3: verify the copy against production ------------------------------------------
    def _verify(self) -> str:
        before = len(self.result.checks)
        done = verify(self.copy.connection(), self.reference, RENDER_PITR_DRILL, self.options,
                      record=self._record, progress=self.progress, cancel=self.cancel, name="the recovery instance")
        self.result.versions["drill server"] = f"PostgreSQL {done.copy_version}"
        self.result.copy_version = short_version(done.copy_version)
        self.result.procedure.append(done.sentence("Read its connection info and verified it", self.reference))
        return checks_outcome(self.result.checks[before:])

    # -- step 4: delete it, whatever happened ------------------------------------------------
    def _delete(self) -> str:
        if self.copy.created is None:
            return "nothing to delete"
        try:
            self.copy.delete()
        except InstanceNotDeleted as exc:
            self.alarm = self._clean(str(exc))
            raise
        name, plan, existed = self.copy.created.get("name", "?"), self.copy.plan, self.copy.existed_s
        self.result.instance += f", existed {fmt.duration(existed)} (billed)"
        self.result.backup |= {"billed_s": existed, "plan": plan, "cost": self.copy.cost()}
        self.result.procedure.append(f"Deleted it (DELETE /postgres/{{id}}); the billed instance existed "
                                     f"{fmt.duration(existed)}: {self.copy.cost()}.")
        return f"deleted {name}; it existed {fmt.duration(existed)} (plan {plan})"


def _quiet(progress: ProgressFn) -> ProgressFn:
    def tell(p: Progress) -> None:
        try:
            progress(p)
        except Exception:  # noqa: BLE001 -- Slack being down must not fail a drill
            pass
    return tell
