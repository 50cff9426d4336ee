"""The migration rehearsal on real throwaway instances: a real pg_dump archive of the demo database
restored, UP and DOWN applied, locks read from pg_locks, schema and data compared."""
from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from handlers.errors import Cancelled, ConfigError, UsageError
from handlers.migrations import Severity
from handlers.migrations.rehearsal import Rehearsal, RehearsalSettings, rehearse
from handlers.postgres import find_leftover_instances, libpq_env, pg_tool
from handlers.report import Outcome
from handlers.target import Target


@pytest.fixture(scope="module")
def demo_archive(pg_server, demo_template, tmp_path_factory) -> Path:
    """One custom-format archive of the demo database for the whole module (about a second)."""
    path = tmp_path_factory.mktemp("archive") / "b042.dump"
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-Z", "1", "-f", str(path)],
                   env=libpq_env(pg_server.dsn(demo_template)), check=True, capture_output=True)
    return path


@pytest.fixture
def settings(tmp_path) -> RehearsalSettings:
    return RehearsalSettings(work_dir=tmp_path / "work")


def run(up: str, down: str | None, archive: Path, settings: RehearsalSettings, **kw) -> Rehearsal:
    result = rehearse(up, down, archive=archive, manifest=None, backup_id="b042",
                      backup_started_at=datetime.now(timezone.utc) - timedelta(hours=3),
                      schema_source=None, settings=settings, **kw)
    assert_instance_gone(settings)
    return result


def assert_instance_gone(settings: RehearsalSettings) -> None:
    work = settings.work_dir
    assert work is not None
    assert not list(work.glob("dbops-*")), "the rehearsal instance folder was left behind"
    assert find_leftover_instances(work) == []


# -- reversible ----------------------------------------------------------------------------

def test_reversible_migration_is_schema_identical_with_locks_and_downtime(demo_archive, settings):
    up = 'ALTER TABLE "Notes" ADD COLUMN "Color" text;\nSELECT pg_sleep(0.3);\n'
    down = 'ALTER TABLE "Notes" DROP COLUMN "Color";\n'
    result = run(up, down, demo_archive, settings)

    assert result.source == "backup"
    assert result.up_error is None and result.down_error is None
    assert result.schema_diff == [] and result.data_diff == []
    assert result.findings() == []
    lines = result.checklist_lines()
    assert lines[0].startswith("rehearsed on a copy of backup b042 (3 h old); copy on PostgreSQL 18.")
    assert "rollback tested: schema identical, rows of 1 table UP and DOWN wrote to identical" in lines
    assert result.touched_tables == ["public.Notes"] and result.unmeasured_tables == []
    first = result.up_statements[0]
    assert first["line"] == 1 and first["statement"].startswith('ALTER TABLE "Notes"')
    assert {"mode": "AccessExclusiveLock", "relation": '"Notes"'} in first["locks"]
    assert result.up_statements[1]["line"] == 2 and result.up_statements[1]["locks"] == []
    assert result.up_statements[1]["seconds"] >= 0.3
    # The lock on "Notes" is held from the ALTER to the commit, across the 0.3 s sleep.
    (notes,) = [d for d in result.downtime if d["relation"] == '"Notes"']
    assert notes["mode"] == "ACCESS EXCLUSIVE" and notes["blocks"] == "reads and writes"
    assert 0.3 <= notes["seconds"] < 30
    assert any(line.startswith('downtime estimate: ACCESS EXCLUSIVE on "Notes" for about 0.3 s')
               and line.endswith("(blocks reads and writes)") for line in lines), lines
    assert result.down_statements[0]["locks"] == [{"mode": "AccessExclusiveLock", "relation": '"Notes"'}]
    assert 3 * 3600 - 60 < result.backup_age_s < 3 * 3600 + 60
    assert result.total_s > result.up_s > 0.3

    data = result.to_dict()
    assert Rehearsal.from_dict(json.loads(json.dumps(data))).checklist_lines() == lines
    assert data["reversible"] is True and data["up_statements"][0]["locks"][0]["mode"] == "AccessExclusiveLock"
    report = result.to_report()
    assert report.outcome is Outcome.OK
    assert any(s.table and s.table.rows[0][2] == 'ACCESS EXCLUSIVE on "Notes"' for s in result.to_sections())


