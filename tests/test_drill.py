"""Restore drills end to end on the real PostgreSQL: archives made with pg_dump in the same snapshot
as their manifest, restored into real throwaway instances, then damaged in the ways that matter."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import psycopg
import pytest

from handlers import demo_data
from handlers.backup.manifest import capture_manifest
from handlers.drill import DrillSettings, cleanup_leftovers, run_drill
from handlers.drill.instance import SCRATCH_PREFIX
from handlers.postgres import MARKER_FILE, TemporaryInstance, pg_tool, tool_version
from handlers.report import Outcome
from tests.drill_support import (  # noqa: F401 -- fixtures
    PAGILA,
    ROOT,
    assert_nothing_left,
    check,
    demo_backup,
    load_pagila,
    make_backup,
    pagila_backup,
    pagila_db,
    pagila_template,
    settings,
    sha256,
    work,
)

DEMO_SMOKE = [{"name": "a user can be found by email",
               "sql": """SELECT "Id" FROM "Users" WHERE "Email" = 'user42@example.com'""", "expect": "rows=1"},
              {"name": "user 42's notes are there", "sql": """SELECT count(*) > 0 FROM "Notes" WHERE "UserId" = 42""",
               "expect": "true"}]
DEMO_INDEXES = [("Users", ("Email",), True), ("Notes", ("UserId", "CreatedAt"), False),
                ("public.RefreshTokens", ("TokenHash",), True)]



# -- passing drills ---------------------------------------------------------------------------

def test_drill_of_the_demo_database_passes_and_reports_every_step(demo_backup, work):
    manifest, archive = demo_backup
    seen = []
    result = run_drill(manifest, archive, settings(work, smoke_queries=DEMO_SMOKE),
                       expected_indexes=DEMO_INDEXES, progress=seen.append)
    assert result.passed, result.to_markdown()
    assert [s["step"] for s in result.steps] == ["create instance", "restore", "verify", "delete instance"]
    assert all(s["outcome"] == "ok" and s["seconds"] >= 0 for s in result.steps)
    names = [c.name for c in result.checks]
    for expected in ("archive SHA-256 against the catalog", "pg_restore errors",
                     "row counts and content checksums of 10 tables", "constraints (VALIDATE on the copy)",
                     "expected indexes (3)", "smoke: a user can be found by email",
                     "smoke: user 42's notes are there"):
        assert expected in names
    assert any(n.startswith("pg_amcheck") for n in names)
    assert 4.9 * 3600 < result.recovery_point_age_s < 5.2 * 3600  # the backup's age when restored
    assert result.total_s >= sum(s["seconds"] for s in result.steps) * 0.9
    assert result.versions["drill server"].startswith("PostgreSQL 18")
    assert {p.phase for p in seen} >= {"create instance", "restore", "verify", "delete instance", "done"}
    assert any(p.phase == "restore" and p.fraction and 0 < p.fraction <= 1 for p in seen)
    report = result.to_report()
    assert report.outcome is Outcome.OK and "passed" in report.summary
    markdown = result.to_markdown()
    assert "## Procedure" in markdown and "pg_restore --no-owner --no-acl" in markdown
    assert "Recovery point" in markdown and "Recovery time" in markdown
    assert_nothing_left(work)


PAGILA_SMOKE = [
    {"name": "a film can be found by title", "sql": "SELECT film_id FROM film WHERE title = 'ACADEMY DINOSAUR'",
     "expect": "rows=1"},
    {"name": "the enum column is queryable", "sql": "SELECT count(*) > 0 FROM film WHERE rating = 'PG'::mpaa_rating",
     "expect": True},
    {"name": "the last_updated triggers exist",
     "sql": "SELECT count(*) FROM pg_trigger WHERE tgname = 'last_updated'", "expect": 14},
    {"name": "the materialized view was refreshed", "sql": "SELECT count(*) > 0 FROM rental_by_category",
     "expect": "true"},
    {"name": "the partitioned table routes reads", "sql": "SELECT 1 FROM payment WHERE payment_date >= '2022-02-01'",
     "expect": "rows>=1"},
    {"name": "views work", "sql": "SELECT * FROM film_list LIMIT 1", "expect": "rows=1"},
]


def test_drill_of_pagila_directory_archive_with_partitions_enums_domains_triggers_and_views_passes(
        pagila_db, tmp_path, work):
    manifest, stored = make_backup(pagila_db, tmp_path / "pagila.dir", fmt="directory", compress="gzip:1")
    assert stored.suffix == ".tar"
    kinds = {t["kind"] for t in manifest["schema"]["tables"]}
    assert kinds >= {"table", "partitioned table", "view", "materialized view"}
    result = run_drill(manifest, stored, settings(work, smoke_queries=PAGILA_SMOKE),
                       expected_indexes=[("film", ("title",), False), {"table": "rental", "unique": True,
                                         "columns": ["rental_date", "inventory_id", "customer_id"]}])
    assert result.passed, result.to_markdown()
    assert len([c for c in result.checks if c.name.startswith("smoke:")]) == len(PAGILA_SMOKE)
    assert "data of 21 tables loaded with 2 jobs" == result.steps[1]["detail"]
    assert_nothing_left(work)


# -- failing drills: each names what is wrong --------------------------------------------------

def _flip_data_byte(archive: Path, marker: bytes) -> None:
    data = bytearray(archive.read_bytes())
    at = data.find(marker)
    assert at > 0 and data.find(marker, at + 1) == -1, "the marker must be one row's data, once"
    data[at] ^= 0x01  # 'A' (0x41) -> '@' (0x40): still valid text, another value
    archive.write_bytes(bytes(data))


def test_one_flipped_data_byte_fails_the_content_checksum_of_that_table(pagila_backup, tmp_path, work):
    manifest, original = pagila_backup
    archive = tmp_path / "flipped.dump"
    shutil.copy(original, archive)
    _flip_data_byte(archive, b"ACADEMY DINOSAUR")
    # The catalog's SHA-256 is of the damaged file, as if pg_dump itself had written the bad byte:
    # only the data checksum can catch it.
    manifest = {**manifest, "archive": {**manifest["archive"], "sha256": sha256(archive)}}
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    data = check(result, "row counts and content checksums")
    assert not data.ok
    assert "table public.film: same row count (1000) but the content differs" in data.detail
    assert [c.name for c in result.failed_checks] == [data.name]
    assert "data differs: 1 of 21 tables" in result.summary  # the kind and a count; which table: the detail
    assert "public.film" in check(result, "row counts and content checksums of 21 tables").detail
    assert result.to_report().outcome is Outcome.FAILED
    assert_nothing_left(work)


def test_changed_archive_fails_the_sha256_check_against_the_catalog(pagila_backup, tmp_path, work):
    manifest, original = pagila_backup
    archive = tmp_path / "flipped.dump"
    shutil.copy(original, archive)
    _flip_data_byte(archive, b"ACADEMY DINOSAUR")
    result = run_drill(manifest, archive, settings(work))
    sha = check(result, "archive SHA-256")
    assert not sha.ok and "the file changed after the backup" in sha.detail
    assert not check(result, "row counts and content checksums").ok
    assert not result.passed


def test_wrong_sha256_in_the_catalog_alone_fails_the_drill(pagila_backup, work):
    manifest, archive = pagila_backup
    manifest = {**manifest, "archive": {**manifest["archive"], "sha256": "0" * 64}}
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    assert [c.name for c in result.failed_checks] == ["archive SHA-256 against the catalog"]
    assert "SHA-256" in result.summary


def test_truncated_archive_fails_with_counted_restore_errors(pagila_backup, tmp_path, work):
    manifest, original = pagila_backup
    archive = tmp_path / "truncated.dump"
    archive.write_bytes(original.read_bytes()[: int(original.stat().st_size * 0.6)])
    manifest = {**manifest, "archive": {**manifest["archive"], "sha256": sha256(archive)}}
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    restore = check(result, "pg_restore errors")
    assert not restore.ok and "error" in restore.detail
    assert result.restore_errors and result.steps[1]["outcome"] == "failed"
    size = check(result, "archive size against the catalog")
    assert not size.ok
    # Verification still ran and names the tables that did not come back whole.
    data = check(result, "row counts and content checksums")
    assert not data.ok and "table public." in data.detail
    assert "Restore errors" in result.to_markdown()
    assert_nothing_left(work)


def test_table_that_lost_rows_is_named_with_both_counts(pagila_db, tmp_path, work):
    manifest, archive = make_backup(pagila_db, tmp_path / "lost.dump",
                                    after_manifest="DELETE FROM payment_p2022_02 WHERE payment_id % 10 = 0")
    with psycopg.connect(pagila_db) as conn:
        left = conn.execute("SELECT count(*) FROM payment_p2022_02").fetchone()[0]
    expected = next(t["rows"] for t in manifest["tables"] if t["name"] == "payment_p2022_02")
    assert left < expected
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    data = check(result, "row counts and content checksums")
    assert f"table public.payment_p2022_02: {expected} rows expected, {left} restored" in data.detail


def test_expected_index_the_restore_lost_fails_the_drill_naming_it(pagila_db, tmp_path, work):
    # The manifest (the source) has idx_title; the archive does not: the restore lost it.
    manifest, archive = make_backup(pagila_db, tmp_path / "lost-index.dump", after_manifest="DROP INDEX idx_title")
    assert any(i["name"] == "idx_title" and i["valid"] for i in manifest["schema"]["indexes"])
    result = run_drill(manifest, archive, settings(work),
                       expected_indexes=[("film", ("title",), False), ("rental", ("customer_id",), False)])
    assert not result.passed
    found = check(result, "expected indexes (2)")
    assert not found.ok and not found.warning
    assert "missing after restore: index on film (title) (the source has it: idx_title)" in found.detail
    assert "missing in the source as well: index on rental (customer_id)" in found.detail
    indexes = next(c for c in result.checks if c.name.startswith("schema:") and c.name.endswith(" indexes"))
    assert not indexes.ok
    assert "index idx_title on public.film: missing from the restored database" in indexes.detail


def test_failing_smoke_query_is_named_with_what_it_returned(pagila_backup, work):
    manifest, archive = pagila_backup
    smoke = [{"name": "nobody is called Zaphod", "sql": "SELECT count(*) FROM actor WHERE first_name = 'PENELOPE'",
              "expect": 0},
             {"name": "broken query", "sql": "SELECT no_such_column FROM actor", "expect": "rows>=1"}]
    result = run_drill(manifest, archive, settings(work, smoke_queries=smoke))
    first, second = check(result, "smoke: nobody"), check(result, "smoke: broken")
    assert not first.ok and "expected '0'" in first.detail
    assert not second.ok and "no_such_column" in second.detail


def test_archive_from_a_newer_pg_dump_is_refused_before_restoring(pagila_backup, work):
    manifest, archive = pagila_backup
    manifest = {**manifest, "pg_dump_version": "99.1"}
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    # refused before any instance starts: the source's major cannot read what pg_dump 99 wrote
    assert "written by pg_dump 99, which PostgreSQL 18's pg_restore cannot read" in result.error
    assert [s["outcome"] for s in result.steps] == ["failed", "skipped", "skipped", "ok"]
    assert_nothing_left(work)


# -- the instance always goes ------------------------------------------------------------------

def test_cancel_during_restore_deletes_the_instance(demo_backup, work):
    manifest, archive = demo_backup
    cancel = threading.Event()

    def progress(p):
        if p.phase == "restore" and p.detail.startswith("loading"):
            cancel.set()

    result = run_drill(manifest, archive, settings(work), progress=progress, cancel=cancel)
    assert result.cancelled and not result.passed and result.outcome == "cancelled"
    assert [s["outcome"] for s in result.steps] == ["ok", "cancelled", "skipped", "ok"]
    assert_nothing_left(work)


def test_failed_step_still_deletes_the_instance_and_reports_why(pagila_backup, tmp_path, work):
    manifest, _ = pagila_backup
    result = run_drill(manifest, tmp_path / "no-such.dump", settings(work))
    assert not result.passed
    assert result.steps[1]["outcome"] == "failed" and "does not exist" in result.steps[1]["detail"]
    assert result.steps[-1] == {**result.steps[-1], "step": "delete instance", "outcome": "ok"}
    assert_nothing_left(work)


KILL_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from handlers.drill import DrillSettings, run_drill
    manifest = json.loads(Path({manifest!r}).read_text())
    settings = DrillSettings.from_dict({{"work_dir": {work!r}, "jobs": 1}})
    def progress(p):
        print(p.phase, "|", p.detail, flush=True)
    run_drill(manifest, Path({archive!r}), settings, progress=progress)
""")


