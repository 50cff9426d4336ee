"""Retention: which backups prune deletes, on a real catalog with real files."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers.backup import BackupCatalog, BackupSettings, RetentionSettings, list_backups, plan_retention, prune
from handlers.backup.storage import sha256_file

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def state_dsn(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


def add_backup(state_dsn: str, folder: Path, started: datetime, verify_status: str = "verified",
               scheduled: bool = True, requested_by: str = "scheduler") -> str:
    """A completed backup row with a real (small) archive file, as take_backup leaves it."""
    catalog = BackupCatalog(state_dsn)
    backup_id = catalog.start("prod", "scheduler", scheduled=scheduled)
    path = folder / f"{backup_id}_prod.dump"
    path.write_bytes(b"PGDMP" + backup_id.encode() * 100)
    path.with_name(path.name + ".manifest.json").write_text("{}")
    with psycopg.connect(state_dsn, autocommit=True) as conn:
        conn.execute("UPDATE dbops.backups SET status = 'completed', started_at = %s, storage = 'local',"
                     " location = %s, size_bytes = 1000, verify_status = %s, sha256 = %s, requested_by = %s"
                     " WHERE id = %s", (started, str(path), verify_status, sha256_file(path), requested_by, backup_id))
    return backup_id


def record_drill(state_dsn: str, backup_id: str, outcome: str = "passed") -> None:
    with psycopg.connect(state_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO dbops.drills (target, backup_id, requested_by, started_at, finished_at, outcome,"
                     " instance_kind, total_s, summary, result) VALUES ('prod', %s, 'scheduler', now(), now(), %s,"
                     " 'local', 1, 'drill', '{}')", (backup_id, outcome))


def test_daily_weekly_monthly_slots(state_dsn, tmp_path):
    ids = {}
    for days_ago in range(0, 70):  # one verified backup a day for 70 days, two on the newest day
        ids[days_ago] = add_backup(state_dsn, tmp_path, NOW - timedelta(days=days_ago, hours=1))
    extra_today = add_backup(state_dsn, tmp_path, NOW - timedelta(minutes=5))
    records = BackupCatalog(state_dsn).list("prod")
    plan = plan_retention(records, RetentionSettings(daily=3, weekly=2, monthly=3), timezone.utc)
    kept = {r.id: why for r, why in plan.keep}
    # Newest verified, then the newest of each of the 3 newest days (today's is the extra one).
    assert "newest verified" in kept[extra_today] and "daily" in kept[extra_today]
    assert "daily" in kept[ids[1]] and "daily" in kept[ids[2]] and ids[0] not in kept
    # 2025-06-30 is a Monday: the newest backup of the previous ISO week is from Sunday the 29th.
    assert "weekly" in kept[ids[1]]
    # Months: June (today), May 31, April 30.
    may31 = ids[30]
    april30 = ids[61]
    assert "monthly" in kept[may31] and "monthly" in kept[april30]
    assert len(plan.keep) == 5 and len(plan.delete) == 71 - 5


def test_newest_verified_is_never_deleted_and_unverified_left_alone(state_dsn, tmp_path):
    old_failed = add_backup(state_dsn, tmp_path, NOW - timedelta(days=3), verify_status="failed")
    verified = add_backup(state_dsn, tmp_path, NOW - timedelta(days=2))
    newer_failed = add_backup(state_dsn, tmp_path, NOW - timedelta(days=1), verify_status="unrestorable")
    pending = add_backup(state_dsn, tmp_path, NOW - timedelta(hours=1), verify_status="pending")
    records = BackupCatalog(state_dsn).list("prod")
    plan = plan_retention(records, RetentionSettings(daily=0, weekly=0, monthly=0), timezone.utc)
    assert {r.id for r, _ in plan.keep} == {verified, newer_failed, pending}
    assert [r.id for r, _ in plan.delete] == [old_failed]


def test_nothing_deleted_without_a_verified_backup(state_dsn, tmp_path):
    for days_ago in range(5):
        add_backup(state_dsn, tmp_path, NOW - timedelta(days=days_ago), verify_status="failed")
    plan = plan_retention(BackupCatalog(state_dsn).list("prod"), RetentionSettings(0, 0, 0), timezone.utc)
    assert plan.delete == []


def test_prune_dry_run_then_for_real(state_dsn, tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    old = [add_backup(state_dsn, folder, NOW - timedelta(days=d)) for d in (40, 20, 10)]
    newest = add_backup(state_dsn, folder, NOW - timedelta(hours=2))
    catalog = BackupCatalog(state_dsn)
    settings = BackupSettings(dir=folder, retention=RetentionSettings(daily=1, weekly=0, monthly=0))

    dry = prune(catalog, settings, "prod", dry_run=True)
    assert sorted(dry.data["delete"]) == sorted(old) and dry.data["keep"] == [newest]
    assert "Would delete 3" in dry.summary
    assert len(list(folder.iterdir())) == 8  # nothing touched

    done = prune(catalog, settings, "prod", dry_run=False)
    assert sorted(done.data["deleted"]) == sorted(old)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{newest}_prod.dump", f"{newest}_prod.dump.manifest.json", "dbops-index.json"])
    assert [r[0] for r in list_backups(catalog, "prod").sections[0].table.rows] == [newest]
    assert catalog.get(old[0]).deleted_at is not None
    again = prune(catalog, settings, "prod", dry_run=False)
    assert again.data["delete"] == [] and "Nothing to prune" in again.summary


def test_a_truncated_newest_archive_never_costs_the_only_intact_one(state_dsn, tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    intact = add_backup(state_dsn, folder, NOW - timedelta(hours=5))
    newest = add_backup(state_dsn, folder, NOW - timedelta(hours=1))  # same day: the daily slot is the newest's
    catalog = BackupCatalog(state_dsn)
    settings = BackupSettings(dir=folder, retention=RetentionSettings(daily=1, weekly=0, monthly=0))
    # Trusting the old "verified" flags, the intact one is "beyond retention".
    assert [r.id for r, _ in plan_retention(catalog.list("prod"), settings.retention, timezone.utc).delete] == [intact]
    path = Path(catalog.get(newest).location)
    path.write_bytes(path.read_bytes()[:50])  # truncated after it was verified

    dry = prune(catalog, settings, "prod", dry_run=True)
    assert dry.data["delete"] == [] and intact in dry.data["keep"]
    assert "1 kept backup no longer matches its manifest" in dry.summary and newest in dry.summary
    assert catalog.get(newest).verify_status == "failed"  # re-checked, and recorded
    done = prune(catalog, settings, "prod", dry_run=False)
    assert done.data["deleted"] == [] and Path(catalog.get(intact).location).exists()


def test_a_drilled_backup_is_deleted_only_for_a_newer_drilled_one(state_dsn, tmp_path):
    drilled = add_backup(state_dsn, tmp_path, NOW - timedelta(days=3))
    undrilled = [add_backup(state_dsn, tmp_path, NOW - timedelta(days=d)) for d in (2, 1)]
    record_drill(state_dsn, drilled)
    record_drill(state_dsn, undrilled[0], outcome="failed")
    catalog = BackupCatalog(state_dsn)
    settings = BackupSettings(dir=tmp_path, retention=RetentionSettings(daily=1, weekly=0, monthly=0))
    dry = prune(catalog, settings, "prod", dry_run=True)
    assert drilled in dry.data["keep"] and dry.data["delete"] == [undrilled[0]]
    newer = add_backup(state_dsn, tmp_path, NOW - timedelta(hours=1))
    record_drill(state_dsn, newer)
    dry = prune(catalog, settings, "prod", dry_run=True)
    assert drilled in dry.data["delete"] and newer in dry.data["keep"]


def test_pre_migration_backups_are_kept_by_their_own_rule(state_dsn, tmp_path):
    now = datetime.now(timezone.utc)
    before_migration = add_backup(state_dsn, tmp_path, now - timedelta(days=10), requested_by="migration r007",
                                  scheduled=False)
    too_old = add_backup(state_dsn, tmp_path, now - timedelta(days=40), requested_by="migration r002",
                         scheduled=False)
    newest = add_backup(state_dsn, tmp_path, now - timedelta(hours=1))
    plan = plan_retention(BackupCatalog(state_dsn).list("prod"),
                          RetentionSettings(daily=1, weekly=0, monthly=0, pre_migration_days=30), timezone.utc)
    kept = {r.id: why for r, why in plan.keep}
    assert "before migration r007" in kept[before_migration] and newest in kept
    assert [r.id for r, _ in plan.delete] == [too_old]


def test_no_key_is_not_held_against_a_backup(state_dsn, tmp_path):
    verified = add_backup(state_dsn, tmp_path, NOW - timedelta(days=2))
    no_key = add_backup(state_dsn, tmp_path, NOW - timedelta(days=3), verify_status="no_key")
    plan = plan_retention(BackupCatalog(state_dsn).list("prod"), RetentionSettings(1, 0, 0), timezone.utc)
    assert {r.id for r, _ in plan.keep} == {verified, no_key} and plan.delete == []
