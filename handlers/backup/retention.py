"""Which backups to keep: the last N daily, M weekly and K monthly *verified* backups, and never the
last good one.

Rules, in order:
- Only verified backups count towards N/M/K; the newest verified backup is never deleted.
- Each daily/weekly/monthly slot keeps the newest verified backup of that day/week/month.
- The newest backup that passed a restore drill is never deleted: a drilled backup is only ever
  deleted in favour of a newer drilled one.
- A backup taken before a migration ("migration r012") is kept `pre_migration_days`, by its own rule.
- A backup not verified yet, or checked without the key ("no_key"), is left alone.
- A backup that failed verification (or is unrestorable) is deleted once a newer verified one exists.
- With no verified backup at all nothing is deleted: better too many archives than none.

`prune` trusts no old flag: before deleting anything it re-checks (SHA-256 against the manifest)
every backup it keeps as the reason for deleting another; one that fails is marked failed and the
plan is made again without it, so a truncated newest archive never costs the only intact one.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from .. import fmt
from ..errors import DbopsError, UsageError
from ..report import Outcome, Report, Section, Table
from .catalog import BackupCatalog, BackupRecord
from .settings import BackupSettings, RetentionSettings
from .storage import S3Store, StorageError, prepare_dir
from .storage_catalog import MANIFEST_SUFFIX, VERIFIED_SUFFIX, storage_for, write_index
from .views import NO_KEY_LABEL


@dataclass
class RetentionPlan:
    keep: list[tuple[BackupRecord, str]]
    delete: list[tuple[BackupRecord, str]]

    def reasons_to_delete(self) -> list[BackupRecord]:
        """The kept backups that justify a deletion: the verified or drilled ones."""
        return [r for r, why in self.keep if r.verified or "drill" in why]


def plan_retention(records: list[BackupRecord], retention: RetentionSettings, tz: ZoneInfo,
                   drill_passed: set[str] | frozenset[str] = frozenset(), now: datetime | None = None) -> RetentionPlan:
    now = now or datetime.now(timezone.utc)
    usable = sorted((r for r in records if r.usable), key=lambda r: r.started_at, reverse=True)
    verified = [r for r in usable if r.verified]
    reasons = never_deleted(records, drill_passed)
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
    window = timedelta(days=retention.pre_migration_days)
    for r in usable:
        if r.requested_by.startswith("migration ") and now - r.started_at <= window:
            reasons.setdefault(r.id, []).append(f"taken before {r.requested_by} (kept {retention.pre_migration_days} "
                                                "days)")
    keep, delete = [], []
    newest_verified = verified[0].started_at if verified else None
    for r in usable:
        if r.id in reasons:
            keep.append((r, ", ".join(reasons[r.id])))
        elif r.verified:
            delete.append((r, "beyond retention"))
        elif r.verify_status in ("pending", "no_key"):
            keep.append((r, "not verified yet (not counted)" if r.verify_status == "pending"
                         else "not checked here (no key): not counted, not held against it"))
        elif newest_verified is not None and r.started_at < newest_verified:
            delete.append((r, f"verification {r.verify_status}; a newer verified backup exists"))
        else:
            keep.append((r, f"verification {r.verify_status}, but no newer verified backup"))
    return RetentionPlan(keep, delete)


def never_deleted(records: list[BackupRecord], drill_passed: set[str] | frozenset[str]) -> dict[str, list[str]]:
    """The backups neither prune nor `backup delete` ever deletes, with why: the newest verified one
    and the newest one that passed a restore drill (only a newer one of each may take its place)."""
    usable = sorted((r for r in records if r.usable), key=lambda r: r.started_at, reverse=True)
    reasons: dict[str, list[str]] = {}
    verified = [r for r in usable if r.verified]
    if verified:
        reasons.setdefault(verified[0].id, []).append("newest verified")
    drilled = [r for r in usable if r.id in drill_passed and r.verify_status not in ("failed", "unrestorable")]
    if drilled:
        reasons.setdefault(drilled[0].id, []).append("newest that passed a drill")
    return reasons


def delete_backup(catalog: BackupCatalog, settings: BackupSettings, backup_id: str) -> Report:
    """`backup delete ID`: one backup, archive and manifest, by hand; never the newest verified or the
    newest drilled one of its target, as prune, and never one still running (`backup cancel` stops it)."""
    record = catalog.require(backup_id)
    if record.deleted_at is not None:
        raise UsageError(f"backup {record.id} was deleted already ({fmt.when(record.deleted_at)})")
    if record.status == "running":
        raise UsageError(f"backup {record.id} is still running: `backup cancel --target {record.target}` stops it")
    kept = never_deleted(catalog.list(record.target), passed_drills(catalog.state_dsn, record.target))
    if record.id in kept:
        raise UsageError(f"backup {record.id} is the {' and the '.join(kept[record.id])} backup of "
                         f"`{record.target}`: it is never deleted (prune keeps it too). Take and verify a newer "
                         "one first; then this one may go")
    had_archive = record.usable
    if had_archive:
        delete_archive(record, catalog, settings)  # StorageError: nothing is marked, the catalog still lists it
    catalog.mark_deleted(record.id)
    try:
        write_index(storage_for(settings))
    except (StorageError, OSError):
        pass  # rewritten at the next backup; the manifests are the truth
    what = f"its archive ({fmt.size(record.size_bytes)}) and manifest" if had_archive else \
        f"its catalog entry (it was {record.status}: no archive)"
    return Report(title=f"Delete backup {record.id}",
                  summary=f"Deleted backup {record.id} of `{record.target}` ({fmt.when(record.started_at)}): "
                          f"{what}.",
                  data={"backup_id": record.id, "target": record.target, "freed_bytes":
                        record.size_bytes if had_archive else 0, "had_archive": had_archive})


def passed_drills(state_dsn: str, target: str) -> set[str]:
    try:
        with psycopg.connect(state_dsn, autocommit=True, connect_timeout=10) as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT backup_id FROM dbops.drills WHERE target = %s"
                                               " AND passed", (target,))}
    except psycopg.errors.UndefinedTable:
        return set()


def recheck(record: BackupRecord, catalog: BackupCatalog, settings: BackupSettings) -> str | None:
    """None when the stored archive's SHA-256 still matches its manifest; else what is wrong."""
    from .verify import ArchiveDamaged, checked_archive

    manifest = catalog.manifest(record.id)
    if manifest is None and record.storage == "s3":
        return "the catalog has no manifest for it (nor the object key)"
    try:
        with tempfile.TemporaryDirectory(prefix=f".{record.id}.recheck-", suffix=".partial",
                                         dir=prepare_dir(Path(settings.dir))) as work:
            checked_archive(record, manifest, settings, Path(work))
    except ArchiveDamaged as exc:
        return str(exc)
    return None


