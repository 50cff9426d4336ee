"""The rehearsal's own bounds and what it leaves out: it holds no lock that blocks an apply, stops at a
total time and a disk limit, caps temporary files, restores no part of the bot's own schema, and
`migrate check` judges DOWN as what runs after UP."""
from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from bot.core.state.store import JobLock
from handlers.errors import DbopsError
from handlers.migrations import check_migration
from handlers.migrations.rehearsal import RehearsalSettings
from handlers.postgres import libpq_env, pg_tool
from tests.test_migrations_e2e import dbops, prod  # noqa: F401 (prod: a fixture)
from tests.test_migrations_rehearsal import demo_archive, run  # noqa: F401 (demo_archive: a fixture)


def forbidden(result) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in result.findings if f.severity.value == "forbidden"]


# -- DOWN is checked too ---------------------------------------------------------------------------

def test_migrate_check_judges_down(prod, tmp_path):
    (tmp_path / "up.sql").write_text('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n')
    (tmp_path / "rollback.sql").write_text('SELECT 1;\nDROP TABLE "Users" CASCADE;\n')
    done = dbops("migrate", "check", "up.sql", "--down", "rollback.sql", "--format", "json", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    messages = [f["message"] for f in json.loads(done.stdout)["findings"]]
    assert any(m.startswith("rollback.sql line 2: drops \"Users\"") for m in messages), messages
    assert any(m.startswith("rollback.sql line 2: drops a table with CASCADE") for m in messages), messages


@pytest.mark.parametrize("up, down", [
    ('ALTER TABLE "Notes" ADD COLUMN "Color" text;', 'ALTER TABLE "Notes" DROP COLUMN "Color";'),
    ('ALTER TABLE "Notes" ADD COLUMN "Color" varchar(20);\nALTER TABLE "Notes" ALTER COLUMN "Color" TYPE text;',
     'ALTER TABLE "Notes" DROP COLUMN "Color";'),
    ('CREATE TABLE "Labels" ("Id" bigint PRIMARY KEY);', 'DROP TABLE "Labels";'),
    ('CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");', 'DROP INDEX CONCURRENTLY "IX_Notes_Title";'),
])
def test_a_down_undoing_up_needs_no_approval(up, down):
    assert forbidden(check_migration("SET lock_timeout = '2s';\n" + up, down)) == []


@pytest.mark.parametrize("down, code", [
    ('DROP TABLE "Users" CASCADE;', "drop-table"),
    ('ALTER TABLE "Users" DROP COLUMN "Email";', "drop-column"),
    ('DELETE FROM "Notes";', "delete-without-where"),
    ("DO $$BEGIN EXECUTE 'DROP TABLE \"Users\"'; END$$;", "do-block"),
])
def test_a_dangerous_down_needs_an_approver(down, code):
    result = check_migration('ALTER TABLE "Notes" ADD COLUMN "Color" text;', "SELECT 1;\n" + down)
    found = [f for f in result.findings if f.code == code]
    assert found and found[0].severity.value == "forbidden" and found[0].message.startswith("DOWN.sql line 2: ")
    assert found[0].line == 0 and result.exit_code == 3


# -- no lock on the target -------------------------------------------------------------------------

def test_a_request_runs_while_an_apply_holds_the_migrate_lock(prod, tmp_path):
    (tmp_path / "up.sql").write_text('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n')
    (tmp_path / "down.sql").write_text('ALTER TABLE "Notes" DROP COLUMN "Color";\n')
    apply = JobLock(prod, "prod", "migrate")
    assert apply.try_acquire()
    try:
        done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "color", dsn=prod, cwd=tmp_path)
    finally:
        apply.release()
    assert "already running" not in done.stdout + done.stderr
    assert done.returncode == 3 and "request r001 recorded" in done.stdout


# -- the rehearsal's limits ------------------------------------------------------------------------

def test_a_rehearsal_stops_at_its_total_time_limit(demo_archive, tmp_path):
    settings = RehearsalSettings(work_dir=tmp_path / "work", total_timeout_s=20)
    try:
        result = run("SELECT pg_sleep(600);", None, demo_archive, settings)
    except DbopsError as exc:  # the copy itself took longer on a slow machine: stopped there
        assert str(exc).startswith("the rehearsal stopped at the time limit")
        return
    assert result.stopped_by.startswith("the time limit") and result.up_error == result.stopped_by
    (finding,) = result.findings()
    assert finding.code == "rehearsal-failed" and "stopped at the time limit" in finding.message


def test_a_rehearsal_stops_at_its_disk_limit(demo_archive, tmp_path):
    settings = RehearsalSettings(work_dir=tmp_path / "work", disk_growth_mb=20)
    up = "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1000000) g;\nSELECT 1;\n"
    result = run(up, "DROP TABLE big;", demo_archive, settings)
    assert result.stopped_by is not None and result.stopped_by.startswith("the disk limit"), result.up_error
    assert "20 MB migrate.rehearsal.disk_growth_mb allows" in result.stopped_by
    assert result.down_statements == []  # DOWN did not run
    assert [f.code for f in result.findings()] == ["rehearsal-failed"]


def test_temporary_files_are_capped_and_the_cap_is_not_the_migrations_to_lift(demo_archive, tmp_path):
    settings = RehearsalSettings(work_dir=tmp_path / "work", temp_file_limit_mb=1)
    sort = "SELECT count(*) FROM (SELECT g FROM generate_series(1, 2000000) g ORDER BY md5(g::text)) s;"
    assert run(sort, None, demo_archive, settings).up_error_sqlstate == "53400"  # configuration_limit_exceeded
    lifted = run("SET temp_file_limit = -1;", None, demo_archive, settings)
    assert lifted.up_error_sqlstate == "42501"


# -- the bot's own schema is not restored ----------------------------------------------------------

def test_the_bots_own_schema_is_left_out_of_the_copy(demo_db, tmp_path):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA dbops")
        conn.execute("CREATE TABLE dbops.audit_log (id int PRIMARY KEY, detail text)")
        conn.execute("INSERT INTO dbops.audit_log VALUES (1, 'another requester''s note')")
    archive = tmp_path / "b050.dump"
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-f", str(archive)], env=libpq_env(demo_db), check=True,
                   capture_output=True)
    result = run("CREATE TABLE leak AS SELECT * FROM dbops.audit_log;", None, archive,
                 RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.up_error_sqlstate == "42P01", result.up_error  # undefined_table
    assert result.restore_problems == []
