"""Which backups to keep: the last N daily, M weekly and K monthly *verified* backups.

Rules, in order:
- Only verified backups count towards N/M/K; the newest verified backup is never deleted.
- Each daily/weekly/monthly slot keeps the newest verified backup of that day/week/month.
- A backup not verified yet is left alone (it may become the newest good one).
- A backup that failed verification (or is unrestorable) is deleted once a newer verified one exists.
- With no verified backup at all nothing is deleted: better too many archives than none.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import DbopsError
from ..report import Outcome, Report, Section, Table
from .catalog import BackupCatalog, BackupRecord
from .fmt import human_bytes, when
from .settings import BackupSettings, RetentionSettings
from .storage import S3Store
from .storecat import MANIFEST_SUFFIX


@dataclass
class RetentionPlan:
    keep: list[tuple[BackupRecord, str]]
    delete: list[tuple[BackupRecord, str]]


def plan_retention(records: list[BackupRecord], retention: RetentionSettings, tz: ZoneInfo) -> RetentionPlan:
    usable = sorted((r for r in records if r.usable), key=lambda r: r.started_at, reverse=True)
    verified = [r for r in usable if r.verified]
    reasons: dict[str, list[str]] = {}
    if verified:
        reasons.setdefault(verified[0].id, []).append("newest verified")
    for label, count, bucket in (
        ("daily", retention.daily, lambda d: d.date()),
        ("weekly", retention.weekly, lambda d: d.isocalendar()[:2]),
        ("monthly", retention.monthly, lambda d: (d.year, d.month)),
    ):
        seen: list = []
        for r in verified:
            slot = bucket(r.started_at.astimezone(tz))
            if slot in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(slot)
            reasons.setdefault(r.id, []).append(label)
    keep, delete = [], []
    newest_verified = verified[0].started_at if verified else None
    for r in usable:
        if r.id in reasons:
            keep.append((r, ", ".join(reasons[r.id])))
        elif r.verified:
            delete.append((r, "beyond retention"))
        elif r.verify_status == "pending":
            keep.append((r, "not verified yet (not counted)"))
        elif newest_verified is not None and r.started_at < newest_verified:
            delete.append((r, f"verification {r.verify_status}; a newer verified backup exists"))
        else:
            keep.append((r, f"verification {r.verify_status}, but no newer verified backup"))
    return RetentionPlan(keep, delete)


def prune(catalog: BackupCatalog, settings: BackupSettings, target_name: str, dry_run: bool) -> Report:
    records = catalog.list(target_name)
    plan = plan_retention(records, settings.retention, settings.tz)
    r = settings.retention
    policy = f"keeping {r.daily} daily, {r.weekly} weekly, {r.monthly} monthly verified backups"
    deleted, errors = [], []
    if not dry_run:
        for record, _ in plan.delete:
            try:
                delete_archive(record, catalog, settings)
                catalog.mark_deleted(record.id)
                deleted.append(record.id)
            except (DbopsError, OSError) as exc:
                errors.append(f"{record.id}: {exc}")
    freed = sum(rec.size_bytes or 0 for rec, _ in plan.delete if dry_run or rec.id in deleted)
    if not plan.delete:
        summary = f"Nothing to prune for `{target_name}` ({len(plan.keep)} backups kept; {policy})."
    elif dry_run:
        summary = (f"Would delete {len(plan.delete)} backup(s) of `{target_name}` ({human_bytes(freed)}), "
                   f"keep {len(plan.keep)}; {policy}. Run `backup prune` without --dry-run to delete.")
    else:
        summary = f"Deleted {len(deleted)} backup(s) of `{target_name}` ({human_bytes(freed)}), kept {len(plan.keep)}."
        if errors:
            summary += f" {len(errors)} could not be deleted: {'; '.join(errors)}"
    rows_delete = [[rec.id, when(rec.started_at), human_bytes(rec.size_bytes), rec.verify_status, why]
                   for rec, why in plan.delete]
    rows_keep = [[rec.id, when(rec.started_at), human_bytes(rec.size_bytes), rec.verify_status, why]
                 for rec, why in plan.keep]
    headers = ["id", "started", "size", "verification", "why"]
    return Report(
        title=f"Prune backups of {target_name}" + (" (dry run)" if dry_run else ""),
        summary=summary,
        outcome=Outcome.FAILED if errors else Outcome.OK,
        sections=[Section("Would delete" if dry_run else "Deleted", table=Table(headers, rows_delete)),
                  Section("Keep", table=Table(headers, rows_keep))],
        data={"dry_run": dry_run, "target": target_name,
              "delete": [rec.id for rec, _ in plan.delete], "keep": [rec.id for rec, _ in plan.keep],
              "deleted": deleted, "errors": errors, "freed_bytes": freed},
    )


def delete_archive(record: BackupRecord, catalog: BackupCatalog, settings: BackupSettings) -> None:
    """The manifest goes first: from then on storage no longer lists the backup; a kill before the
    archive is gone leaves an archive without a manifest, which the next start quarantines."""
    if record.storage == "s3":
        manifest = catalog.manifest(record.id)
        key = manifest.archive.key if manifest else None
        if key:
            store = S3Store(settings.s3)
            store.delete(key + MANIFEST_SUFFIX)
            store.delete(key)
        local = Path(settings.dir) / key.rsplit("/", 1)[-1] if key else None  # a kept local copy
    else:
        local = Path(record.location) if record.location else None
    if local is not None:
        local.with_name(local.name + MANIFEST_SUFFIX).unlink(missing_ok=True)
        local.unlink(missing_ok=True)
