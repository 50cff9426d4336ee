"""No production rows in the channel through object names: dynamic SQL in UP names tables, columns,
indexes, constraints and defaults after the copy's rows; the rehearsal names only what existed before
UP or what UP and DOWN spell out, and counts the rest by kind, in Slack, the terminal, the state
store and the log alike."""
from __future__ import annotations

import json

import psycopg
import pytest

from handlers.migrations.rehearsal import RehearsalSettings
from handlers.migrations.rehearsal.names import Nameable, withhold
from tests.test_migrations_e2e import dbops, prod, request_message, submit_form  # noqa: F401 (prod: a fixture)
from tests.test_migrations_rehearsal import demo_archive, run  # noqa: F401 (demo_archive: a fixture)
from tests.test_migrations_sandbox_e2e import state_text

# The issue's UP: a table named after three users' e-mail addresses and password hashes.
LEAK_TABLE = ("DO $$BEGIN EXECUTE format('CREATE TABLE %I (x int)', (SELECT string_agg(\"Email\"||':'||"
              "\"PasswordHash\", ',') FROM (SELECT * FROM \"Users\" ORDER BY \"Email\" LIMIT 3) u)); END$$;\n")
ROWS = ("(SELECT string_agg(\"Email\"||':'||\"PasswordHash\", ',') "
        "FROM (SELECT * FROM \"Users\" ORDER BY \"Email\" LIMIT 3) u)")
LEAKS = {
    "table": LEAK_TABLE,
    "column": f"DO $$BEGIN EXECUTE format('ALTER TABLE \"Notes\" ADD COLUMN %I int', {ROWS}); END$$;",
    "index": f"DO $$BEGIN EXECUTE format('CREATE INDEX %I ON \"Notes\" (\"Title\")', {ROWS}); END$$;",
    "constraint": f"DO $$BEGIN EXECUTE format('ALTER TABLE \"Notes\" ADD CONSTRAINT %I CHECK (true)', {ROWS}); END$$;",
    "default": f"DO $$BEGIN EXECUTE format('ALTER TABLE \"Notes\" ALTER COLUMN \"Title\" SET DEFAULT %L', {ROWS}); "
               "END$$;",
    "check": f"DO $$BEGIN EXECUTE format('ALTER TABLE \"Notes\" ADD CONSTRAINT \"CK_Title\" CHECK (\"Title\" <> %L)', "
             f"{ROWS}); END$$;",
    "sequence": f"DO $$BEGIN EXECUTE format('CREATE SEQUENCE %I', {ROWS}); END$$;",
    "view": f"DO $$BEGIN EXECUTE format('CREATE VIEW %I AS SELECT 1 AS x', {ROWS}); END$$;",
    "schema": f"DO $$BEGIN EXECUTE format('CREATE SCHEMA %I; CREATE TABLE %I.t (x int)', {ROWS}, {ROWS}); END$$;",
    "rename": f"DO $$BEGIN EXECUTE format('ALTER TABLE \"Boards\" RENAME TO %I', {ROWS}); END$$;",
}


@pytest.fixture(scope="module")
def taken(pg_server, demo_template) -> list[str]:
    """What the attacks read from the copy: the first users' addresses and password hashes."""
    with psycopg.connect(pg_server.dsn(demo_template)) as conn:
        rows = conn.execute('SELECT "Email", "PasswordHash" FROM "Users" ORDER BY "Email" LIMIT 3').fetchall()
    return [part for row in rows for part in (row[0], row[1][:12])]


def assert_no_production_value(taken: list[str], *texts: str) -> None:
    for text in texts:
        for value in taken:
            assert value not in text, f"{value} reached the output"


