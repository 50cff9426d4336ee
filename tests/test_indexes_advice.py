"""`indexes suggest` against real servers: a generated schema with two known missing indexes and a
workload run through psycopg with server-side parameters (pg_stat_statements records `$1`), proven
on a copy restored from a real pg_dump archive. Asserts read plans, costs and buffers, never timings.

One proof (module fixture) serves the assertions on what was and was not suggested; the terminal
test files a request from a suggestion, rehearses and applies it, and reads the digest's follow-up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import psycopg
import pytest

from handlers import demo_data
from handlers.errors import DbopsError
from handlers.indexes import IndexSettings
from handlers.indexes.advice import AdviceSettings, read_workload, suggest
from handlers.indexes.advice.copy import AdviceCopy, CopyFailed
from handlers.indexes.advice.statements import Names, Skipped, read_statement
from handlers.migrations.apply import ApplySettings, apply_migration
from handlers.postgres import TemporaryInstance, pg_tool
from handlers.target import Target
from tests.fakes.bot_process import ROOT

SCHEMA = '''
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE "Users" ("Id" int PRIMARY KEY, "Email" text NOT NULL, "Name" text);
CREATE INDEX "IX_Users_Email" ON "Users" ("Email");
INSERT INTO "Users" SELECT g, 'user' || g || '@example.com', 'name ' || g FROM generate_series(1, 5000) g;
CREATE TABLE "Notes" ("Id" int PRIMARY KEY, "UserId" int NOT NULL, "CreatedAt" timestamptz NOT NULL,
                      "IsArchived" boolean NOT NULL, "Title" text);
INSERT INTO "Notes" SELECT g, g % 500 + 1, timestamptz '2024-01-01' + g * interval '1 minute', g % 2 = 0,
                           'title ' || g FROM generate_series(1, 50000) g;
CREATE TABLE "Tokens" ("Id" int PRIMARY KEY, "TokenHash" text NOT NULL, "UserId" int NOT NULL);
INSERT INTO "Tokens" SELECT g, md5(g::text), g % 5000 + 1 FROM generate_series(1, 20000) g;
CREATE TABLE "Tags" ("Id" int PRIMARY KEY, "Name" text NOT NULL);
INSERT INTO "Tags" SELECT g, 'tag' || g FROM generate_series(1, 12) g;
CREATE TABLE "Wide" ("Id" int PRIMARY KEY, "Score" int NOT NULL, "Payload" text NOT NULL);
INSERT INTO "Wide" SELECT g, g % 100, repeat(md5(g::text), 30) FROM generate_series(1, 5000) g;
'''
LOOKUP = 'SELECT "Id", "Title" FROM "Notes" WHERE "UserId" = %s ORDER BY "CreatedAt" DESC LIMIT %s'
COUNT = 'SELECT count(*) FROM "Notes" WHERE "UserId" = %s'
HALF = 'SELECT "Id" FROM "Notes" WHERE "IsArchived" = %s'
TOKEN = 'SELECT "UserId" FROM "Tokens" WHERE "TokenHash" = %s'
INDEXED = 'SELECT "Id", "Name" FROM "Users" WHERE "Email" = %s'
TINY = 'SELECT * FROM "Tags" WHERE "Name" = %s'
WIDE = 'SELECT * FROM "Wide" WHERE "Score" > %s'
WRITE = 'UPDATE "Tokens" SET "UserId" = %s WHERE "TokenHash" = %s'
WORKLOAD = [
    (LOOKUP, lambda i: (i % 500 + 1, 10)), (COUNT, lambda i: (i % 500 + 1,)), (HALF, lambda i: (i % 2 == 0,)),
    (TOKEN, lambda i: (f"{i:x}",)), (INDEXED, lambda i: (f"user{i}@example.com",)),
    (TINY, lambda i: (f"tag{i % 12}",)), (WIDE, lambda i: (i % 10,)), (WRITE, lambda i: (1, "none")),
]


def pgss(statement: str) -> str:
    """The statement as pg_stat_statements records it from psycopg's server-side parameters."""
    n = iter(range(1, 10))
    return statement.replace("%s", "{}").format(*(f"${next(n)}" for _ in range(statement.count("%s"))))