def test_lossless_type_change_and_back_keeps_the_data(demo_archive, settings):
    up = 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(14,2);'
    down = 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(12,2);'
    result = run(up, down, demo_archive, settings)
    assert result.checked_columns == ['"public"."Projects"."Budget"']
    assert result.schema_diff == [] and result.data_diff == []
    assert result.findings() == []
    assert "rollback tested: schema identical, data of 1 changed column identical, rows of 1 table UP and DOWN " \
        "wrote to identical" in result.checklist_lines()


def test_concurrent_index_runs_outside_the_transaction_and_reverses(demo_archive, settings):
    up = 'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");'
    down = 'DROP INDEX CONCURRENTLY "IX_Notes_Title";'
    result = run(up, down, demo_archive, settings)
    assert result.up_error is None, result.up_error
    assert result.up_statements[0]["outside_transaction"] is True
    assert result.findings() == []
    assert result.downtime == []
    assert any(line.startswith("downtime estimate: no lock that blocks") for line in result.checklist_lines())


# -- irreversible ---------------------------------------------------------------------------

def test_down_that_leaves_the_schema_changed_is_irreversible(demo_archive, settings):
    up = 'CREATE INDEX "IX_Notes_Title" ON "Notes" ("Title");'
    down = "SELECT 1;"
    result = run(up, down, demo_archive, settings)
    assert result.schema_diff == ['index IX_Notes_Title on public.Notes: not there before UP, still there after DOWN']
    (finding,) = result.findings()
    assert finding.code == "irreversible" and finding.severity is Severity.FORBIDDEN and finding.line == 0
    assert "IX_Notes_Title" in finding.message and "does not bring the schema back" in finding.message
    assert "rollback tested: DOWN does not bring the schema back: 1 difference (index IX_Notes_Title on " \
        "public.Notes), listed under Rollback" in result.checklist_lines()
    # A plain CREATE INDEX takes SHARE on the table: writes wait, reads go on.
    (notes,) = result.downtime
    assert notes == {**notes, "relation": '"Notes"', "mode": "SHARE", "blocks": "writes"}
    assert result.to_report().outcome is Outcome.APPROVAL_REQUIRED


def test_lossy_type_change_restores_the_schema_but_not_the_data(demo_archive, settings):
    up = 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(12,0);'
    down = 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(12,2);'
    result = run(up, down, demo_archive, settings)
    assert result.schema_diff == []
    assert len(result.data_diff) == 2 and '"Projects"."Budget"' in result.data_diff[0]
    assert result.data_diff[1].startswith("table public.Projects: ")
    assert "rows differ by primary key" in result.data_diff[1]
    (finding,) = result.findings()
    assert finding.code == "irreversible" and "not the data" in finding.message
    assert any("schema identical, but DOWN does not bring the data back" in line for line in result.checklist_lines())


def test_dropped_column_readded_by_down_loses_its_values(demo_archive, settings):
    up = 'ALTER TABLE "Notes" DROP COLUMN "IsPinned";'
    down = 'ALTER TABLE "Notes" ADD COLUMN "IsPinned" boolean NOT NULL DEFAULT false;'
    result = run(up, down, demo_archive, settings)
    assert result.schema_diff == []
    assert any('"Notes"."IsPinned"' in d for d in result.data_diff), result.data_diff
    assert [f.code for f in result.findings()] == ["irreversible"]


def test_dropped_table_lock_is_named_and_its_absence_reported(demo_archive, settings):
    result = run('DROP TABLE "EmailVerificationTokens";', "SELECT 1;", demo_archive, settings)
    assert {"mode": "AccessExclusiveLock", "relation": '"EmailVerificationTokens"'} in result.up_statements[0]["locks"]
    assert "table public.EmailVerificationTokens: there before UP, missing after DOWN" in result.schema_diff
    # its columns, indexes and constraints go without saying
    assert not any(d.startswith(("column", "index", "constraint")) for d in result.schema_diff), result.schema_diff
    assert [f.code for f in result.findings()] == ["irreversible"]


