"""Backups against the real PostgreSQL 18 of the test fixtures, with real pg_dump / pg_restore runs."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import (
    BackupCatalog,
    BackupFailed,
    BackupSettings,
    backup_info,
    capture_manifest,
    cleanup_incomplete,
    compare_manifests,
    freshness,
    latest_verified,
    list_backups,
    materialize,
    next_run,
    schedule_report,
    take_backup,
    verify_backup,
)
from handlers.backup.take import BackupCancelled
from handlers.errors import ConfigError, TargetUnreachable, UsageError
from handlers.postgres import PgToolError, bin_dir, full_read, libpq_env, pg_tool, toc_table_data
from handlers.report import Outcome, Progress
from handlers.target import Target


@pytest.fixture
def state_dsn(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


@pytest.fixture
def catalog(state_dsn):
    return BackupCatalog(state_dsn)


@pytest.fixture
def settings(tmp_path):
    return BackupSettings(dir=tmp_path / "backups", min_free_mb=0)


def restore_and_capture(pg_server, archive: Path, level: str) -> dict:
    """Restore an archive into a new database of the test server; the manifest measured there."""
    name = f"restored_{os.getpid()}_{time.monotonic_ns()}"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        result = subprocess.run([pg_tool("pg_restore"), "--no-owner", "-d", pg_server.dsn(name), str(archive)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        with psycopg.connect(pg_server.dsn(name)) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            return capture_manifest(conn, level)
    finally:
        demo_data.drop_database(pg_server.dsn(), name)


def visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- a consistent, provable dump ------------------------------------------------

def test_manifest_matches_restore_and_ignores_rows_written_after_snapshot(demo_db, pg_server, catalog, settings):
    settings.integrity = "checksums"
    target = Target("prod", demo_db)
    with psycopg.connect(demo_db) as conn:
        notes_before = conn.execute('SELECT count(*) FROM "Notes"').fetchone()[0]
    wrote = []

    def progress(p: Progress) -> None:
        # Called once the snapshot is exported, just before pg_dump starts: these rows and this
        # change are committed before pg_dump or the manifest read a single row.
        if p.phase == "dumping" and not wrote:
            with psycopg.connect(demo_db, autocommit=True) as conn:
                conn.execute('INSERT INTO "Notes" ("UserId", "Title") SELECT 1, \'late\' FROM generate_series(1, 50)')
                conn.execute('UPDATE "Users" SET "DisplayName" = \'changed\' WHERE "Id" <= 10')
            wrote.append(True)

    result = take_backup(target, settings, catalog, "U123", progress=progress)
    assert wrote
    m = result.manifest
    notes = next(t for t in m.tables if t["name"] == "Notes")
    assert notes["rows"] == notes_before  # the 50 late rows are not in it
    assert m.integrity_level == "checksums" and all(t["checksum"] for t in m.tables)
    assert result.verify_status == "verified"
    archive = Path(result.location)
    assert archive.exists() and archive.stat().st_mode & 0o777 == 0o600
    assert m.archive.compression.startswith(("zstd", "gzip"))

    restored = restore_and_capture(pg_server, archive, "checksums")
    assert compare_manifests(m.to_dict(), restored) == []
    # The live database now differs from the backup, and compare_manifests says how.
    with psycopg.connect(demo_db) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        live = capture_manifest(conn, "checksums")
    diffs = compare_manifests(m.to_dict(), live)
    assert f"table public.Notes: {notes_before} rows expected, {notes_before + 50} restored" in diffs
    assert any(d.startswith("table public.Users: same row count") for d in diffs)

    report = result.to_report()
    assert report.outcome is Outcome.OK
    assert result.backup_id in report.summary and "checksums" in report.summary
    assert report.data["sha256"] == m.archive.sha256


def test_directory_format_parallel_round_trip(demo_db, pg_server, catalog, settings, tmp_path):
    settings.format, settings.jobs = "directory", 2
    result = take_backup(Target("prod", demo_db), settings, catalog, "cli:ops")
    assert result.manifest.archive.format == "directory" and result.location.endswith(".tar")
    assert result.verify_status == "verified"
    path, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "drill")
    assert path.is_dir() and (path / "toc.dat").exists()
    restored = restore_and_capture(pg_server, path, "counts")
    assert compare_manifests(manifest.to_dict(), restored) == []


def test_manifest_compare_reports_sequences_below_column_max(demo_db):
    with psycopg.connect(demo_db) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        expected = capture_manifest(conn, "counts")
        conn.rollback()
        conn.execute('SELECT setval(\'"Notes_Id_seq"\', 5)')
        conn.execute('DROP INDEX "IX_Notes_CreatedAt"')
        conn.commit()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        actual = capture_manifest(conn, "counts")
    diffs = compare_manifests(expected, actual)
    assert any("sequence public.Notes_Id_seq: restored value 5 is below" in d for d in diffs)
    assert 'index IX_Notes_CreatedAt on public.Notes: missing from the restored database' in diffs
    # A sequence ahead of its column is fine: only "value >= max(column)" matters.
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute('SELECT setval(\'"Notes_Id_seq"\', 10000000)')
        conn.execute('CREATE INDEX "IX_Notes_CreatedAt" ON "Notes" ("CreatedAt")')
    with psycopg.connect(demo_db) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assert compare_manifests(expected, capture_manifest(conn, "counts")) == []


def test_partitioned_tables_counted_by_leaf(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE m (k int, v text) PARTITION BY RANGE (k)")
        conn.execute("CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10)")
        conn.execute("CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20)")
        conn.execute("INSERT INTO m SELECT g % 20, 'x' FROM generate_series(1, 100) g")
        conn.execute("CREATE SCHEMA dbops; CREATE TABLE dbops.hidden (x int)")
    with psycopg.connect(fresh_db) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        m = capture_manifest(conn, "counts")
    assert [(t["name"], t["rows"]) for t in m["tables"]] == [("m1", 50), ("m2", 50)]
    assert {t["name"]: t["kind"] for t in m["schema"]["tables"]} == {"m": "partitioned table", "m1": "table",
                                                                     "m2": "table"}


# -- nothing half-done ------------------------------------------------------------

def kill_the_backups_pg_dump(killed: list[int], within_s: float = 30) -> threading.Thread:
    """A thread that SIGKILLs the backup's pg_dump (a child of this process) as soon as it runs."""
    def killer() -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and not killed:
            for child in psutil.Process().children(recursive=True):
                try:
                    if child.name() == "pg_dump" and any(a.startswith("--snapshot") for a in child.cmdline()):
                        child.kill()
                        killed.append(child.pid)
                        return
                except psutil.Error:
                    pass
            time.sleep(0.005)

    watcher = threading.Thread(target=killer)
    watcher.start()
    return watcher


