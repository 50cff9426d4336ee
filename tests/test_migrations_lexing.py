"""The server runs exactly what the analyser saw: a migration may not change how the server reads SQL
text (standard_conforming_strings and the like), each statement is one command of the extended
protocol, the session is pinned before the first statement and checked after every one, and the
apply's own timeouts stay the bot's."""
from __future__ import annotations

import json
import time

import psycopg
import pytest

from handlers.errors import UsageError
from handlers.migrations import check_migration
from handlers.migrations.apply import ApplySettings, apply_migration
from handlers.migrations.rehearsal import RehearsalSettings
from handlers.migrations.session import execute, pin_session
from handlers.target import Target
from tests.test_migrations_apply import HeldLock
from tests.test_migrations_e2e import dbops, prod, request_message, submit_form  # noqa: F401 (prod: a fixture)
from tests.test_migrations_rehearsal import demo_archive, run  # noqa: F401 (demo_archive: a fixture)

FAST = ApplySettings(lock_timeout_s=0.3, statement_timeout_s=30, lock_retries=1, retry_backoff_s=0.1)
# The issue's file: pglast reads line 2 as one SELECT of a string; with standard strings off the
# server reads `'tidy\', '` as a whole string and runs the DELETE after it.
HIDDEN = "SELECT 'tidy\\', ' ; DELETE FROM \"Notes\" WHERE \"Title\" = $t$fresh$t$; -- ';\n"
ISSUE_UP = "SET standard_conforming_strings = off;\n" + HIDDEN


def fresh_notes(dsn: str, count: int = 3) -> None:
    """Notes written after the backup: the rehearsal's copy has none of them."""
    with psycopg.connect(dsn) as conn:
        conn.execute('INSERT INTO "Notes" ("UserId", "Title", "Content") SELECT "UserId", \'fresh\', \'\' '
                     'FROM "Notes" LIMIT %s', (count,))


def fresh_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute('SELECT count(*) FROM "Notes" WHERE "Title" = \'fresh\'').fetchone()[0]


REFUSED = [
    ISSUE_UP,
    "SET LOCAL standard_conforming_strings TO off;\nSELECT 1;",
    "set Standard_Conforming_Strings = false;",
    "RESET standard_conforming_strings;",
    "SELECT set_config('standard_conforming_strings', 'off', false);",
    "SELECT pg_catalog.set_config(U&'standard\\005fconforming_strings', 'off', false);",
    "ALTER ROLE CURRENT_USER SET standard_conforming_strings = off;",
    "ALTER DATABASE asidenote SET standard_conforming_strings = off;",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS $$ SELECT 1 $$;",
    "ALTER FUNCTION f() SET standard_conforming_strings = off;",
    "DO $$BEGIN SET standard_conforming_strings = off; END$$;",
    "DO $$BEGIN EXECUTE format('SET %s = off', 'STANDARD_CONFORMING_STRINGS'); END$$;",
    "SET backslash_quote = on;",
    "SET escape_string_warning = off;",
    "SET client_encoding = 'SJIS';",
    "SELECT set_config('client_encoding', 'BIG5', true);",
]


@pytest.mark.parametrize("up", REFUSED)
def test_a_migration_that_names_a_lexing_setting_is_refused_by_the_check_and_the_apply(up, demo_db):
    with pytest.raises(UsageError, match="changes how the server reads SQL text"):
        check_migration(up, "SELECT 1;")
    with pytest.raises(UsageError, match="UP.sql line 1: it names"):
        apply_migration(Target("prod", demo_db), up, FAST)


def test_a_down_that_names_one_is_refused_too():
    with pytest.raises(UsageError, match="DOWN.sql line 2: it names standard_conforming_strings"):
        check_migration("SELECT 1;", "SELECT 1;\nSET standard_conforming_strings = off;")


