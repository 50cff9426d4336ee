"""The rehearsal compares the content of every table UP and DOWN wrote to, found from the locks their
transactions took, not from what the analyser understood: a DO block or a function that changes rows,
undone by nothing, is data DOWN does not bring back. Only counts and checksums leave the copy."""
from __future__ import annotations

from pathlib import Path

from handlers.migrations.rehearsal import content
from tests.test_migrations_rehearsal import demo_archive, run, settings  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "efcore"
NOT_THE_GUARD = '''DO $$
BEGIN
    UPDATE "Notes" SET "Title" = 'x' WHERE "Id" % 7 = 0;
END $$;
'''
NOTE_TITLES = "rows differ by primary key after DOWN (0 gone, 0 not there before UP,"


def test_a_do_block_the_analyser_cannot_see_into_is_data_not_brought_back(demo_archive, settings):
    result = run(NOT_THE_GUARD, "SELECT 1;", demo_archive, settings)
    assert result.schema_diff == [] and result.touched_tables == ["public.Notes"]
    assert any(d.startswith('column "public"."Notes"."Title": its values differ after DOWN') for d in result.data_diff)
    (rows,) = [d for d in result.data_diff if NOTE_TITLES in d]
    assert rows.startswith("table public.Notes: ") and "changed)" in rows
    assert [f.code for f in result.findings()] == ["irreversible"]
    line = next(li for li in result.checklist_lines() if li.startswith("rollback tested"))
    assert line.startswith("rollback tested: schema identical, but DOWN does not bring the data back")
    assert "'x'" not in str(result.to_dict()["data_diff"])  # counts and checksums, never a value


def test_a_function_that_deletes_rows_and_a_down_that_makes_up_others_is_seen(demo_archive, settings):
    up = ('CREATE FUNCTION purge_logs() RETURNS void LANGUAGE sql AS $f$ DELETE FROM "AuditLogs" WHERE "Id" <= 3 $f$;\n'
          "SELECT purge_logs();\n")
    down = ('INSERT INTO "AuditLogs" ("Id", "ActionType") VALUES (-1, \'made up\'), (-2, \'made up\'), '
            "(-3, 'made up');\nDROP FUNCTION purge_logs();\n")
    result = run(up, down, demo_archive, settings)
    assert result.schema_diff == [] and "public.AuditLogs" in result.touched_tables
    assert "table public.AuditLogs: 6 rows differ by primary key after DOWN (3 gone, 3 not there before UP, 0 " \
           "changed)" in result.data_diff
    assert not any("rows before UP" in d for d in result.data_diff)  # as many rows: only the content says it
    assert result.reversible is False


def test_the_idempotent_ef_drop_column_with_an_empty_re_add_is_still_data_not_brought_back(demo_archive, settings):
    up = (EXAMPLES / "drop_note_content.idempotent.up.sql").read_text()
    down = (EXAMPLES / "drop_note_content.idempotent.down.sql").read_text()
    result = run(up, down, demo_archive, settings)
    assert result.schema_diff == []
    assert sum('"public"."Notes"."Content"' in d for d in result.data_diff) == 1, result.data_diff
    assert [f.code for f in result.findings()] == ["irreversible"]


def test_a_touched_table_too_large_to_measure_is_named_not_passed(demo_archive, settings, monkeypatch):
    monkeypatch.setattr(content, "CONTENT_TABLE_BYTES", 0)
    result = run(NOT_THE_GUARD, "SELECT 1;", demo_archive, settings)
    assert result.unmeasured_tables == ['"public"."Notes"'] and result.data_diff == []
    line = next(li for li in result.checklist_lines() if li.startswith("rollback tested"))
    assert line == 'rollback tested: schema identical; the data of "public"."Notes" was not compared (too large ' \
                   "to measure whole)"