def test_bot_killed_mid_restore_leaves_nothing_after_the_startup_cleanup(demo_backup, tmp_path, work):
    import json

    manifest, archive = demo_backup
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    drills = work / "drills"
    script = KILL_SCRIPT.format(root=str(ROOT), manifest=str(tmp_path / "manifest.json"), work=str(drills),
                                archive=str(archive))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("restore | loading"):
                break
        else:
            pytest.fail("the drill never reached the restore")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p for p in drills.iterdir() if (p / MARKER_FILE).exists()]
    assert leftovers, "the killed drill should have left its instance behind"
    # The drill leaves two marked folders (its files and its instance), in no fixed order.
    pids = [p for leftover in leftovers for p in leftover.rglob("postmaster.pid")]
    postmaster = int(pids[0].read_text().split()[0])
    assert psutil.pid_exists(postmaster)

    said = cleanup_leftovers(settings(work))
    assert len(said) == len(leftovers) and all("removed a leftover drill instance" in s for s in said)
    assert_nothing_left(work)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and psutil.pid_exists(postmaster) and \
            psutil.Process(postmaster).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.1)
    assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
    assert cleanup_leftovers(settings(work)) == []  # nothing the second time


# -- the scratch server alternative ------------------------------------------------------------

def _drill_databases(admin_dsn: str) -> list[str]:
    with psycopg.connect(admin_dsn) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                           (SCRATCH_PREFIX,)).fetchall()]