def build_prod(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("VACUUM ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")  # only the workload below counts
    run_workload(dsn)


def run_workload(dsn: str, times: int = 20) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement, args in WORKLOAD:
            for i in range(times):
                cur = conn.execute(statement, args(i))  # psycopg sends $1: the server binds the values
                if cur.description:
                    cur.fetchall()


def indexes_of(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes"
                            " WHERE schemaname = 'public' ORDER BY 1, 2, 3").fetchall()


def dump(dsn: str, path, major: int | None = None) -> None:
    subprocess.run([pg_tool("pg_dump", major), "-Fc", "-f", str(path), "--dbname", dsn], check=True,
                   capture_output=True)


# 18 (the session's server), and each other major this machine has binaries for (DBOPS_PG_BIN_<major>).
MAJORS = [18] + sorted({int(k.rsplit("_", 1)[1]) for k in os.environ
                        if k.startswith("DBOPS_PG_BIN_") and k.rsplit("_", 1)[1].isdigit()} - {18})


@pytest.fixture(scope="module", params=MAJORS, ids=[f"pg{m}" for m in MAJORS])
def proven(request, pg_server, tmp_path_factory):
    """One proof on a copy, per major: (the Advice, production's indexes before and after, the archive)."""
    major = request.param
    server = pg_server if major == 18 else TemporaryInstance(
        purpose="test", major=major, settings={"shared_preload_libraries": "pg_stat_statements"}).start()
    name = f"advice{os.getpid()}"
    demo_data.create_database(server.dsn(), name)
    dsn = server.dsn(name)
    try:
        build_prod(dsn)
        archive = tmp_path_factory.mktemp("advice") / "prod.dump"
        dump(dsn, archive, major)
        before = indexes_of(dsn)
        with psycopg.connect(dsn) as conn:
            conn.read_only = True
            workload = read_workload(conn, IndexSettings(), "prod")
        advice = suggest(workload, archive, backup_id="b001", backup_created_at=None, settings=AdviceSettings())
        yield advice, before, indexes_of(dsn), archive, major
    finally:
        demo_data.drop_database(server.dsn(), name)
        if server is not pg_server:
            server.stop()


def by_statement(advice, statement: str):
    text = pgss(statement)
    return [u for u in advice.unhelped if u.query == text]


def test_each_missing_index_is_suggested_with_its_proof(proven):
    advice = proven[0]
    assert [(s.table, s.columns) for s in advice.suggestions] == [
        ("Notes", ("UserId", "CreatedAt")), ("Tokens", ("TokenHash",))]
    notes, tokens = advice.suggestions
    assert notes.name == "IX_Notes_UserId_CreatedAt" and tokens.name == "IX_Tokens_TokenHash"
    # One composite index serves both statements on Notes: (UserId) alone is its prefix, never suggested.
    assert sorted(q.query for q in notes.queries) == sorted([pgss(LOOKUP), pgss(COUNT)])
    for q in notes.queries + [q for q in tokens.queries if q.query == pgss(TOKEN)]:
        assert q.cost_after <= q.cost_before / 2, q
        assert q.before.samples == q.after.samples == 5
        assert q.after.buffers < q.before.buffers / 2, q  # shared buffers: the proof that does not depend on load
    assert notes.size_bytes > 0 and notes.build_s > 0 and notes.production_build_s >= notes.build_s
    assert notes.statement == ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "IX_Notes_UserId_CreatedAt" '
                               'ON "public"."Notes" ("UserId", "CreatedAt");')
    assert tokens.down == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."IX_Tokens_TokenHash";'
    assert advice.copy_version.split(".")[0] == advice.source_version.split(".")[0]


def test_a_write_on_the_same_column_is_served_but_only_explained(proven):
    tokens = proven[0].suggestions[1]
    write = [q for q in tokens.queries if q.query == pgss(WRITE)]
    assert write and write[0].before is None and write[0].after is None
    assert "only EXPLAINed" in write[0].not_measured and write[0].cost_after <= write[0].cost_before / 2


@pytest.mark.parametrize("statement, reason", [
    (TINY, "table Tags has 12 rows"),
    (INDEXED, "already uses IX_Users_Email"),
    (HALF, "returns ~50% of Notes"),
    (WIDE, "of Wide: reading the table is cheaper"),
], ids=["tiny table", "already indexed", "half the table", "most of a wide table"])
def test_no_suggestion_and_the_reason_for(proven, statement, reason):
    found = by_statement(proven[0], statement)
    assert len(found) == 1, [u.query for u in proven[0].unhelped]
    assert reason in found[0].reason
    assert all(pgss(statement) not in [q.query for q in s.queries] for s in proven[0].suggestions)