def test_pg_dump_killed_mid_run_leaves_nothing(demo_db, catalog, settings):
    killed: list[int] = []
    watcher = kill_the_backups_pg_dump(killed)
    with pytest.raises(BackupFailed) as info:
        take_backup(Target("prod", demo_db), settings, catalog, "U1")
    watcher.join()
    assert killed
    assert "pg_dump was killed (SIGKILL)" in str(info.value)
    assert visible_files(settings.dir) == []
    [row] = catalog.list("prod")
    assert row.status == "failed" and "killed" in row.error


def test_cancel_leaves_nothing(demo_db, catalog, settings):
    cancel = threading.Event()

    def progress(p: Progress) -> None:
        if p.phase == "dumping":
            cancel.set()

    with pytest.raises(BackupCancelled, match="cancelled"):
        take_backup(Target("prod", demo_db), settings, catalog, "U1", progress=progress, cancel=cancel)
    assert visible_files(settings.dir) == []
    assert catalog.list("prod")[0].status == "cancelled"  # asked to stop: not a failure of the database
    assert not [c for c in psutil.Process().children(recursive=True) if c.name() == "pg_dump"]


def test_unreachable_target_is_named_and_secret_free(catalog, settings):
    target = Target("staging", "postgresql://ops:hunter2secret@127.0.0.1:1/asidenote")
    with pytest.raises(TargetUnreachable) as info:
        take_backup(target, settings, catalog, "U1")
    message = str(info.value)
    assert "target `staging` (127.0.0.1:1/asidenote) is unreachable: connection refused" in message
    assert "hunter2secret" not in message
    [row] = catalog.list("staging")
    assert row.status == "failed" and "hunter2secret" not in row.error


