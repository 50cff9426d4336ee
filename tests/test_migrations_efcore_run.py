"""EF Core's scripts rehearsed and applied on real PostgreSQL: the file's own START TRANSACTION and
COMMIT are left out (dbops runs each batch in its own transaction) and the report says so, with their
lines; what the script does, including its "__EFMigrationsHistory" row, lands as one transaction."""
from __future__ import annotations

from pathlib import Path

import psycopg

from handlers.migrations.apply import apply_migration
from handlers.target import Target
from tests.test_migrations_apply import FAST, columns
from tests.test_migrations_rehearsal import demo_archive, run, settings  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "efcore"
UP = (EXAMPLES / "add_note_color.up.sql").read_text()
DOWN = (EXAMPLES / "add_note_color.down.sql").read_text()
UP_NOTE = "UP's START TRANSACTION (line 1) and COMMIT (line 9) were left out: dbops runs each batch in its own"


def test_a_plain_ef_script_rehearses_and_the_report_says_what_became_of_its_transaction(demo_archive, settings):
    result = run(UP, DOWN, demo_archive, settings)
    assert result.up_error is None and result.down_error is None and result.reversible, result.to_dict()
    assert [s["line"] for s in result.up_statements] == [2, 4, 6]
    assert result.notes[0].startswith(UP_NOTE)
    assert result.notes[1].startswith("DOWN's START TRANSACTION (line 1) and COMMIT (line 9) were left out")
    shown = [s for s in result.to_sections() if s.title == "Notes"]
    assert shown and UP_NOTE in shown[0].text
    assert result.to_dict()["notes"] == result.notes


def test_a_plain_ef_script_applies_and_the_report_says_what_became_of_its_transaction(demo_db):
    result = apply_migration(Target("prod", demo_db), UP, FAST)
    assert result.ok and result.statements_applied == 3, result.to_dict()
    assert "Color" in columns(demo_db, "Notes")
    with psycopg.connect(demo_db) as conn:
        assert conn.execute('SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '
                            "'20261201090000_AddNoteColor'").fetchone()
    assert result.notes and result.notes[0].startswith(
        "the file's START TRANSACTION (line 1) and COMMIT (line 9) were left out")
    notes = [s for s in result.to_report().sections if s.title == "Notes"]
    assert notes and "left out: dbops runs each batch in its own transaction" in notes[0].text


def test_a_file_without_transaction_control_gets_no_note(demo_db):
    result = apply_migration(Target("prod", demo_db), 'ALTER TABLE "Notes" ADD "Color" text;', FAST)
    assert result.ok and result.notes == []