def test_production_indexes_are_unchanged_by_suggest(proven):
    _, before, after, _, _ = proven
    assert before == after and len(before) == 6  # five primary keys and IX_Users_Email


def test_the_report_and_json_say_what_was_proven_where(proven):
    advice = proven[0]
    data = advice.to_json()
    first = data["suggestions"][0]
    assert {"table", "schema", "columns", "statement", "queries", "before", "after", "size_bytes", "build_s",
            "writes_per_day"} <= set(first)
    assert first["before"]["buffers"] > first["after"]["buffers"]
    report = advice.to_report("/db")
    assert "PostgreSQL" in dict(report.facts)["Copy"] and "backup b001" in dict(report.facts)["Copy"]
    text = report.sections[0].text
    assert "buffers" in text and "`/db indexes suggest --request 1`" in text and "UP:   CREATE INDEX" in text
    assert "Statements no index helps (4)" in [s.title for s in report.sections]


def test_the_slack_messages_fit_a_phone_and_name_the_request_command(proven):
    from bot.core import output
    from tests.fakes.slack_api import all_texts, payload_violations

    messages = output.slack_messages(proven[0].to_report("/db"))
    for message in messages:
        assert payload_violations("chat.postMessage", message) == []
    blob = "".join(all_texts([m["blocks"] for m in messages]))
    assert "/db indexes suggest --request 2" in blob and "IX_Tokens_TokenHash" in blob


# -- hostile statements ---------------------------------------------------------------------
NAMES = Names({("public", "Notes"): ("Id", "UserId", "Title"), ("other", "Notes"): ("Id",)}, ["public"])


@pytest.mark.parametrize("text, runnable, plannable", [
    ('SELECT * FROM "Notes" WHERE "UserId" = $1', None, None),
    ('SELECT pg_sleep($1) FROM "Notes" WHERE "UserId" = $2', "pg_sleep", "pg_sleep"),
    ("SELECT set_config($1, $2, false)", "set_config", "set_config"),
    ('SELECT pg_catalog.pg_read_file($1) FROM "Notes"', "pg_read_file", "pg_read_file"),
    ('SELECT public.evil("Title") FROM "Notes" WHERE "UserId" = $1', "evil", "evil"),
    ('WITH d AS (DELETE FROM "Notes" WHERE "UserId" = $1 RETURNING *) SELECT * FROM d', "data-modifying", None),
    ('SELECT * FROM "Notes" WHERE "UserId" = $1 FOR UPDATE', "locks rows", None),
    ('UPDATE "Notes" SET "Title" = $1 WHERE "UserId" = $2', "a write", None),
    ('SELECT "Id" INTO stolen FROM "Notes"', "SELECT INTO", "SELECT INTO"),
    ('SELECT * FROM "Notes" WHERE "UserId" OPERATOR(public.=) $1', "operator", "operator"),
], ids=["plain", "pg_sleep", "set_config", "pg_read_file", "own function", "data-modifying CTE", "for update",
        "update", "select into", "own operator"])
def test_only_plain_selects_with_known_functions_run_on_the_copy(text, runnable, plannable):
    stmt = read_statement(text, NAMES)
    assert (stmt.runnable is None) == (runnable is None) and (runnable is None or runnable in stmt.runnable)
    assert (stmt.plannable is None) == (plannable is None) and (plannable is None or plannable in stmt.plannable)


@pytest.mark.parametrize("text", ["SELECT 1; DROP TABLE \"Notes\"", "VACUUM \"Notes\"", "INSERT INTO t VALUES ($1)",
                                  "SELECT FROM WHERE"])
def test_several_statements_utility_and_unparsable_texts_are_skipped(text):
    with pytest.raises(Skipped):
        read_statement(text, NAMES)


def test_a_name_in_two_schemas_is_read_with_the_search_path_and_said_to_be_ambiguous():
    stmt = read_statement('SELECT * FROM "Notes" WHERE "UserId" = $1', NAMES)
    assert stmt.tables == [("public", "Notes")] and stmt.params[1].column == "UserId"
    assert "other, public" in stmt.notes[0] and "search_path" in stmt.notes[0]


