"""Inputs written to slip past the migration check: each forbidden class, evaded with quoting,
schema-qualified names, comments, case, nested statements and several commands in one ALTER.
Every one must still need an approval, under the code named. No database: the check alone."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.errors import UsageError
from handlers.migrations import check_migration
from handlers.migrations.nodes import data_changes
from handlers.migrations.parsing import parse_statements
from handlers.migrations.predicates import matches_every_row
from handlers.migrations.rules.type_table import Change, classify
from handlers.migrations.sqltypes import SqlType

ROOT = Path(__file__).resolve().parents[1]
DOWN = "SELECT 1;"  # reversibility is not what these tests are about

EVASIONS = [
    # drop-table
    ('dRoP tAbLe public."Notes";', "drop-table"),
    ('DROP /* not a table */ TABLE "Notes";', "drop-table"),
    ('DROP\n-- a comment between the words\nTABLE\n"Notes"', "drop-table"),
    ('DROP TABLE IF EXISTS scratch_a, "Notes";', "drop-table"),
    ('ALTER TABLE "Notes" RENAME TO notes_old;\nCREATE TABLE "Notes" (id int);\nDROP TABLE notes_old;', "drop-table"),
    # a table "created by this file" under another search_path is not the one dropped
    ('CREATE SCHEMA s;\nSET search_path = s;\nCREATE TABLE "Notes" (id int);\nSET search_path = public;\n'
     'DROP TABLE "Notes";', "drop-table"),
    ("CREATE SCHEMA s;\nSELECT set_config('search_path', 's', false);\nCREATE TABLE \"Notes\" (id int);\n"
     "RESET search_path;\nDROP TABLE \"Notes\";", "drop-table"),
    # a CREATE that fails (the table exists) inside a rolled-back savepoint made nothing
    ('BEGIN;\nSAVEPOINT a;\nCREATE TABLE "Notes" (id int);\nROLLBACK TO SAVEPOINT a;\nDROP TABLE "Notes";\nCOMMIT;',
     "drop-table"),
    ("CREATE TABLE t (id int);\nALTER TABLE t SET SCHEMA archive;\nDROP TABLE t;", "drop-table"),
    # drop-column
    ('ALTER TABLE "Notes" ADD COLUMN x int, DROP COLUMN "IsPinned";', "drop-column"),
    ('alter table only public."Notes" drop "IsPinned";', "drop-column"),
    ('ALTER TABLE "Notes" ALTER COLUMN "Title" SET NOT NULL, DROP COLUMN IF EXISTS "IsPinned" CASCADE;', "drop-column"),
    # truncate
    ('TRUNCATE ONLY "Notes";', "truncate"),
    ('truncate table public."Notes" restart identity;', "truncate"),
    # delete/update of every row, nested or with a WHERE that is always true
    ('WITH d AS (DELETE FROM "Notes" RETURNING 1) SELECT 1;', "delete-without-where"),
    ('WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM "Notes" RETURNING 1) SELECT 1) SELECT 1;',
     "delete-without-where"),
    ('EXPLAIN ANALYZE DELETE FROM "Notes";', "delete-without-where"),
    ('PREPARE p AS DELETE FROM "Notes";\nEXECUTE p;', "delete-without-where"),
    ('CREATE RULE r AS ON INSERT TO "Boards" DO INSTEAD DELETE FROM "Notes";', "delete-without-where"),
    ('COPY (DELETE FROM "Notes" RETURNING *) TO STDOUT;', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE true;', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE 1=1;', "delete-without-where"),
    ("DELETE FROM \"Notes\" WHERE 'a'='a';", "delete-without-where"),
    ('DELETE FROM "Notes" WHERE "IsPinned" IS NOT NULL OR TRUE;', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE NOT false;', "delete-without-where"),
    ("DELETE FROM \"Notes\" WHERE 't'::boolean;", "delete-without-where"),
    ('DELETE FROM "Notes" WHERE (1 = 1) IS TRUE AND 2 > 1 AND 1 IN (1, 2) AND 1 + 1 = 2;', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE EXISTS (SELECT 1);', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE coalesce(NULL, true);', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE "Id" = "Id";', "delete-without-where"),
    ('DELETE FROM "Notes" WHERE "Id" IS NULL OR "Id" IS NOT NULL;', "delete-without-where"),
    ('UPDATE "Notes" SET "Title" = \'\' WHERE NOT (1 = 0);', "update-without-where"),
    ('WITH u AS (UPDATE public."Notes" SET "Title" = NULL RETURNING 1) SELECT count(*) FROM u;',
     "update-without-where"),
    # predicates the older copy cannot judge
    ('DELETE FROM "Notes" WHERE "CreatedAt" > now() - interval \'10 minutes\';', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "CreatedAt" >= current_date;', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "CreatedAt" >= CURRENT_TIMESTAMP(0) - interval \'1 hour\';', "volatile-predicate"),
    ('UPDATE "Notes" SET "IsPinned" = false WHERE statement_timestamp() <= "CreatedAt";', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "CreatedAt" BETWEEN \'2020-01-01\' AND transaction_timestamp();', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "Id" % 2 = 0 AND random() > 0.5;', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE NOT ("CreatedAt" < now() - interval \'1 year\');', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "CreatedAt" > \'NOW\';', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "CreatedAt" = localtimestamp;', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE age("CreatedAt") < interval \'1 day\';', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE now() - "CreatedAt" < interval \'1 day\';', "volatile-predicate"),
    ('DELETE FROM "Notes" WHERE "Id" <> ALL (SELECT "Id" FROM "Notes" WHERE "CreatedAt" < now() - interval \'1 day\');',
     "volatile-predicate"),
    ('DELETE FROM "Notes" USING (SELECT "Id" FROM "Notes" WHERE "CreatedAt" > now()) n WHERE n."Id" = "Notes"."Id";',
     "volatile-predicate"),
    ('WITH d AS (DELETE FROM "Notes" WHERE "CreatedAt" > clock_timestamp() RETURNING 1) SELECT 1;',
     "volatile-predicate"),
    # code the check cannot see through
    ("DO $$ BEGIN EXECUTE 'DROP TABLE \"Notes\"'; END $$;", "do-block"),
    ("do language plpgsql $x$ begin perform 1; end $x$;", "do-block"),
    ("CALL p();", "call"),
    ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE x $$;\nSELECT f();", "side-effect-function"),
    ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE \"Notes\"'; END $$;\n"
     "SELECT f();", "side-effect-function"),
    ("CREATE FUNCTION words(n \"Notes\") RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
     'SELECT n.words FROM "Notes" n;', "side-effect-function"),  # attribute notation calls words(n)
    ('CREATE FUNCTION lower(int) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nSELECT lower(1);',
     "side-effect-function"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", "side-effect-function"),
    ('SELECT PG_TERMINATE_BACKEND(1);', "side-effect-function"),
    ('SELECT "pg_terminate_backend"(1);', "side-effect-function"),
    ('SELECT pg_catalog.pg_terminate_backend(1);', "side-effect-function"),
    ('SELECT * FROM pg_terminate_backend(1);', "side-effect-function"),
    ('SELECT 1 FROM "Notes" WHERE "Id" = 1 AND pg_terminate_backend(1);', "side-effect-function"),
    ("VALUES (pg_cancel_backend(1));", "side-effect-function"),
    ("SELECT dblink_exec('dbname=x', 'DROP TABLE y');", "side-effect-function"),
    ("SELECT lo_import('/etc/passwd');", "side-effect-function"),
    ("SELECT lo_export(16400, '/tmp/x');", "side-effect-function"),
    ("SELECT pg_read_file('/etc/passwd');", "side-effect-function"),
    ("SELECT set_config('role', 'postgres', false);", "side-effect-function"),
    ("SELECT set_config('session_replication_role', 'replica', false);", "side-effect-function"),
    ("SELECT query_to_xml('DELETE FROM \"Notes\" RETURNING 1', true, true, '');", "side-effect-function"),
    ("SELECT ts_stat('DELETE FROM \"Notes\" RETURNING ''a''::tsvector');", "side-effect-function"),
    ("INSERT INTO \"Tags\" (\"Name\") VALUES (pg_read_file('/etc/hostname'));", "side-effect-function"),
    ('CREATE INDEX CONCURRENTLY ix ON "Notes" (evil("Title"));', "side-effect-function"),
    ('ALTER TABLE "Notes" ADD CONSTRAINT c CHECK (pg_terminate_backend(1)) NOT VALID;', "side-effect-function"),
    ('CREATE TABLE t (id int DEFAULT setval(\'"Notes_Id_seq"\', 1));', "side-effect-function"),
    ('CREATE TRIGGER t BEFORE INSERT ON "Notes" FOR EACH ROW EXECUTE FUNCTION f();', "trigger"),
    ('ALTER TABLE "Notes" ADD COLUMN x int, DISABLE TRIGGER ALL;', "trigger"),
    ("CREATE OR REPLACE FUNCTION notes_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;",
     "create-function"),
    ("COPY \"Notes\" FROM PROGRAM 'id';", "copy"),
    ("copy \"Notes\" to '/tmp/notes.csv';", "copy"),
    # privileges and roles
    ('GRANT ALL ON "Notes" TO PUBLIC;', "privilege-change"),
    ('REVOKE ALL ON "Notes" FROM asidenote_app;', "privilege-change"),
    ("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO PUBLIC;", "privilege-change"),
    ('ALTER TABLE "Notes" ADD COLUMN x int, OWNER TO intruder;', "privilege-change"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;", "privilege-change"),
    ("SET ROLE postgres;", "role-change"),
    ("SET session_authorization = 'postgres';", "role-change"),
    ("SET SESSION AUTHORIZATION DEFAULT;", "role-change"),
    ("RESET ROLE;", "role-change"),
    ("ALTER ROLE asidenote_app SUPERUSER;", "role-change"),
    ("ALTER USER asidenote_app WITH PASSWORD 'x';", "role-change"),
    ("CREATE ROLE intruder;", "role-change"),
    ("CREATE USER intruder;", "role-change"),
    ("GRANT pg_write_server_files TO asidenote_app;", "role-change"),
    # server, extensions and statements no rule knows
    ("ALTER SYSTEM SET fsync = off;", "unknown-statement"),
    ("LOAD 'auto_explain';", "unknown-statement"),
    ("SET session_replication_role = replica;", "unknown-statement"),
    ("PREPARE p AS SELECT 1;\nEXECUTE p;", "unknown-statement"),
    ('MERGE INTO "Notes" USING "Boards" b ON true WHEN MATCHED THEN DELETE;', "unknown-statement"),
    ('CREATE RULE r AS ON SELECT TO "Boards" DO INSTEAD NOTHING;', "unknown-statement"),
    ("CREATE SCHEMA s CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f();", "unknown-statement"),
    ("ALTER TYPE address DROP ATTRIBUTE zip CASCADE;", "unknown-statement"),
    ("CREATE EXTENSION dblink;", "extension"),
    ("CREATE EXTENSION IF NOT EXISTS adminpack;", "extension"),
    # drops that take tables or columns with them
    ("DROP SCHEMA archive;", "drop-schema"),
    ("DROP SCHEMA IF EXISTS public CASCADE;", "drop-schema"),
    ("DROP OWNED BY asidenote_app;", "drop-owned"),
    ("DROP TYPE note_color CASCADE;", "drop-cascade"),
    ('DROP DOMAIN "Email" CASCADE;', "drop-cascade"),
    ("DROP EXTENSION citext CASCADE;", "drop-cascade"),
]


@pytest.mark.parametrize("sql,code", EVASIONS, ids=[f"{c}-{i}" for i, (_, c) in enumerate(EVASIONS)])
def test_evasion_is_still_forbidden(sql, code):
    result = check_migration(sql, DOWN)
    forbidden = [f for f in result.findings if f.severity.value == "forbidden"]
    assert code in [f.code for f in forbidden], f"{code} missed:\n{sql}\ngot {result.findings}"
    assert result.requires_approval and result.exit_code == 3


def test_ignore_comment_cannot_silence_the_new_forbidden_codes():
    sql = "-- dbops:ignore unknown-statement, side-effect-function\nSELECT pg_terminate_backend(1);\n" \
          "-- dbops:ignore unknown-statement\nLOAD 'x';\n"
    result = check_migration(sql, DOWN)
    assert [(f.code, f.line) for f in result.findings] == [("side-effect-function", 2), ("unknown-statement", 4)]
    assert all("cannot silence" in f.message for f in result.findings)


def test_each_hidden_statement_is_reported_once_under_its_own_code():
    result = check_migration("GRANT ALL ON \"Notes\" TO PUBLIC;\nDO $$ BEGIN END $$;\n"
                             "CALL p();\nCOPY \"Notes\" TO STDOUT;", DOWN)
    assert [(f.code, f.line) for f in result.findings] == [
        ("privilege-change", 1), ("do-block", 2), ("call", 3), ("copy", 4)]


SAFE = [
    'DROP VIEW "ActiveUsers";',
    'DROP INDEX CONCURRENTLY "IX_Notes_Title";',
    "DROP FUNCTION IF EXISTS notes_words(text);",
    'DELETE FROM "AuditLogs" WHERE "Timestamp" < now() - interval \'1 year\';',
    'DELETE FROM "RefreshTokens" WHERE "ExpiresAt" < current_timestamp;',
    'DELETE FROM "AuditLogs" WHERE "Id" IN (SELECT "Id" FROM "AuditLogs"'
    ' WHERE "Timestamp" < now() - interval \'90 days\' LIMIT 5000);',
    'UPDATE "Notes" SET "UpdatedAt" = now() WHERE "Id" BETWEEN 1 AND 1000;',
    'DELETE FROM "Notes" WHERE "Id" > 0;',  # every row or not: the rehearsal counts
    'DELETE FROM "Notes" WHERE NOT NULL;',  # NULL selects nothing
    "SELECT set_config('lock_timeout', '3s', false);",
    "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
    "CREATE TYPE note_color AS ENUM ('red', 'blue');\nALTER TYPE note_color ADD VALUE 'green';",
    'CREATE TABLE "Tags" ("Id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "Name" text NOT NULL, '
    '"CreatedAt" timestamptz NOT NULL DEFAULT now(), "Key" uuid DEFAULT gen_random_uuid());',
    'BEGIN;\nCOMMENT ON COLUMN "Notes"."Title" IS \'shown in lists\';\nCOMMIT;',
    "SET statement_timeout = '15min';\nSET LOCAL lock_timeout = '2s';\nRESET ALL;",
    'CREATE VIEW "PinnedNotes" AS SELECT * FROM "Notes" WHERE "IsPinned";',
    "CREATE FUNCTION notes_words(t text) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;",  # a warning
]


@pytest.mark.parametrize("sql", SAFE)
def test_safe_statements_need_no_approval(sql):
    result = check_migration(sql, DOWN)
    assert not result.requires_approval, result.findings


def test_drop_materialized_view_is_a_warning():
    result = check_migration('SET lock_timeout = \'2s\';\nDROP MATERIALIZED VIEW "NoteStats";', DOWN)
    assert [(f.code, f.severity.value) for f in result.findings] == [("drop-materialized-view", "warning")]
    assert result.exit_code == 0


def test_shipped_example_migrations_keep_their_verdicts():
    folder = ROOT / "examples" / "migrations"
    expand = check_migration((folder / "add_archived_flag.up.sql").read_text(),
                             (folder / "add_archived_flag.down.sql").read_text())
    assert expand.findings == [] and expand.exit_code == 0
    contract = check_migration((folder / "drop_pinned.up.sql").read_text(),
                               (folder / "drop_pinned.down.sql").read_text())
    assert {"drop-column", "lossy-type-change"} <= {f.code for f in contract.findings} and contract.exit_code == 3


def test_statements_the_rehearsal_must_count_include_nested_ones():
    stmt = parse_statements('WITH d AS (DELETE FROM "Notes" WHERE "Id" > 0 RETURNING 1) '
                            'UPDATE "Boards" SET "Name" = \'x\' WHERE "Id" IN (SELECT 1 FROM d);')[0]
    kinds = sorted(kind for kind, _ in data_changes(stmt.kind, stmt.node))
    assert kinds == ["DeleteStmt", "UpdateStmt"]
    where = {kind: node.get("whereClause") for kind, node in data_changes(stmt.kind, stmt.node)}
    assert not matches_every_row(where["DeleteStmt"])  # "Id" > 0: only the rows can tell
    assert matches_every_row(None)


@pytest.mark.parametrize("sql,offset", [
    ('SELECT 1;\0 DROP TABLE "Notes";', 9),
    ("SELECT 'é';\0", 12),  # byte offsets: é is two bytes in UTF-8
    ("SELECT 1;\n\x01\x02binary", 10),
])
def test_nul_or_binary_bytes_are_a_usage_error_naming_the_offset(sql, offset):
    with pytest.raises(UsageError) as err:
        check_migration(sql, DOWN, filename="0042.up.sql")
    assert f"byte offset {offset}" in str(err.value) and "0042.up.sql" in str(err.value)
    assert err.value.exit_code == 2
    with pytest.raises(UsageError):
        check_migration("SELECT 1;", sql)  # the DOWN file too


@pytest.mark.parametrize("sql", ["", "   \n\n", "-- only a comment\n", "/* block */\n-- and line\n"])
def test_empty_or_comment_only_file_is_a_usage_error(sql):
    with pytest.raises(UsageError) as err:
        check_migration(sql, DOWN, filename="0042.up.sql")
    assert "0042.up.sql has no SQL statements" in str(err.value) and err.value.exit_code == 2


def test_negative_numeric_scales_are_lossy():
    int4, int2 = SqlType("int4"), SqlType("int2")
    assert classify(int4, SqlType("numeric", (3, -7)), None, "c").change is Change.LOSSY  # 12345678 -> 10000000
    assert classify(SqlType("numeric", (4, -3)), int2, None, "c").change is Change.NARROWING  # up to 9999000
    assert classify(SqlType("numeric", (4, -3)), SqlType("int8"), None, "c").change is Change.REWRITE
    assert classify(SqlType("numeric", (4, -3)), SqlType("numeric", (8, 0)), None, "c").change is Change.REWRITE
    assert classify(SqlType("numeric", (8, 0)), SqlType("numeric", (8, -2)), None, "c").change is Change.LOSSY
    result = check_migration("CREATE TABLE t (n integer);\nALTER TABLE t ALTER COLUMN n TYPE numeric(3,-7);", DOWN)
    assert "lossy-type-change" in [f.code for f in result.findings]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env"}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_cli_exit_codes_keep_their_meaning_for_ci(tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    files = {
        "clean.sql": "SET lock_timeout = '2s';\nALTER TABLE \"Notes\" ADD COLUMN \"Color\" text;\n",
        "warning.sql": 'ALTER TABLE "Notes" RENAME COLUMN "Title" TO "Heading";\n',
        "forbidden.sql": "SET lock_timeout = '2s';\nSELECT pg_terminate_backend(1);\n",
        "nul.sql": 'SELECT 1;\0 DROP TABLE "Notes";\n',
        "empty.sql": "-- nothing yet\n",
        "down.sql": "SELECT 1;\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    codes = {name: _cli("migrate", "check", name, "--down", "down.sql", cwd=tmp_path)
             for name in ("clean.sql", "warning.sql", "forbidden.sql", "nul.sql", "empty.sql")}
    assert {n: d.returncode for n, d in codes.items()} == {
        "clean.sql": 0, "warning.sql": 0, "forbidden.sql": 3, "nul.sql": 2, "empty.sql": 2}, \
        {n: d.stderr for n, d in codes.items()}
    assert "byte offset 9" in codes["nul.sql"].stderr and "Traceback" not in codes["nul.sql"].stderr
    assert "has no SQL statements" in codes["empty.sql"].stderr