def test_session_settings_of_up_do_not_carry_over_to_down(demo_archive, settings):
    up = 'SET search_path = nowhere;\nCREATE TABLE public."Tags" ("Id" int);\n'
    down = 'DROP TABLE "Tags";'  # found through the default search_path, as in a new session
    result = run(up, down, demo_archive, settings)
    assert result.down_error is None and result.findings() == []


def test_directory_format_archive(pg_server, demo_template, tmp_path, settings):
    folder = tmp_path / "b043.d"
    subprocess.run([pg_tool("pg_dump"), "-Fd", "-Z", "1", "-j", "2", "-f", str(folder)],
                   env=libpq_env(pg_server.dsn(demo_template)), check=True, capture_output=True)
    result = run('ALTER TABLE "Notes" ADD COLUMN "Color" text;', 'ALTER TABLE "Notes" DROP COLUMN "Color";',
                 folder, settings)
    assert result.source == "backup" and result.restore_problems == [] and result.findings() == []


def test_down_that_fails_is_irreversible(demo_archive, settings):
    up = 'ALTER TABLE "Notes" ADD COLUMN "Color" text;'
    down = '\n\nALTER TABLE "Notes" DROP COLUMN "Colour";'
    result = run(up, down, demo_archive, settings)
    assert result.down_error is not None and result.down_error.startswith("line 3: ")
    assert result.down_error == "line 3: SQLSTATE 42703 (undefined_column)"
    assert "Colour" in result.down_error_text and "Colour" in result.private_error_text()
    (finding,) = result.findings()
    assert finding.code == "irreversible" and "DOWN fails in the rehearsal at line 3" in finding.message


def test_rows_deleted_by_up_are_a_data_difference(demo_archive, settings):
    up = 'DELETE FROM "RefreshTokens" WHERE "RevokedAt" IS NOT NULL;'
    down = "SELECT 1;"
    result = run(up, down, demo_archive, settings)
    assert result.data_diff and result.data_diff[0].startswith("table public.RefreshTokens: 10000 rows before UP")


def test_no_down_means_rollback_not_tested(demo_archive, settings):
    result = run('ALTER TABLE "Notes" ADD COLUMN "Color" text;', None, demo_archive, settings)
    assert "rollback not tested: no DOWN migration" in result.checklist_lines()
    assert result.findings() == []  # the check's own `irreversible` rule reports the missing DOWN


# -- UP fails ---------------------------------------------------------------------------------

def test_up_failing_on_the_data_is_rehearsal_failed_with_its_line(demo_archive, settings):
    up = ('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n-- boards are optional today\n'
          'ALTER TABLE "Notes" ALTER COLUMN "BoardId" SET NOT NULL;\n')
    down = 'ALTER TABLE "Notes" ALTER COLUMN "BoardId" DROP NOT NULL;\nALTER TABLE "Notes" DROP COLUMN "Color";'
    result = run(up, down, demo_archive, settings)
    assert result.up_error is not None and result.up_error.startswith("line 3: ")
    assert result.up_error == "line 3: SQLSTATE 23502 (not_null_violation)"
    assert (result.up_error_sqlstate, result.up_error_condition) == ("23502", "not_null_violation")
    assert "null values" in result.up_error_text and "null values" in result.private_error_text()
    # The channel gets the line and the condition, never the server's message (it can quote rows).
    assert "null values" not in json.dumps(result.to_dict()) + str(result.to_report())
    (finding,) = result.findings()
    assert finding.code == "rehearsal-failed" and finding.severity is Severity.FORBIDDEN and finding.line == 3
    assert "SET NOT NULL" in finding.statement and "would fail in production too" in finding.message
    lines = result.checklist_lines()
    assert any(line.startswith("UP failed in rehearsal at line 3: ") for line in lines)
    assert "rollback not tested: UP failed" in lines
    assert result.down_statements == []  # DOWN is not run after a failed UP