def test_the_copy_is_read_only_for_a_non_superuser_even_past_the_parser(proven):
    """The second line of defence: a write that reached the copy's runner is refused by the server."""
    copy = AdviceCopy(proven[4], None, 1, 5.0)
    try:
        copy.start(proven[3])
        role = copy.conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert role == ("app_owner", False)
        names = Names({("public", "Notes"): ("Id", "UserId", "Title")}, ["public"])
        stmt = read_statement('SELECT * FROM "Notes" WHERE "UserId" = $1', names)
        stmt.text = 'DELETE FROM "Notes" WHERE "UserId" = $1'  # as if the parser had been fooled
        with pytest.raises(CopyFailed) as failed:
            copy.plan(stmt, ["1"], analyze=True)
        assert failed.value.sqlstate == "25006"  # read_only_sql_transaction
        assert copy.conn.execute('SELECT count(*) FROM "Notes" WHERE "UserId" = 1').fetchone()[0] == 100
    finally:
        copy.stop()


def test_a_major_that_is_not_installed_is_a_clear_error_naming_the_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv("DBOPS_PG_BIN_15", raising=False)
    monkeypatch.setenv("DBOPS_PG_DIR", str(tmp_path / "no-postgres-here"))
    copy = AdviceCopy(15, tmp_path, 1, 5.0)
    with pytest.raises(DbopsError) as failed:
        copy.start(tmp_path / "never-read.dump")
    assert "PostgreSQL 15" in str(failed.value) and "dbops pg install 15" in str(failed.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    copy.stop()


# -- the terminal: suggest, --request, rehearsal, apply, digest --------------------------------------
def dbops(*args, dsn, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": dsn, "DBOPS_DOTENV": "/nonexistent",
            "DBOPS_CONFIG": str(cwd / "dbops.toml"), "DBOPS_BACKUP_DIR": str(cwd / "backups")}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_request_files_a_migration_whose_rehearsal_and_apply_create_it_concurrently_then_the_digest_follows(
        fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    build_prod(fresh_db)
    assert dbops("backup", dsn=fresh_db, cwd=tmp_path).returncode == 0
    before = indexes_of(fresh_db)
    done = dbops("indexes", "suggest", "--request", "1", "--format", "json", dsn=fresh_db, cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # a request that waits for an approver
    out = json.loads(done.stdout)
    assert out["request"] == "r001" and out["suggestion"]["name"] == "IX_Notes_UserId_CreatedAt"
    assert indexes_of(fresh_db) == before  # suggest and the request create nothing on production

    with psycopg.connect(fresh_db) as conn:
        status, payload = conn.execute("SELECT status, payload FROM dbops.approval_requests WHERE id = 1").fetchone()
    assert status == "pending"
    assert payload["up"] == out["suggestion"]["statement"] + "\n"
    assert payload["down"].startswith("DROP INDEX CONCURRENTLY")
    rehearsed = payload["rehearsal"]["up_statements"]
    assert [(s["outside_transaction"], s["statement"].split(" IF ")[0]) for s in rehearsed] == [
        (True, "CREATE INDEX CONCURRENTLY")]
    assert payload["rehearsal"]["down_statements"][0]["outside_transaction"] is True

    applied = apply_migration(Target("prod", fresh_db), payload["up"], ApplySettings())
    assert applied.ok and [s["outside_transaction"] for s in applied.statements] == [True]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                             "'\"IX_Notes_UserId_CreatedAt\"'::regclass").fetchone()
        conn.execute("UPDATE dbops.approval_requests SET status = 'applied', applied_at = %s WHERE id = 1",
                     (datetime.now(timezone.utc),))
    assert valid == (True,)

    run_workload(fresh_db, times=10)  # production with the index: the follow-up's calls
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
    digest = dbops("digest", "--format", "json", dsn=fresh_db, cwd=tmp_path)
    assert digest.returncode in (0, 1), digest.stderr
    lines = json.loads(digest.stdout)["suggested_indexes"]
    assert any(line.startswith("last `indexes suggest`") and "IX_Notes_UserId_CreatedAt (Notes)" in line
               for line in lines), lines
    followed = [line for line in lines if line.startswith("IX_Notes_UserId_CreatedAt (`r001`, applied")]
    assert followed and "scans so far" in followed[0] and "not used yet" not in followed[0], lines
    assert "predicted" in followed[0] and "production now" in followed[0] and "young: the unused check" in followed[0]