def test_too_little_disk_fails_before_dumping(demo_db, catalog, settings):
    settings.min_free_mb = 1 << 40  # a reserve no disk has
    phases = []
    with pytest.raises(BackupFailed, match="not enough free space in the backup folder"):
        take_backup(Target("prod", demo_db), settings, catalog, "U1", progress=lambda p: phases.append(p.phase))
    assert "dumping" not in phases
    assert visible_files(settings.dir) == []
    assert catalog.list("prod")[0].status == "failed"


def test_old_pg_dump_is_refused_with_a_fix(demo_db, catalog, settings, tmp_path, monkeypatch):
    fake = tmp_path / "oldbin"
    fake.mkdir()
    for tool in bin_dir().iterdir():
        if tool.name != "pg_dump":
            (fake / tool.name).symlink_to(tool)
    script = fake / "pg_dump"
    script.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.4'\n")
    script.chmod(0o755)
    monkeypatch.setenv("DBOPS_PG_BIN", str(fake))
    with pytest.raises(PgToolError) as info:
        take_backup(Target("prod", demo_db), settings, catalog, "U1")
    message = str(info.value)
    assert "pg_dump 15.4" in message and "older than the server, PostgreSQL 18" in message
    assert "DBOPS_PG_BIN" in message
    assert catalog.list("prod")[0].status == "failed"


def test_cleanup_incomplete_removes_partials_and_fails_dead_rows(catalog, settings, state_dsn):
    stale = catalog.start("prod", "U1")
    with psycopg.connect(state_dsn, autocommit=True) as conn:  # a process on another machine that died
        conn.execute("UPDATE dbops.backups SET owner = 'elsewhere:1', heartbeat_at = now() - interval '1 hour'"
                     " WHERE id = %s", (stale,))
    live = catalog.start("prod", "U2")  # this process, heartbeat fresh: left alone
    settings.dir.mkdir(parents=True)
    (settings.dir / f".{stale}.dump.partial").write_bytes(b"PGDMP")
    (settings.dir / f".{stale}.d.partial").mkdir()
    (settings.dir / f".{live}.dump.partial").write_bytes(b"PGDMP")
    (settings.dir / "b999_prod_x.dump").write_bytes(b"keep")
    lines = cleanup_incomplete(state_dsn, settings)
    assert any(stale in line and "failed" in line for line in lines)
    # A complete-looking archive without a manifest is no backup anyone can prove: quarantined, not deleted.
    assert visible_files(settings.dir) == sorted([f".{live}.dump.partial", "quarantine"])
    assert visible_files(settings.dir / "quarantine") == ["b999_prod_x.dump"]
    assert any("quarantined" in line and "b999_prod_x.dump" in line for line in lines)
    assert catalog.get(stale).status == "failed" and catalog.get(live).status == "running"


# -- verification -------------------------------------------------------------------

def test_verify_reads_the_whole_archive(demo_db, catalog, settings, tmp_path):
    settings.verify_after = False
    result = take_backup(Target("prod", demo_db), settings, catalog, "U1")
    assert catalog.get(result.backup_id).verify_status == "pending"
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.OK and catalog.get(result.backup_id).verified

    # A truncated archive passes `pg_restore --list` but not a full read.
    archive = Path(result.location)
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    assert toc_table_data(truncated)  # --list is happy
    ok, reason = full_read(truncated)
    assert not ok and reason

    # The stored archive damaged: verify says so and records it.
    with open(archive, "r+b") as f:
        f.truncate(archive.stat().st_size - 100)
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "SHA-256" in report.summary
    assert catalog.get(result.backup_id).verify_status == "failed"