# -- sources ------------------------------------------------------------------------------------

def test_schema_only_copy_of_a_target(demo_db, settings):
    up = 'ALTER TABLE "Notes" ADD COLUMN "Color" text;'
    down = 'ALTER TABLE "Notes" DROP COLUMN "Color";'
    result = rehearse(up, down, archive=None, manifest=None, backup_id=None, backup_started_at=None,
                      schema_source=Target("prod", demo_db), settings=settings)
    assert_instance_gone(settings)
    assert result.source == "schema" and result.backup_id is None
    lines = result.checklist_lines()
    # the copy ran the target's own major, and says so
    assert lines[0].startswith("rehearsed on a schema-only copy of `prod` (no data); prod: PostgreSQL 18.")
    assert result.copy_version == result.source_version
    assert "rollback tested: schema identical" in lines
    assert any(line.endswith("expect longer in production") for line in lines if line.startswith("downtime"))
    assert result.findings() == []


def test_schema_only_setting_restores_only_the_schema_of_the_archive(demo_archive, tmp_path):
    settings = RehearsalSettings(source="schema", work_dir=tmp_path / "work")
    # Deleting rows changes nothing on a copy without rows: proof that no data was restored.
    result = run('DELETE FROM "Notes";', "SELECT 1;", demo_archive, settings)
    assert result.source == "schema"
    assert result.checklist_lines()[0].startswith("rehearsed on a schema-only copy of backup b042 (no data)")
    assert result.data_diff == []


def test_a_schema_source_that_is_unreachable(tmp_path):
    from handlers.errors import TargetUnreachable

    settings = RehearsalSettings(source="schema", work_dir=tmp_path / "work")
    with pytest.raises(TargetUnreachable) as info:
        rehearse("SELECT 1;", None, schema_source=Target("prod", "host=/nonexistent-dbops dbname=x password=s3cr3tpw"),
                 settings=settings)
    assert "s3cr3tpw" not in str(info.value)
    assert_instance_gone(settings)


def test_manifest_row_counts_are_checked_against_the_copy(demo_archive, settings):
    manifest = {"backup_id": "b042", "created_at": "2026-01-01T00:00:00+00:00",
                "tables": [{"schema": "public", "name": "Notes", "rows": 123}]}
    result = rehearse("SELECT 1;", None, archive=demo_archive, manifest=manifest, settings=settings)
    assert_instance_gone(settings)
    assert result.backup_id == "b042" and result.backup_age_s > 86400
    assert result.restore_problems == ["table public.Notes: 123 rows in the backup, 100000 in the copy"]
    assert "restored with 1 problem:" in result.checklist_lines()[1]


# -- failures before and during ------------------------------------------------------------------

def test_sql_that_does_not_parse_is_a_usage_error_before_any_instance(demo_archive, settings):
    with pytest.raises(UsageError, match="DOWN.sql line 2"):
        rehearse("SELECT 1;", "SELECT 1;\nSELEC 2;", archive=demo_archive, settings=settings)
    assert not settings.work_dir.exists() or not list(settings.work_dir.iterdir())
    with pytest.raises(UsageError, match="nothing to rehearse on"):
        rehearse("SELECT 1;", None, settings=settings)


def test_cancel_stops_and_removes_the_instance(demo_archive, settings):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        rehearse("SELECT 1;", None, archive=demo_archive, settings=settings, cancel=cancel)
    assert_instance_gone(settings)


def test_cancel_during_a_long_statement(demo_archive, settings):
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)

    def progress(p):
        if "applying UP" in p.detail and not timer.is_alive():
            timer.start()

    with pytest.raises(Cancelled):
        rehearse("SELECT pg_sleep(60);", None, archive=demo_archive, settings=settings, cancel=cancel,
                 progress=progress)
    assert_instance_gone(settings)


# -- settings ------------------------------------------------------------------------------------

