"""`render status`: what Render itself keeps of a database. The instance, its point-in-time recovery
window against what the plan should give, and its logical exports."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import fmt
from ..report import Note, Outcome, Report, Section, Table, key_values
from .client import RenderClient, parse_time
from .settings import EXPORT_KEEP_DAYS, NO_BACKUP_INSTANCE_PLANS, RenderSettings


@dataclass
class RenderStatus:
    postgres_id: str
    instance: dict[str, Any]
    recovery: dict[str, Any]
    exports: list[dict[str, Any]]
    documented_days: int
    window_s: float | None  # how far back recovery reaches now
    newest_export_age_s: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    @property
    def line(self) -> str:
        """One line for `/db status` and the digest."""
        name = self.instance.get("name", self.postgres_id)
        if self.warnings:
            return f"Render {name}: " + "; ".join(self.warnings)
        reach = f"point-in-time recovery reaches back {fmt.duration(self.window_s)}" \
            if self.window_s is not None else "point-in-time recovery available"
        export = f", newest export {fmt.duration(self.newest_export_age_s)} old" \
            if self.newest_export_age_s is not None else ""
        return f"Render {name}: {reach} (plan gives {self.documented_days} days){export}"


def check_status(client: RenderClient, postgres_id: str, settings: RenderSettings,
                 now: datetime | None = None) -> RenderStatus:
    now = now or datetime.now(timezone.utc)
    instance = client.get_postgres(postgres_id)
    recovery = client.recovery_info(postgres_id)
    exports = client.list_exports(postgres_id)
    plan = str(instance.get("plan", "?"))
    warnings = []
    documented = 0 if plan in NO_BACKUP_INSTANCE_PLANS else settings.documented_window_days
    if plan in NO_BACKUP_INSTANCE_PLANS:
        warnings.append(f"the instance is on the {plan} plan, which has no backups at all: move it to a paid "
                        "instance type for point-in-time recovery")
    elif documented == 0:
        warnings.append(f"the {settings.workspace_plan} workspace plan gives no point-in-time recovery "
                        "([render] recovery_window_days)")
    status = recovery.get("recoveryStatus")
    starts = parse_time(recovery.get("startsAt"))
    window_s = max(0.0, (now - starts).total_seconds()) if starts else None
    if status == "NOT_AVAILABLE" and plan not in NO_BACKUP_INSTANCE_PLANS:
        warnings.append("Render says point-in-time recovery is NOT_AVAILABLE for this instance")
    elif status == "BACKUP_NOT_READY":
        warnings.append("Render says the first backup is not ready yet (BACKUP_NOT_READY): there is nothing "
                        "to recover to")
    elif status == "AVAILABLE" and documented and window_s is not None and \
            window_s < documented * 86400 - settings.window_slack_hours * 3600:
        warnings.append(f"point-in-time recovery reaches back only {fmt.duration(window_s)}, the "
                        f"{settings.workspace_plan} plan documents {documented} days")
    newest = exports[0] if exports else None
    export_age = None
    if newest is not None and parse_time(newest.get("createdAt")):
        export_age = max(0.0, (now - parse_time(newest["createdAt"])).total_seconds())
    if settings.exports_expected and (export_age is None or export_age > settings.export_max_age_days * 86400):
        warnings.append("no logical export in the last "
                        f"{settings.export_max_age_days} days ([render] exports_expected): create one in the "
                        "Dashboard (Recovery > Export) or with `POST /postgres/{id}/export`")
    return RenderStatus(postgres_id, instance, recovery, exports, documented, window_s, export_age, warnings)


def status_report(found: RenderStatus, target_name: str, prefix: str = "dbops") -> Report:
    i = found.instance
    disk = f"{i['diskSizeGB']} GB" if i.get("diskSizeGB") is not None else "-"
    disk += " (autoscaling)" if i.get("diskAutoscalingEnabled") else ""
    starts = found.recovery.get("startsAt")
    facts = key_values([["name", i.get("name", "-")], ["id", found.postgres_id], ["plan", i.get("plan", "-")],
                        ["PostgreSQL", i.get("version", "-")], ["region", i.get("region", "-")],
                        ["status", i.get("status", "-")], ["disk", disk],
                        ["high availability", "yes" if i.get("highAvailabilityEnabled") else "no"],
                        ["suspended", i.get("suspended", "-")],
                        ["point-in-time recovery", found.recovery.get("recoveryStatus", "-")],
                        ["earliest restorable time", fmt.when(parse_time(starts)) if starts else "-"],
                        ["reaches back", fmt.duration(found.window_s)],
                        ["the plan documents", f"{found.documented_days} days"]])
    export_rows = [[e.get("id", "?"), fmt.when(parse_time(e.get("createdAt"))) if e.get("createdAt") else "?"]
                   for e in found.exports[:10]]
    sections = [Section(f"Logical exports (Render keeps them {EXPORT_KEEP_DAYS} days)",
                        table=Table(["export", "created"], export_rows) if export_rows else None,
                        text="" if export_rows else "None. Make one in Render's Dashboard (Recovery > Export); "
                                                    f"`{prefix} render export-drill` then restores it.")]
    if found.warnings:
        sections.insert(0, Section("Warnings", notes=[Note.warning(w) for w in found.warnings], problem=True))
    name = i.get("name", found.postgres_id)
    summary = found.line if found.ok else f"Render {name}: {fmt.plural(len(found.warnings), 'warning')}"
    return Report(f"Render backups of {target_name}", summary, Outcome.OK if found.ok else Outcome.FAILED,
                  sections=sections, facts=facts,
                  data={"target": target_name, "postgres_id": found.postgres_id, "ok": found.ok,
                        "warnings": found.warnings,
                        "instance": {k: i.get(k) for k in ("name", "plan", "version", "region", "status",
                                                           "diskSizeGB", "highAvailabilityEnabled", "suspended",
                                                           "dashboardUrl")},
                        "recovery": {"status": found.recovery.get("recoveryStatus"), "starts_at": starts,
                                     "window_s": found.window_s, "documented_days": found.documented_days},
                        "exports": [{"id": e.get("id"), "created_at": e.get("createdAt")} for e in found.exports],
                        "newest_export_age_s": found.newest_export_age_s})