def test_list_info_and_unknown_id(demo_db, catalog, settings, state_dsn):
    result = take_backup(Target("prod", demo_db), settings, catalog, "U42")
    assert result.backup_id == "b001"
    second = take_backup(Target("prod", demo_db), settings, catalog, "scheduler", scheduled=True)
    assert second.backup_id == "a001"
    listing = list_backups(catalog, "prod")
    rows = listing.sections[0].table.rows
    assert [r[0] for r in rows] == ["a001", "b001"]  # newest first
    assert rows[1][5] == "completed" and rows[1][6] == "yes" and rows[1][7] == "U42"
    info = backup_info(catalog, "b001")
    assert "b001" in info.summary and info.data["manifest"]["tables"]
    with pytest.raises(UsageError, match="b777"):
        backup_info(catalog, "b777")
    assert latest_verified(catalog, "prod").id == "a001"
    ok, line = freshness(state_dsn, "prod", settings)
    assert ok and "a001" in line
    ok, line = freshness(state_dsn, "prod", settings, now=datetime.now(timezone.utc) + timedelta(hours=30))
    assert not ok and "STALE" in line
    ok, line = freshness(state_dsn, "other", settings)
    assert not ok and "no verified backup" in line


# -- settings, schedule, plumbing -------------------------------------------------------

def test_settings_from_dict_names_bad_keys(monkeypatch):
    monkeypatch.delenv("DBOPS_BACKUP_DIR", raising=False)
    s = BackupSettings.from_dict({"dir": "/srv/b", "format": "directory", "jobs": 4, "integrity": "checksums",
                                  "schedule": "02:30", "timezone": "Europe/Berlin",
                                  "retention": {"daily": 3, "weekly": 2, "monthly": 1}})
    assert s.dir == Path("/srv/b") and s.jobs == 4 and s.retention.daily == 3
    monkeypatch.setenv("DBOPS_BACKUP_DIR", "/env/dir")
    assert BackupSettings.from_dict({"dir": "/srv/b"}).dir == Path("/env/dir")
    for bad, words in [({"retention": {"daily": -1}}, "backup.retention.daily must be a whole number >= 0"),
                       ({"format": "tar"}, "backup.format"), ({"schedule": "25:00"}, "backup.schedule"),
                       ({"storage": "s3"}, "backup.s3.bucket"), ({"colour": 1}, "backup.colour")]:
        monkeypatch.delenv("DBOPS_BACKUP_KEY", raising=False)
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            BackupSettings.from_dict(bad)
    # Encryption without a key stops the bot (it takes the backups), not a terminal: there only what
    # needs the key refuses.
    with pytest.raises(ConfigError, match="DBOPS_BACKUP_KEY"):
        BackupSettings.from_dict({"encrypt": True}, serving=True)
    assert BackupSettings.from_dict({"encrypt": True}).encrypt
    monkeypatch.setenv("DBOPS_BACKUP_KEY", "not-a-key")
    with pytest.raises(ConfigError) as info:
        BackupSettings.from_dict({"encrypt": True})
    assert "not-a-key" not in str(info.value)


def test_next_run_and_schedule_report():
    s = BackupSettings.from_dict({"schedule": "03:00", "timezone": "UTC"})
    before = datetime(2025, 3, 1, 2, 59, tzinfo=timezone.utc)
    assert next_run(s, before) == datetime(2025, 3, 1, 3, 0, tzinfo=timezone.utc)
    assert next_run(s, datetime(2025, 3, 1, 3, 0, tzinfo=timezone.utc)) == datetime(2025, 3, 2, 3, 0,
                                                                                     tzinfo=timezone.utc)
    report = schedule_report(s, before)
    assert "daily at 03:00 UTC" in report.summary.lower() or "Daily backup at 03:00 UTC" in report.summary
    assert "in 1 min" in report.summary
    berlin = BackupSettings.from_dict({"schedule": "03:00", "timezone": "Europe/Berlin"})
    assert next_run(berlin, before).astimezone(timezone.utc) == datetime(2025, 3, 2, 2, 0, tzinfo=timezone.utc)


