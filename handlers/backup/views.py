"""Reading the catalog for people: the list, one backup's details, and how fresh the newest one is."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .. import fmt
from ..report import Outcome, Report, Section, Table
from .catalog import BackupCatalog, BackupRecord
from .manifest import describe_source
from .seal import FUTURE_SKEW
from .settings import BackupSettings

NO_KEY_LABEL = "not checked here (no key)"


def verified_label(r: BackupRecord) -> str:
    return {"verified": "yes", "pending": "not yet", "failed": "FAILED", "unrestorable": "UNRESTORABLE",
            "no_key": NO_KEY_LABEL}.get(r.verify_status, r.verify_status)


def no_key_note(settings: BackupSettings) -> str | None:
    """With backup.encrypt on and no DBOPS_BACKUP_KEY here (an operator's laptop): what still works."""
    if not settings.encrypt or settings.encryption_key() is not None:
        return None
    return (f"encrypted backups: {NO_KEY_LABEL}; DBOPS_BACKUP_KEY is not set here (verify, drill, restore and "
            "a new backup need it), the verification shown is the one recorded where the key is")


def _status_label(r: BackupRecord) -> str:
    if r.deleted_at:
        return "pruned"
    if r.status == "running" and r.phase:
        return f"running ({r.phase})"
    return r.status


TREND_OVER = 30  # backups in the size and duration trends of `backup list`


def list_backups(catalog: BackupCatalog, target_name: str | None, limit: int = 50, prefix: str = "dbops",
                 now: datetime | None = None) -> Report:
    """The catalog, newest first, with the trend of size and duration; `prefix` is how the reader
    types a command ("dbops", "/db"), for naming the next one when there is nothing to list."""
    records = catalog.list(target_name, limit=limit)
    title = f"Backups{' of ' + target_name if target_name else ''}"
    where = f" of {target_name}" if target_name else ""
    if not records:
        take = f"{prefix} backup" + (f" --target {target_name}" if target_name and target_name != "prod" else "")
        return Report(title=title, summary=f"No backups{where} yet. Take one: `{take}`",
                      data={"backups": []})
    rows = [[r.id, fmt.when(r.started_at), fmt.size(r.size_bytes), fmt.duration(r.duration_s),
             f"{r.total_rows:,}" if r.total_rows is not None else "-", _status_label(r), verified_label(r),
             r.requested_by] for r in records]
    good = [r for r in records if r.usable and r.verified]
    newest = f"; newest verified: {good[0].id}, {fmt.age(good[0].started_at, now or datetime.now(timezone.utc))}" \
        if good else "; none verified yet"
    sections = [Section("Backups", table=Table(
        ["id", "started", "size", "duration", "rows", "status", "verified", "asked by"], rows))]
    trends = _trends(records)
    if trends:
        sections.append(Section("Trend", text="\n".join(trends)))
    return Report(
        title=title,
        summary=f"{fmt.plural(len(records), 'backup')}{where}, newest first{newest}.",
        sections=sections,
        data={"backups": [r.as_dict() for r in records]},
    )


def _trends(records: list[BackupRecord]) -> list[str]:
    """Size and duration of the last completed backups, oldest to newest: a growing or slowing
    backup shows as a rising line long before it is a problem."""
    done = [r for r in records if r.status == "completed" and r.size_bytes is not None][:TREND_OVER][::-1]
    if len(done) < 2:
        return []
    return [f"Last {fmt.plural(len(done), 'completed backup')}, oldest to newest:",
            f"size:      {fmt.trend([r.size_bytes for r in done], fmt.size)}",
            f"duration:  {fmt.trend([r.duration_s for r in done], fmt.duration)}"]


def backup_info(catalog: BackupCatalog, backup_id: str) -> Report:
    r = catalog.require(backup_id)  # UsageError naming the id when unknown
    manifest = catalog.manifest(r.id)
    details = [
        ["id", r.id + (" (scheduled)" if r.scheduled else "")],
        ["target", r.target],
        ["database", r.database or "-"],
        ["status", _status_label(r) + (f": {r.error}" if r.error else "")],
        ["asked by", r.requested_by],
        ["started", fmt.when(r.started_at)],
        ["duration", fmt.duration(r.duration_s)],
        ["size", fmt.size(r.size_bytes)],
        ["format", f"{r.format or '-'}, {r.compression or '-'}" + (", encrypted" if r.encrypted else "")],
        ["stored at", r.location or "-"],
        ["SHA-256", r.sha256 or "-"],
        ["integrity", r.integrity_level or "-"],
        ["tables", f"{r.tables:,}" if r.tables is not None else "-"],
        ["rows", f"{r.total_rows:,}" if r.total_rows is not None else "-"],
        ["verified", verified_label(r) + (f" ({fmt.when(r.verified_at)}: {r.verify_detail})" if r.verified_at else "")],
    ]
    sections = []
    if r.verify_status in ("failed", "unrestorable"):
        sections.append(Section("Verification failed", r.verify_detail or verified_label(r), problem=True))
    if manifest:
        details += [["server", f"PostgreSQL {manifest.server_version}"], ["dumped with", manifest.pg_dump_version],
                    ["snapshot", manifest.snapshot]]
        if manifest.source:
            details.append(["dumped from", describe_source(manifest.source)])
        sections.append(Section("Tables", table=Table(
            ["table", "rows", "checksum"],
            [[f"{t['schema']}.{t['name']}", f"{t['rows']:,}", t.get("checksum") or "-"] for t in manifest.tables])))
    # A backup that did not complete, or whose archive did not verify, is not one to restore from.
    failed = r.status == "failed" or r.verify_status in ("failed", "unrestorable")
    if r.status == "failed":  # no archive: its size and verification say nothing
        summary = f"Backup {r.id} of `{r.target}` failed" + (f": {r.error}" if r.error else "") + "."
    else:
        summary = (f"Backup {r.id} of `{r.target}`: {_status_label(r)}, {fmt.size(r.size_bytes)}, "
                   f"verified: {verified_label(r)}.")
    return Report(title=f"Backup {r.id}", summary=summary, sections=sections,
                  facts=[(name[:1].upper() + name[1:], str(value)) for name, value in details],
                  outcome=Outcome.FAILED if failed else Outcome.OK,
                  data={"backup": r.as_dict(), "manifest": manifest.to_dict() if manifest else None})


def latest_verified(catalog: BackupCatalog, target_name: str) -> BackupRecord | None:
    """The newest completed, verified, not pruned backup of a target (what a restore drill should use);
    never one dated in the future (a wrong clock, or a planted backup: it would stay the newest)."""
    latest_true = datetime.now(timezone.utc) + FUTURE_SKEW
    for r in catalog.list(target_name):
        if r.usable and r.verified and r.started_at <= latest_true:
            return r
    return None


def freshness(state_dsn: str, target_name: str, settings: BackupSettings,
              now: datetime | None = None) -> tuple[bool, str]:
    """(ok, one line) for /db status, the digest and the staleness alarm: the newest attempt
    failing is a problem even while an older verified backup is still fresh."""
    now = now or datetime.now(timezone.utc)
    catalog = BackupCatalog(state_dsn)
    attempts = [r for r in catalog.list(target_name, limit=20) if r.status != "running"]
    newest = latest_verified(catalog, target_name)
    limit = timedelta(hours=settings.max_age_hours)
    latest = attempts[0] if attempts else None
    if latest is not None and (latest.status == "failed" or latest.verify_status in ("failed", "unrestorable")):
        what = "failed" if latest.status == "failed" else f"is {latest.verify_status.upper()} (verification)"
        why = latest.error if latest.status == "failed" else latest.verify_detail
        fallback = (f"; newest verified: {newest.id}, {fmt.age(newest.started_at, now)}" if newest is not None
                    else "; no verified backup")
        return False, (f"newest backup of `{target_name}`, {latest.id} ({fmt.age(latest.started_at, now)}), {what}"
                       + (f": {why}" if why else "") + fallback)
    if newest is None:
        return False, f"no verified backup of `{target_name}` yet"
    age = now - newest.started_at
    text = (f"newest verified backup of `{target_name}` is {newest.id}, {fmt.age(newest.started_at, now)} "
            f"({fmt.size(newest.size_bytes)})")
    if age > limit:
        return False, f"STALE: {text}; the alarm is at {settings.max_age_hours:g} h"
    note = no_key_note(settings)
    return True, text + (f"; {note}" if note else "")