def _plan_with_rechecks(catalog: BackupCatalog, settings: BackupSettings, target_name: str
                        ) -> tuple[RetentionPlan, list[str]]:
    records = catalog.list(target_name)
    drilled = passed_drills(catalog.state_dsn, target_name)
    checked: set[str] = set()
    found_bad: list[str] = []
    while True:
        plan = plan_retention(records, settings.retention, settings.tz, drilled)
        if not plan.delete:
            return plan, found_bad
        bad = []
        for r in plan.reasons_to_delete():
            if r.id in checked:
                continue
            checked.add(r.id)
            problem = recheck(r, catalog, settings)  # StorageError: nothing is deleted
            if problem:
                bad.append((r, problem))
        if not bad:
            return plan, found_bad
        for r, problem in bad:
            catalog.set_verification(r.id, "failed", f"re-checked before pruning: {problem}")
            r.verify_status, r.verify_detail = "failed", problem
            drilled.discard(r.id)
            found_bad.append(f"{r.id}: {problem}")


def prune(catalog: BackupCatalog, settings: BackupSettings, target_name: str, dry_run: bool) -> Report:
    try:
        plan, found_bad = _plan_with_rechecks(catalog, settings, target_name)
    except StorageError as exc:
        return Report(title=f"Prune backups of {target_name}", outcome=Outcome.FAILED,
                      summary=f"Nothing was deleted: the backups kept could not be re-checked ({exc}).",
                      data={"dry_run": dry_run, "target": target_name, "delete": [], "keep": [], "deleted": [],
                            "errors": [str(exc)], "freed_bytes": 0})
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
    if deleted:
        try:
            write_index(storage_for(settings))
        except (StorageError, OSError):
            pass  # rewritten at the next backup; the manifests are the truth
    freed = sum(rec.size_bytes or 0 for rec, _ in plan.delete if dry_run or rec.id in deleted)
    if not plan.delete:
        summary = f"Nothing to prune for `{target_name}` ({fmt.plural(len(plan.keep), 'backup')} kept; {policy})."
    elif dry_run:
        summary = (f"Would delete {fmt.plural(len(plan.delete), 'backup')} of `{target_name}` ({fmt.size(freed)}), "
                   f"keep {len(plan.keep)}; {policy}. Run `backup prune` without --dry-run to delete.")
    else:
        summary = f"Deleted {fmt.plural(len(deleted), 'backup')} of `{target_name}` ({fmt.size(freed)}), kept {len(plan.keep)}."
        if errors:
            summary += f" {len(errors)} could not be deleted: {'; '.join(errors)}"
    if found_bad:
        summary += (f" Re-checked before deleting anything: {fmt.plural(len(found_bad), 'kept backup')} no longer "
                    f"{'matches its' if len(found_bad) == 1 else 'match their'} "
                    f"manifest and {'was' if len(found_bad) == 1 else 'were'} marked FAILED ({'; '.join(found_bad)}).")
    def row(rec: BackupRecord, why: str) -> list:
        shown = NO_KEY_LABEL if rec.verify_status == "no_key" else rec.verify_status  # a word, not a code
        return [rec.id, fmt.when(rec.started_at), fmt.size(rec.size_bytes), shown, why]

    rows_delete = [row(rec, why) for rec, why in plan.delete]
    rows_keep = [row(rec, why) for rec, why in plan.keep]
    headers = ["id", "started", "size", "verification", "why"]
    return Report(
        title=f"Prune backups of {target_name}" + (" (dry run)" if dry_run else ""),
        summary=summary,
        outcome=Outcome.FAILED if errors else Outcome.OK,
        sections=[Section("Would delete" if dry_run else "Deleted", table=Table(headers, rows_delete)),
                  Section("Keep", table=Table(headers, rows_keep))],
        data={"dry_run": dry_run, "target": target_name,
              "delete": [rec.id for rec, _ in plan.delete], "keep": [rec.id for rec, _ in plan.keep],
              "deleted": deleted, "errors": errors, "freed_bytes": freed, "found_damaged": found_bad},
    )


def delete_archive(record: BackupRecord, catalog: BackupCatalog, settings: BackupSettings) -> None:
    """The verification record first, then the manifest: from then on storage no longer lists the
    backup; a kill before the archive is gone leaves an archive without a manifest, which the next
    start quarantines."""
    if record.storage == "s3":
        manifest = catalog.manifest(record.id)
        key = manifest.archive.key if manifest else None
        if key:
            store = S3Store(settings.s3)
            for name in (key + VERIFIED_SUFFIX, key + MANIFEST_SUFFIX, key):
                store.delete(name)
        local = Path(settings.dir) / key.rsplit("/", 1)[-1] if key else None  # a kept local copy
    else:
        local = Path(record.location) if record.location else None
    if local is not None:
        for suffix in (VERIFIED_SUFFIX, MANIFEST_SUFFIX):
            local.with_name(local.name + suffix).unlink(missing_ok=True)
        local.unlink(missing_ok=True)