def test_scratch_server_drill_creates_and_drops_its_own_database(pagila_backup, pg_server, monkeypatch, work):
    manifest, archive = pagila_backup
    # trust authentication ignores the password; it is there to prove it is never shown
    url = pg_server.dsn().replace("postgresql://postgres@", "postgresql://postgres:Sup3rSecretPw@")
    monkeypatch.setenv("DBOPS_TEST_DRILL_URL", url)
    before = _drill_databases(pg_server.dsn())
    seen_dbs = []

    def progress(p):
        if p.phase == "verify":
            seen_dbs.extend(_drill_databases(pg_server.dsn()))

    result = run_drill(manifest, archive, settings(work, instance="scratch", scratch_url_env="DBOPS_TEST_DRILL_URL"),
                       progress=progress)
    assert result.passed, result.to_markdown()
    assert set(seen_dbs) - set(before), "the drill restores into a database of its own"
    assert result.instance.startswith(f"database {SCRATCH_PREFIX}")
    assert _drill_databases(pg_server.dsn()) == before
    import json
    assert "Sup3rSecretPw" not in json.dumps(result.to_dict()) + result.to_markdown()


def test_startup_cleanup_drops_a_dead_drills_scratch_database(pg_server, monkeypatch, work):
    monkeypatch.setenv("DBOPS_TEST_DRILL_URL", pg_server.dsn())
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from handlers.drill import DrillSettings
        from handlers.drill.instance import ScratchDrillInstance
        inst = ScratchDrillInstance(DrillSettings.from_dict({{"instance": "scratch",
                                                              "scratch_url_env": "DBOPS_TEST_DRILL_URL"}}))
        inst.start()
        print(inst.name, flush=True)
        os._exit(0)  # dies like a killed bot
    """)
    name = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ}).stdout.strip()
    assert name in _drill_databases(pg_server.dsn())
    said = cleanup_leftovers(settings(work, instance="scratch", scratch_url_env="DBOPS_TEST_DRILL_URL"))
    assert any(name in s and "dropped a leftover drill database" in s for s in said)
    assert name not in _drill_databases(pg_server.dsn())
    assert all(pg_server.dsn() not in s for s in said)


def test_scratch_without_its_url_fails_clearly(pagila_backup, monkeypatch, work):
    monkeypatch.delenv("DBOPS_TEST_DRILL_URL", raising=False)
    manifest, archive = pagila_backup
    result = run_drill(manifest, archive, settings(work, instance="scratch", scratch_url_env="DBOPS_TEST_DRILL_URL"))
    assert not result.passed
    assert "DBOPS_TEST_DRILL_URL is not set" in result.steps[0]["detail"]
    assert [s["outcome"] for s in result.steps] == ["failed", "skipped", "skipped", "ok"]


# -- pg_amcheck finds damage the manifest cannot see -------------------------------------------

def test_amcheck_check_reports_a_damaged_index_page(work):
    from handlers.drill.checks import amcheck_check

    inst = TemporaryInstance(purpose="amcheck-test", parent=work).start()
    try:
        with psycopg.connect(inst.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
            conn.execute("CHECKPOINT")
            index_file = conn.execute("SELECT pg_relation_filepath('t_pkey')").fetchone()[0]
        assert amcheck_check(inst.dsn(), 1, True).ok
        pg_ctl = pg_tool("pg_ctl")
        inst._run([pg_ctl, "-D", str(inst.data_dir), "-m", "fast", "-w", "stop"])
        path = inst.data_dir / index_file
        data = bytearray(path.read_bytes())
        data[8192 + 4000:8192 + 4400] = bytes(range(256)) + bytes(144)  # garbage in the first leaf page
        path.write_bytes(bytes(data))
        inst._run([pg_ctl, "-D", str(inst.data_dir), "-l", str(inst.server_dir / "server.log"), "-w", "start"])
        result = amcheck_check(inst.dsn(), 1, True)
        assert not result.ok
        assert "t_pkey" in result.detail
    finally:
        inst.stop()


# -- encrypted archives: the backup module's decryption, plaintext never left behind -------------

def test_encrypted_archive_is_decrypted_into_the_private_work_folder(pagila_backup, tmp_path, work, monkeypatch):
    import base64

    from handlers.backup import crypto

    manifest, plain = pagila_backup
    key, wrong = os.urandom(32), os.urandom(32)
    stored = tmp_path / "pagila.dump.enc"
    with open(plain, "rb") as src, open(stored, "wb") as dst:
        crypto.encrypt_stream(src, dst, key)
    manifest = {**manifest, "archive": {**manifest["archive"], "encrypted": True, "sha256": sha256(stored),
                                        "size": stored.stat().st_size}}
    plaintext_seen = []

    def progress(p):  # while pg_restore runs, the plaintext is in the drill's private folder and nowhere else
        if p.phase == "restore" and p.detail.startswith("loading") and not plaintext_seen:
            plaintext_seen.extend((f, f.stat().st_mode) for f in (work / "drills").rglob("*.plain"))
            plaintext_seen.extend((f, f.stat().st_mode) for f in tmp_path.rglob("*.plain"))

    monkeypatch.setenv("DBOPS_BACKUP_KEY", base64.b64encode(key).decode())
    result = run_drill(manifest, stored, settings(work), progress=progress)
    assert result.passed, result.to_markdown()
    assert plaintext_seen and all(f.is_relative_to(work / "drills") for f, _ in plaintext_seen)
    assert all(mode & 0o077 == 0 for _, mode in plaintext_seen)  # readable by the bot's user alone
    assert_nothing_left(work)  # the plaintext went with the drill

    monkeypatch.setenv("DBOPS_BACKUP_KEY", base64.b64encode(wrong).decode())
    refused = run_drill(manifest, stored, settings(work))
    assert not refused.passed and "could not prepare the archive" in refused.steps[1]["detail"]
    assert "different key" in refused.steps[1]["detail"]
    monkeypatch.delenv("DBOPS_BACKUP_KEY")
    no_key = run_drill(manifest, stored, settings(work))
    assert "it is encrypted and DBOPS_BACKUP_KEY is not set here" in no_key.steps[1]["detail"]
    assert_nothing_left(work)