def test_migrate_check_does_not_say_ok_for_the_issue_file(demo_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    (tmp_path / "up.sql").write_text(ISSUE_UP)
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    done = dbops("migrate", "check", "up.sql", "--down", "down.sql", dsn=demo_db, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert "up.sql line 1: it names standard_conforming_strings" in " ".join(done.stderr.split())
    assert "OK" not in done.stdout


def test_one_statement_is_one_command_two_are_refused_by_the_server(demo_db):
    two = 'SELECT 1; DELETE FROM "Notes";'  # what a server reading a statement differently would see
    with psycopg.connect(demo_db, autocommit=True) as conn:
        pin_session(conn)
        with pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"):
            execute(conn, two)
        assert conn.execute('SELECT count(*) FROM "Notes"').fetchone()[0] > 0


def test_a_setting_changed_at_run_time_stops_the_apply_before_the_next_statement(demo_db):
    # The name is built at run time: only the check after the statement can see the change.
    up = ("DO $$BEGIN PERFORM set_config('standard_' || 'conforming_strings', 'off', false); END$$;\n" + HIDDEN)
    fresh_notes(demo_db)
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert not result.ok and result.failed_line == 1, result.error
    assert "standard_conforming_strings is now off" in result.error and result.statements_applied == 0
    assert fresh_count(demo_db) == 3


def test_the_session_is_pinned_whatever_the_database_default(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{name}" SET standard_conforming_strings = off')
        conn.execute(f'ALTER DATABASE "{name}" SET escape_string_warning = off')
    result = apply_migration(Target("prod", demo_db), "UPDATE \"Notes\" SET \"Title\" = 'C:\\temp' WHERE \"Id\" = 1;",
                             FAST)
    assert result.ok, result.error
    with psycopg.connect(demo_db) as conn:
        assert conn.execute('SELECT "Title" FROM "Notes" WHERE "Id" = 1').fetchone()[0] == "C:\\temp"


def test_the_migration_cannot_switch_off_the_apply_lock_timeout(demo_db):
    up = 'SET lock_timeout = 0;\nALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
    with HeldLock(demo_db, "Notes"):
        started = time.monotonic()
        result = apply_migration(Target("prod", demo_db), up, FAST)
        waited = time.monotonic() - started
    assert not result.ok and "no lock within 0.3 s (lock_timeout)" in result.error, result.error
    assert result.attempts == 2 and waited < FAST.statement_timeout_s
    assert any("line 1 switched off or raised lock_timeout" in n for n in result.notes)


def test_the_migration_cannot_switch_off_the_apply_statement_timeout(demo_db):
    settings = ApplySettings(lock_timeout_s=1, statement_timeout_s=0.3, lock_retries=0, retry_backoff_s=0.1)
    for up in ("SET statement_timeout = 0;\nSELECT pg_sleep(5);",
               "SELECT set_config('statement_timeout', '1h', false);\nSELECT pg_sleep(5);",
               "SET statement_timeout = '15min';\nRESET ALL;\nSELECT pg_sleep(5);"):
        result = apply_migration(Target("prod", demo_db), up, settings)
        assert not result.ok and "statement timeout" in result.error, (up, result.error)
        assert result.failed_line == up.count("\n") + 1
    shorter = apply_migration(Target("prod", demo_db), "SET LOCAL lock_timeout = '100ms';\nSELECT 1;", FAST)
    assert shorter.ok and shorter.notes == []  # a shorter limit of the migration's own is kept


def test_the_issue_file_through_the_slack_form_is_refused_and_deletes_nothing(bot_factory, fake_slack, prod,
                                                                               tmp_path):
    (tmp_path / "dbops.toml").write_text("[approvals]\nauto_apply_clean = true\n")
    fresh_notes(prod)
    bot = bot_factory(prod)
    submit_form(bot, "U0ALICE", ISSUE_UP, "SELECT 1;", "tidy")
    said = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                        if c.params["user"] == "U0ALICE"], what="the refusal", timeout=120)
    assert "it names standard_conforming_strings" in said[0].params["text"]
    time.sleep(1)
    assert request_message(fake_slack, "r001") == []
    assert fresh_count(prod) == 3
    with psycopg.connect(prod) as conn:
        assert conn.execute("SELECT count(*) FROM dbops.approval_requests").fetchone()[0] == 0


def test_the_issue_file_through_the_terminal_request_is_refused(prod, tmp_path):
    (tmp_path / "dbops.toml").write_text("[approvals]\nauto_apply_clean = true\n")
    (tmp_path / "up.sql").write_text(ISSUE_UP)
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "tidy", "--format", "json",
                 dsn=prod, cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert "it names standard_conforming_strings" in json.loads(done.stdout)["error"]


def test_the_rehearsal_stops_where_a_statement_changed_the_setting(tmp_path, demo_archive):
    up = ("DO $$BEGIN PERFORM set_config('standard_' || 'conforming_strings', 'off', false); END$$;\n" + HIDDEN)
    result = run(up, "SELECT 1;", demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.up_error == ("line 1: it changed how the server reads SQL text (standard_conforming_strings is "
                               "now off), which dbops stops at")
    assert [f.code for f in result.findings()] == ["rehearsal-failed"] and len(result.up_statements) == 1


def test_the_rehearsal_keeps_its_statement_timeout(tmp_path, demo_archive):
    settings = RehearsalSettings(work_dir=tmp_path / "work", statement_timeout_s=0.3)
    result = run("SET statement_timeout = 0;\nSELECT pg_sleep(5);", None, demo_archive, settings)
    assert result.up_error == "line 2: SQLSTATE 57014 (query_canceled)"