def everything(result) -> str:
    return json.dumps(result.to_dict()) + str(result.to_report().to_dict()) + " ".join(
        f.message for f in result.findings())


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_names_made_from_rows_never_leave_the_rehearsal(kind, demo_archive, tmp_path, taken):
    result = run(LEAKS[kind], "SELECT 1;", demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.up_error is None, result.private_error_text()
    assert_no_production_value(taken, everything(result))
    assert [f.code for f in result.findings()] == ["irreversible"]  # DOWN leaves it there: said without the name


def test_a_table_made_by_dynamic_sql_is_counted_by_kind(demo_archive, tmp_path):
    result = run(LEAK_TABLE, "SELECT 1;", demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.schema_diff == ["a table created by dynamic SQL: not there before UP, still there after DOWN"]
    locks = result.up_statements[0]["locks"]
    assert {"mode": "AccessExclusiveLock", "relation": "a table created by dynamic SQL"} in locks
    assert [d["relation"] for d in result.downtime] == ["a table created by dynamic SQL"]


def test_a_renamed_table_keeps_its_name_from_before_up(demo_archive, tmp_path):
    result = run(LEAKS["rename"], "SELECT 1;", demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert "table public.Boards: there before UP, missing after DOWN" in result.schema_diff
    assert "a table created by dynamic SQL: not there before UP, still there after DOWN" in result.schema_diff
    assert {"mode": "AccessExclusiveLock", "relation": '"Boards"'} in result.up_statements[0]["locks"]


def test_names_up_spells_out_and_those_postgresql_makes_from_them_are_shown(demo_archive, tmp_path):
    up = ('CREATE TABLE "Labels" ("Id" serial PRIMARY KEY, "Name" text UNIQUE);\n'
          'ALTER TABLE "Notes" ADD COLUMN "Color" text CHECK ("Color" <> \'\');\n')
    result = run(up, "SELECT 1;", demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.schema_diff == [
        "table public.Labels: not there before UP, still there after DOWN",
        "column Color on public.Notes: not there before UP, still there after DOWN",
        "constraint Notes_Color_check on public.Notes: not there before UP, still there after DOWN",
        "sequence public.Labels_Id_seq: not there before UP, still there after DOWN"], result.schema_diff
    assert {"mode": "AccessExclusiveLock", "relation": '"Labels"'} in result.up_statements[0]["locks"]


def test_values_read_back_are_withheld_unless_known():
    before = {"tables": [{"schema": "public", "name": "Notes", "kind": "table"}],
              "columns": [{"table": "public.Notes", "name": "Title", "type": "text", "not_null": True,
                           "default": None}]}
    after = {"tables": before["tables"],
             "columns": [{"table": "public.Notes", "name": "Title", "type": "public.\"user1@example.com\"",
                          "not_null": True, "default": "'user1@example.com'::text"}]}
    shown = Nameable.of(before, ["public"], ["text", "character varying"], [])
    kept, lines = withhold(before, after, shown)
    assert kept["columns"][0]["default"] == "<withheld>" and kept["columns"][0]["type"] == "<withheld>"
    assert lines == []
    assert shown.shows_type("character varying(300)") and shown.shows_type("text[]")
    assert not shown.shows_type("character varying(300) ; x")


def test_the_issue_attack_through_the_slack_form_posts_and_stores_no_row(bot_factory, fake_slack, prod, taken):
    bot = bot_factory(prod)
    submit_form(bot, "U0ALICE", LEAK_TABLE, "SELECT 1;", "leak-names")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the request", timeout=180)
    message = json.dumps(posted[0].params)
    assert "a table created by dynamic SQL" in message and "do-block" in message
    bot.stop()
    assert_no_production_value(taken, *fake_slack.raw_bodies(), bot.output(), state_text(prod))


def test_the_issue_attack_through_the_terminal_prints_and_stores_no_row(prod, tmp_path, taken):
    (tmp_path / "up.sql").write_text(LEAK_TABLE)
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "leak-names", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "a table created by dynamic SQL" in done.stdout
    assert_no_production_value(taken, done.stdout, done.stderr, state_text(prod))


def test_an_error_quoting_rows_reaches_the_requester_but_not_the_state_store(prod, tmp_path, taken):
    (tmp_path / "up.sql").write_text(f"DO $$BEGIN RAISE EXCEPTION '%', {ROWS}; END$$;\n")
    done = dbops("migrate", "request", "up.sql", "--name", "raise-rows", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert taken[0] in done.stderr  # the requester's own terminal
    assert_no_production_value(taken, done.stdout, state_text(prod))
    with psycopg.connect(prod) as conn:
        assert conn.execute("SELECT payload ? 'requester_note' FROM dbops.approval_requests").fetchone() == (False,)
