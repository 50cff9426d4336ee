"""`restore --at TIME --from render`: Render's point-in-time recovery of production into a new instance
at that moment ("someone ran a DELETE at 10:42": restore to 10:41), waited for, verified against the
manifest of the bot's backup nearest before that moment, and kept for the people who asked: its
connection string goes to the requester only, the report says what it costs a day and how it goes.

Production is never touched: Render restores into a new instance (POST /postgres/{id}/recovery),
and the bot only reads the new one. A moment outside the recovery window Render reports (GET
/postgres/{id}/recovery, up to [render] min_restore_age_minutes ago) is refused before anything is
made. A copy Render fails to make, or one not ready in [render] wait_limit_minutes, is deleted; one
made is kept [render] restore_keep_hours (0: until `render delete-instance` deletes it).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from .. import fmt
from ..drill.result import DrillResult, check_headline, headline_list
from ..errors import DbopsError, UsageError
from ..report import Check, Outcome, ProgressFn, Report, Section, Table, key_values, no_progress
from ..target import describe_dsn, scrub
from ..verification import plan
from ..verification.steps import StepFailed, checks_outcome, run_step
from .client import RenderClient, _iso, parse_time
from .recovery import InstanceNotDeleted, RecoveryCopy, RecoveryFailed, delete_with_retries, monthly_price
from .settings import RenderSettings

RESTORE_PREFIX = "dbops-restore-"  # never in the start-up cleanup of drill copies: these are kept on purpose
KIND = "render-pitr-restore"


def parse_moment(text: str) -> datetime:
    """`--at`: "2026-12-07 10:41" (UTC), "2026-12-07T10:41:30Z" or with an offset ("...+01:00")."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text!r} is not a moment: give it like '2026-12-07 10:41' (UTC) or "
                         "'2026-12-07T10:41:00+01:00'") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@dataclass
class Reference:
    """The bot's backup nearest before the moment: what the new instance is verified against."""

    backup_id: str
    created_at: str
    manifest: dict[str, Any]


@dataclass
class PitrRestore:
    report: Report
    # The new instance's connection string, for the requester only (a secret: never in the report).
    connection: str | None = field(default=None, repr=False)
    secrets: list[str] = field(default_factory=list, repr=False)

    def handover_text(self) -> str:
        name = self.report.data.get("instance", {}).get("name", "the new instance")
        return (f"Connection string of {name}, restored to {self.report.data.get('restored_to')} (only for you; "
                f"it reaches a copy of production's data):\n{self.connection}")