def test_settings_from_dict():
    s = RehearsalSettings.from_dict({"source": "schema", "statement_timeout_s": 60, "work_dir": "/var/tmp/x"})
    assert s.source == "schema" and s.statement_timeout_s == 60.0 and s.work_dir == Path("/var/tmp/x")
    assert RehearsalSettings.from_dict(None) == RehearsalSettings()
    for bad, key in (({"source": "copy"}, "migrate.rehearsal.source"),
                     ({"statement_timeout_s": 0}, "migrate.rehearsal.statement_timeout_s"),
                     ({"statement_timeout_s": True}, "migrate.rehearsal.statement_timeout_s"),
                     ({"work_dir": 3}, "migrate.rehearsal.work_dir"),
                     ({"jobs": 0}, "migrate.rehearsal.jobs"),
                     ({"sauce": 1}, "migrate.rehearsal.sauce")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            RehearsalSettings.from_dict(bad)


def test_a_deferred_constraint_failing_at_commit_is_rehearsal_failed(demo_archive, settings):
    up = ('ALTER TABLE "Notes" ADD CONSTRAINT "FK_Notes_Projects" FOREIGN KEY ("BoardId") REFERENCES "Projects" ("Id") '
          "NOT VALID DEFERRABLE INITIALLY DEFERRED;\n"
          'UPDATE "Notes" SET "BoardId" = 9000 WHERE "Id" = 1;\n')
    result = run(up, None, demo_archive, settings)
    assert result.up_error is not None and result.up_error.startswith("line 2 (at COMMIT): ")
    assert [f.code for f in result.findings()] == ["rehearsal-failed"]


def test_statement_timeout_on_the_copy(demo_archive, tmp_path):
    settings = RehearsalSettings(statement_timeout_s=0.2, work_dir=tmp_path / "work")
    result = run("SELECT 1;\nSELECT pg_sleep(5);", None, demo_archive, settings)
    assert result.up_error == "line 2: SQLSTATE 57014 (query_canceled)"
    assert result.up_error_text == "canceling statement due to statement timeout"
    assert result.up_statements[-1]["seconds"] < 4


def test_a_copy_that_cannot_be_made_is_a_clear_error(tmp_path, settings):
    from handlers.errors import DbopsError

    damaged = tmp_path / "b044.dump"
    damaged.write_bytes(b"PGDMP this is not an archive")
    for archive in (damaged, tmp_path / "missing.dump"):
        with pytest.raises(DbopsError, match="the copy to rehearse on could not be made: "):
            rehearse("SELECT 1;", None, archive=archive, backup_id="b044", settings=settings)
        assert_instance_gone(settings)


# -- DML that touches every row ----------------------------------------------------------------

@pytest.mark.parametrize("up, kind", [
    ('DELETE FROM "Notes" WHERE "Id" > 0;\n', "delete-without-where"),
    ('UPDATE "Notes" SET "Title" = "Title" WHERE "Id" IS NOT NULL;\n', "update-without-where"),
    ('BEGIN;\nDELETE FROM public."Notes" n WHERE length(n."Title") >= 0;\nCOMMIT;\n', "delete-without-where"),
])
def test_a_delete_or_update_that_touches_every_row_of_the_copy_counts_as_one_without_where(
        up, kind, demo_archive, settings):
    result = run(up, None, demo_archive, settings)
    assert result.up_error is None
    found = [f for f in result.findings() if f.code == kind]
    assert len(found) == 1 and found[0].severity is Severity.FORBIDDEN
    assert '"Notes"' in found[0].message and "every row" in found[0].message
    assert Rehearsal.from_dict(json.loads(json.dumps(result.to_dict()))).findings()[0].code == kind


def test_a_delete_of_some_rows_is_not_flagged(demo_archive, settings):
    result = run('DELETE FROM "Notes" WHERE "Id" % 10 = 0;\n', None, demo_archive, settings)
    assert result.up_error is None and result.every_row == []
    assert not [f for f in result.findings() if f.code == "delete-without-where"]