def test_credentials_go_through_the_environment():
    env = libpq_env("postgresql://ops:s3cret@db.example.com:5433/asidenote?sslmode=require")
    assert env["PGPASSWORD"] == "s3cret" and env["PGHOST"] == "db.example.com" and env["PGPORT"] == "5433"
    assert env["PGDATABASE"] == "asidenote" and env["PGSSLMODE"] == "require"


def test_bot_killed_mid_backup_is_cleaned_up_at_next_start(demo_db, catalog, settings, state_dsn):
    """The whole bot process dies (SIGKILL): pg_dump dies with it, and the next start cleans up."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from handlers.backup import BackupCatalog, BackupSettings, take_backup\n"
        "from handlers.target import Target\n"
        "take_backup(Target('prod', sys.argv[1]), BackupSettings(dir=Path(sys.argv[3]), min_free_mb=0),\n"
        "            BackupCatalog(sys.argv[2]), 'U1')\n"
    )
    settings.dir.mkdir(parents=True)
    bot = subprocess.Popen([sys.executable, "-c", code, demo_db, state_dsn, str(settings.dir)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.name.endswith(".partial") for p in settings.dir.iterdir()):
        assert bot.poll() is None, "the backup finished before it could be killed"
        time.sleep(0.002)
    dumps = [c for c in psutil.Process(bot.pid).children(recursive=True)
             if c.name() == "pg_dump" and "-Fc" in c.cmdline()]
    bot.kill()
    bot.wait()
    assert dumps
    gone, alive = psutil.wait_procs(dumps, timeout=15)
    assert not alive, "pg_dump outlived the bot"
    [row] = catalog.list("prod")
    assert row.status == "running"  # what a killed process leaves behind
    lines = cleanup_incomplete(state_dsn, settings)
    assert any("marked failed" in line for line in lines)
    assert visible_files(settings.dir) == []
    assert catalog.get(row.id).status == "failed"


def test_one_replica_claims_a_scheduled_run(state_dsn):
    from handlers.backup import claim_scheduled_run

    assert claim_scheduled_run(state_dsn, "prod", "2025-03-01", "host-a:1") is True
    assert claim_scheduled_run(state_dsn, "prod", "2025-03-01", "host-b:2") is False
    assert claim_scheduled_run(state_dsn, "prod", "2025-03-02", "host-b:2") is True


def test_compression_choice_follows_what_pg_dump_was_built_with():
    from handlers.postgres import choose_compression, pg_dump_supports

    has_zstd = pg_dump_supports("zstd", pg_tool("pg_dump"))
    assert choose_compression("auto", None, 18) == ("zstd:3" if has_zstd else "gzip:6")
    assert choose_compression("auto", None, 15) == "gzip:6"  # pg_dump before 16 has no zstd
    assert choose_compression("gzip", 9, 18) == "gzip:9"
    if not has_zstd:
        with pytest.raises(PgToolError, match="built without zstd"):
            choose_compression("zstd", None, 18)


def test_a_backup_behind_a_long_lock_fails_with_the_reason_instead_of_waiting_forever(demo_db, tmp_path, monkeypatch):
    import time

    import psycopg

    from bot.core.state import migrate
    from handlers.backup import BackupCatalog, BackupSettings, take_backup
    from handlers.errors import DbopsError
    from handlers.target import Target

    migrate.apply(demo_db)
    monkeypatch.delenv("DBOPS_BACKUP_DIR", raising=False)
    settings = BackupSettings.from_dict({"dir": str(tmp_path / "b"), "lock_wait_seconds": 1})
    catalog = BackupCatalog(demo_db)
    holder = psycopg.connect(demo_db)
    holder.execute('LOCK TABLE "Notes" IN ACCESS EXCLUSIVE MODE')  # a migration that does not finish
    try:
        started = time.monotonic()
        try:
            take_backup(Target("prod", demo_db), settings, catalog, requested_by="test")
        except DbopsError as exc:
            assert "lock" in str(exc).lower(), str(exc)
        else:
            raise AssertionError("the backup should have failed behind the lock")
        assert time.monotonic() - started < 30
        assert [r.status for r in catalog.list("prod")] == ["failed"]
    finally:
        holder.rollback()
        holder.close()