def restore_point_in_time(client: RenderClient, postgres_id: str, at: datetime, settings: RenderSettings, *,
                          source_name: str, reference: Reference | None, expected_indexes: Iterable[Any] | None,
                          amcheck: bool, jobs: int, smoke_queries: Iterable[Any] = (), smoke_timeout_s: int = 60,
                          progress: ProgressFn = no_progress,
                          cancel: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
                          clock: Callable[[], float] = time.monotonic,
                          now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> PitrRestore:
    """Refuses (UsageError, nothing made) a moment outside the window; else makes, waits for and verifies
    the new instance, keeping it unless Render could not make it or it was cancelled."""
    cancel = cancel or threading.Event()
    copy = RecoveryCopy(client, postgres_id, settings, RESTORE_PREFIX, progress, cancel, sleep, clock, now)
    try:
        earliest, latest = copy.window()
    except RecoveryFailed as exc:
        raise UsageError(str(exc)) from None
    at = at.replace(microsecond=0)
    if (earliest is not None and at < earliest) or at > latest:
        raise UsageError(f"{fmt.when(at)} is outside the point-in-time recovery window of "
                         f"{copy.source.get('name', postgres_id)}: from {fmt.when(earliest) if earliest else '?'} to "
                         f"{fmt.when(latest)} (now minus [render] min_restore_age_minutes = "
                         f"{settings.min_restore_age_minutes}); nothing was made. Pick a moment in it")
    options = plan.Options(jobs=jobs, amcheck=amcheck,
                           expected_indexes=tuple(expected_indexes) if expected_indexes is not None else None,
                           smoke_queries=tuple(smoke_queries), smoke_timeout_s=smoke_timeout_s)
    return _Run(copy, source_name, at, reference, options, progress, cancel, now).execute()


class _Run:
    def __init__(self, copy: RecoveryCopy, source_name, at, reference, options: plan.Options, progress, cancel,
                 now) -> None:
        self.copy, self.settings, self.at, self.reference = copy, copy.settings, at, reference
        self.options, self.cancel, self.now = options, cancel, now
        self.progress = progress
        self.source_name = source_name
        self.dsn: str | None = None
        self.keep = True
        self.result = DrillResult(backup_id=f"pitr@{_iso(at)}", target=source_name, instance_kind=KIND,
                                  started_at=time.time())

    def _clean(self, text: str) -> str:
        return scrub(text, self.copy.secrets)[:2000]

    def _record(self, check: Check) -> None:
        check.detail = self._clean(check.detail)
        self.result.checks.append(check)

    def _step(self, name: str, work) -> bool:
        return run_step(self.result, name, work, self.progress, self._clean, self.cancel.set)

    def execute(self) -> PitrRestore:
        go = all(self._step(name, work) for name, work in (
            ("create instance", self._create), ("restore", self._wait), ("verify", self._verify)))
        if not go and (self.result.cancelled or self.copy.created is not None and not self._available()):
            self.keep = False  # nothing usable was made: it goes, it would only be billed
        if not self.keep and self.copy.created is not None:
            self._step("delete instance", self._delete)
        self.result.finished_at = time.time()
        return PitrRestore(self._report(go), self.dsn if self.keep and go else None, list(self.copy.secrets))

    def _available(self) -> bool:
        return (self.copy.created or {}).get("status") == "available"

    # -- steps ------------------------------------------------------------------------
    def _create(self) -> str:
        created = self.copy.start(self.at)
        return (f"{created['name']} ({created['id']}), restoring {self.copy.source.get('name')} to "
                f"{fmt.when(self.at)}, plan {self.copy.plan}")

    def _wait(self) -> str:
        self.copy.wait_available()
        return f"available after {fmt.duration(self.copy.waited_s)} ({self.copy.polls} status checks)"

    def _verify(self):
        self.dsn = self.copy.connection()
        try:
            import psycopg

            with psycopg.connect(self.dsn, connect_timeout=15) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
            self.result.versions["restored instance"] = f"PostgreSQL {version}"
        except Exception as exc:  # noqa: BLE001 -- libpq's text may hold the host; it is scrubbed
            from ..target import connection_reason

            raise StepFailed(f"cannot connect to the new instance: {connection_reason(exc, self.dsn)}") from None
        before = len(self.result.checks)
        ref = self.reference
        reference = (plan.AgainstInventory(ref.manifest, self.source_name, ref.manifest.get("server_version"),
                                           what=f"backup {ref.backup_id}") if ref is not None else
                     plan.NoReference(f"the bot has no backup of `{self.source_name}` from before "
                                      f"{fmt.when(self.at)} to compare the instance with", self.source_name))
        plan.verify(self.dsn, reference, plan.PITR_RESTORE, self.options, record=self._record,
                    progress=self.progress, cancel=self.cancel, name="the new instance")
        return checks_outcome(self.result.checks[before:])

    def _delete(self) -> str:
        try:
            self.copy.delete()
        except InstanceNotDeleted as exc:
            self.result.error = self._clean(str(exc))
            raise
        return f"deleted {(self.copy.created or {}).get('name', '?')}: nothing usable was made ({self.copy.cost()})"

    # -- the report ---------------------------------------------------------------------------
    def _report(self, go: bool) -> Report:
        r, created = self.result, self.copy.created or {}
        name, ident = created.get("name", "?"), created.get("id", "?")
        verified = go and not r.failed_checks
        per_day = daily_cost(self.settings, self.copy.plan, created.get("diskSizeGB"))
        keep_until = (self.now() + timedelta(hours=self.settings.restore_keep_hours)
                      if self.settings.restore_keep_hours else None)
        how_to_delete = (f"`render delete-instance {name}` (approvers) deletes it; the bot deletes it by itself at "
                         f"{fmt.when(keep_until)} ([render] restore_keep_hours = {self.settings.restore_keep_hours})"
                         if keep_until else f"`render delete-instance {name}` (approvers) deletes it; it is kept "
                                            "until then ([render] restore_keep_hours = 0)")
        against = (f"backup {self.reference.backup_id} ({fmt.when_written(self.reference.created_at)}), the bot's "
                   f"nearest before it" if self.reference else "no backup of the bot (none from before that moment)")
        if r.cancelled:
            summary = f"Point-in-time restore to {fmt.when(self.at)} cancelled; the new instance was deleted."
        elif not go and not self.keep:
            summary = f"Point-in-time restore to {fmt.when(self.at)} FAILED: {r.error or 'see the steps'}"
        elif verified:
            made = len(r.checks) - len(r.not_run)
            not_run = f" ({len(r.not_run)} not run)" if r.not_run else ""
            summary = (f"Restored {self.copy.source.get('name')} to {fmt.when(self.at)} into a new Render instance "
                       f"{name}, verified against {against}: {made} checks passed{not_run}. Production was not "
                       f"touched. It is billed {per_day}; {how_to_delete}.")
        else:
            failed = headline_list([check_headline(c) for c in r.failed_checks]) or r.error or "see the steps"
            summary = (f"Restored {self.copy.source.get('name')} to {fmt.when(self.at)} into {name}, but its "
                       f"checks FAILED ({failed}): look before pointing anything at it. It is billed {per_day}; "
                       f"{how_to_delete}.")
        facts = [["restored to", fmt.when(self.at)], ["from", f"{self.copy.source.get('name')} "
                                                              f"({self.copy.postgres_id}), never changed"],
                 ["new instance", f"{name} ({ident}), plan {self.copy.plan}, region {created.get('region', '?')}"],
                 ["where", describe_dsn(self.dsn) if self.dsn else "-"],
                 ["dashboard", created.get("dashboardUrl") or "-"], ["verified against", against],
                 ["cost", per_day], ["kept", "deleted" if not self.keep else
                                     (f"until {fmt.when(keep_until)}" if keep_until else "until deleted")]]
        sections = [Section("Steps", table=Table(["step", "took", "outcome", "detail"], [
            [s["step"], fmt.duration(s["seconds"]), s["outcome"], s.get("detail", "")] for s in r.steps])),
            Section("Checks", checks=r.checks)]
        if self.keep and go:
            sections.append(Section("Next steps", text=(
                f"1. Copy the rows you need out of {name} (its connection string went to the requester only), "
                "or point the application at it: Dashboard > the web service > Environment > DATABASE_URL.\n"
                f"2. Delete it when done: {how_to_delete}.")))
        return Report(title=f"Point-in-time restore of {self.source_name} to {fmt.when(self.at)}", summary=summary,
                      outcome=Outcome.OK if verified and self.keep else Outcome.FAILED, facts=key_values(facts),
                      sections=sections,
                      data={"restored_to": _iso(self.at), "kept": self.keep and go, "verified": verified,
                            "instance": {"name": name, "id": ident, "plan": self.copy.plan},
                            "reference_backup": self.reference.backup_id if self.reference else None,
                            "cost_per_day": per_day, "keep_until": _iso(keep_until) if keep_until else None,
                            "steps": r.steps, "checks": [c.to_dict() for c in r.checks],
                            "cancelled": r.cancelled})


def daily_cost(settings: RenderSettings, plan: str | None, disk_gb: float | None) -> str:
    """"about $0.78 a day (basic_1gb, 15 GB; $23.50 a month)", from [render] plan_prices_usd."""
    monthly = monthly_price(settings, plan, disk_gb)
    disk = f", {disk_gb:g} GB" if disk_gb else ""
    if monthly is None:
        return f"at plan {plan or '?'}'s price, which dbops does not know (set [render] plan_prices_usd)"
    return f"about ${monthly / 30:,.2f} a day ({plan}{disk}; ${monthly:,.2f} a month at Render's list prices)"


def expired_restores(client: RenderClient, settings: RenderSettings, now: datetime,
                     sleep: Callable[[float], Any] = time.sleep) -> tuple[list[str], list[str]]:
    """Point-in-time restore instances older than [render] restore_keep_hours, deleted (none when 0):
    (lines for the channel, alarms for the ones that would not go)."""
    if not settings.restore_keep_hours:
        return [], []
    said, alarms = [], []
    for found in client.list_postgres():
        made = parse_time(found.get("createdAt"))
        if not str(found.get("name", "")).startswith(RESTORE_PREFIX) or made is None:
            continue
        if now - made < timedelta(hours=settings.restore_keep_hours):
            continue
        try:
            delete_with_retries(client, found, settings.delete_retries, sleep)
            said.append(f"deleted the point-in-time restore instance {found['name']} ({found['id']}), made "
                        f"{fmt.when(made)}: older than [render] restore_keep_hours = {settings.restore_keep_hours}")
        except InstanceNotDeleted as exc:
            alarms.append(str(exc))
    return said, alarms


def delete_restore_instance(client: RenderClient, name_or_id: str, settings: RenderSettings, protected: set[str],
                            sleep: Callable[[float], Any] = time.sleep) -> Report:
    """`render delete-instance`: one instance a point-in-time restore made (named dbops-restore-*), never
    another (a target's own instance is in `protected`)."""
    wanted = name_or_id.strip()
    found = [p for p in client.list_postgres() if wanted in (p.get("id"), p.get("name"))]
    if not found:
        raise UsageError(f"Render has no instance named or with the id `{wanted}` that this API key can see")
    instance = found[0]
    if instance.get("id") in protected or not str(instance.get("name", "")).startswith(RESTORE_PREFIX):
        raise UsageError(f"`{instance.get('name')}` ({instance.get('id')}) was not made by a point-in-time restore "
                         f"of dbops (their names start with {RESTORE_PREFIX}): dbops deletes no other instance")
    try:
        delete_with_retries(client, instance, settings.delete_retries, sleep)
    except DbopsError as exc:
        raise type(exc)(str(exc)) from None
    return Report(title=f"Delete {instance['name']}",
                  summary=f"Deleted the Render instance {instance['name']} ({instance['id']}, plan "
                          f"{instance.get('plan', '?')}): no longer billed.",
                  data={"id": instance["id"], "name": instance["name"]})
