"""The rules that need to know what the database (or the migration itself) already holds: NOT NULL
columns, valid CHECKs proving them, index columns, columns the file added; and the one-transaction
reasoning of validate-constraint-under-lock. Real PostgreSQL where the catalog matters."""
from __future__ import annotations

import psycopg
import pytest

from handlers.migrations import check_migration
from handlers.migrations.check import run_rules
from handlers.migrations.context import MigrationContext, classify_type_changes
from handlers.migrations.parsing import parse_statements
from handlers.migrations.timeline import replay
from tests.test_migrations_check import CountingConnection

PREAMBLE = "SET lock_timeout = '2s';\n"
DOWN = "SELECT 1;"


def findings(sql: str, conn=None) -> list[tuple[str, str, int]]:
    result = check_migration(PREAMBLE + sql, DOWN, conn=conn)
    return [(f.code, f.severity.value, f.line) for f in result.findings]


def messages(sql: str, code: str, conn=None) -> list[str]:
    return [f.message for f in check_migration(PREAMBLE + sql, DOWN, conn=conn).findings if f.code == code]


@pytest.fixture
def db(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE users (id bigint NOT NULL, name text, email text, nick text NOT NULL);
            INSERT INTO users SELECT g, 'u' || g, 'u' || g || '@example.com', 'n' || g FROM generate_series(1, 50) g;
            CREATE UNIQUE INDEX users_id_key ON users (id);
            CREATE UNIQUE INDEX users_name_key ON users (name);
            CREATE UNIQUE INDEX users_lower_email_key ON users (lower(email));
            ALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (name IS NOT NULL AND length(name) > 0);
            ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;
        """)
        yield conn


def test_set_not_null_uses_what_the_catalog_proves(db):
    assert findings('ALTER TABLE users ALTER COLUMN name SET NOT NULL;', db) == []  # valid check (ANDed)
    assert findings('ALTER TABLE users ALTER COLUMN nick SET NOT NULL;', db) == []  # already NOT NULL: a no-op
    unvalidated = messages('ALTER TABLE users ALTER COLUMN email SET NOT NULL;', "set-not-null", db)
    assert len(unvalidated) == 1 and "users_email_nn would prove it, but it is not validated" in unvalidated[0]
    # validating the catalog's NOT VALID check first is the pattern strong_migrations recommends
    assert findings('ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n'
                    'ALTER TABLE users ALTER COLUMN email SET NOT NULL;', db) == []
    # a check dropped before SET NOT NULL proves nothing any more
    assert ("set-not-null", "warning", 3) in findings(
        'ALTER TABLE users DROP CONSTRAINT users_name_nn;\nALTER TABLE users ALTER COLUMN name SET NOT NULL;', db)
    # without a database the catalog's check is not known: the warning stays
    assert [c for c, _, _ in findings('ALTER TABLE users ALTER COLUMN name SET NOT NULL;')] == ["set-not-null"]


def test_set_not_null_on_postgresql_11_still_scans():
    """Render runs 11, which ignores a valid CHECK when setting NOT NULL (12 added the shortcut)."""
    sql = ('ALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (name IS NOT NULL);\n'
           'ALTER TABLE users ALTER COLUMN name SET NOT NULL;')
    statements = parse_statements(sql)

    def set_not_null(server_version: int) -> list[str]:
        timeline = replay(statements, {})
        ctx = MigrationContext("UP.sql", statements, timeline, down=[], has_database=True,
                               server_version=server_version,
                               type_changes=classify_type_changes(timeline, frozenset(), True))
        return [f.message for f in run_rules(ctx) if f.code == "set-not-null"]

    assert set_not_null(120000) == [] and set_not_null(180001) == []
    (message,) = set_not_null(110022)
    assert "PostgreSQL 11 still scans" in message and "users_name_nn" in message


def test_primary_key_using_index_reads_the_index_columns_and_nullability_from_the_catalog(db):
    assert findings('ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_key;', db) == []
    # name is nullable, but its valid CHECK proves it NOT NULL: no scan either
    assert findings('ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_name_key;', db) == []
    (message,) = messages('ALTER TABLE users ADD PRIMARY KEY (email);', "primary-key-nullable", db)
    assert "users.email is nullable" in message
    (message,) = messages('ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX nope;',
                          "primary-key-nullable", db)
    assert "whose columns are not known from the target database" in message
    # an expression index cannot be a primary key's, and its columns are not the key's: not known
    assert messages('ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_lower_email_key;',
                    "primary-key-nullable", db)


def test_not_null_facts_take_one_query_however_many_tables(db):
    for name in ("a", "b", "c", "d"):
        db.execute(f"CREATE TABLE {name} (x int)")

    def queries(sql: str) -> int:
        with CountingConnection.connect(db.info.dsn, password=db.info.password, autocommit=True) as counting:
            check_migration(sql, DOWN, conn=counting)
            return counting.executed

    plain = 'ALTER TABLE a ADD COLUMN y int;'
    one = 'ALTER TABLE a ALTER COLUMN x SET NOT NULL;'
    many = "\n".join(f"ALTER TABLE {t} ALTER COLUMN x SET NOT NULL;" for t in "abcd") + (
        "\nALTER TABLE users ADD PRIMARY KEY (id);")
    assert queries(one) == queries(many) == queries(plain) + 1  # statement_timeout, column types, constraints


def test_columns_the_file_added_hold_nothing_to_lose(db):
    # a lossy change and a drop of a column this file added: warnings, not forbidden
    got = findings('ALTER TABLE users ADD COLUMN score numeric(10,2);\n'
                   'ALTER TABLE users ALTER COLUMN score TYPE numeric(10,1);\n'
                   'ALTER TABLE users ADD COLUMN extra text;\n'
                   'ALTER TABLE users DROP COLUMN extra;', db)
    assert got == [("table-rewrite", "warning", 3), ("drop-column", "warning", 5)]
    # once a statement may have written it, it is data like any other
    got = findings('ALTER TABLE users ADD COLUMN score numeric(10,2);\n'
                   "UPDATE users SET score = id / 3.0 WHERE id > 10;\n"
                   'ALTER TABLE users ALTER COLUMN score TYPE numeric(10,1);', db)
    assert ("lossy-type-change", "forbidden", 4) in got
    # the catalog's own columns keep their data-aware verdicts
    assert ("drop-column", "forbidden", 2) in findings('ALTER TABLE users DROP COLUMN email;', db)
    # ADD COLUMN IF NOT EXISTS of a column the database has changes nothing: its data is still there
    assert ("drop-column", "forbidden", 3) in findings(
        'ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;\nALTER TABLE users DROP COLUMN email;', db)
    assert ("drop-column", "warning", 3) in findings(
        'ALTER TABLE users ADD COLUMN IF NOT EXISTS extra text;\nALTER TABLE users DROP COLUMN extra;', db)


def test_a_column_the_file_may_not_have_added_is_assumed_to_hold_data():
    for sql in ('ALTER TABLE t ADD COLUMN IF NOT EXISTS c int;\nALTER TABLE t DROP COLUMN c;',  # may exist already
                'ALTER TABLE t ADD COLUMN c int;\nALTER TABLE t ALTER COLUMN c SET EXPRESSION AS (1);\n'
                'ALTER TABLE t DROP COLUMN c;',  # values computed for every row
                'ALTER TABLE t ADD COLUMN c int;\nCALL fill_c();\nALTER TABLE t DROP COLUMN c;',
                # another t once search_path changes; and the ADD (which may have failed) is undone
                'ALTER TABLE t ADD COLUMN c int;\nSET search_path = billing;\nALTER TABLE t DROP COLUMN c;',
                'SAVEPOINT s;\nALTER TABLE t ADD COLUMN c int;\nROLLBACK TO SAVEPOINT s;\n'
                'ALTER TABLE t DROP COLUMN c;'):
        assert [s for c, s, _ in findings(sql) if c == "drop-column"] == ["forbidden"], sql


def test_validate_constraint_under_lock_follows_the_batches_dbops_runs():
    add = 'ALTER TABLE notes ADD CONSTRAINT notes_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n'
    validate = 'ALTER TABLE notes VALIDATE CONSTRAINT notes_user_fk;\n'
    assert ("validate-constraint-under-lock", "warning", 3) in findings(add + validate)
    assert ("validate-constraint-under-lock", "warning", 5) in findings(add + "COMMIT;\nBEGIN;\n" + validate)
    for alone in ("CREATE INDEX CONCURRENTLY notes_title ON notes (title);\n",
                  "REINDEX INDEX CONCURRENTLY notes_title;\n",
                  "ALTER TABLE logs DETACH PARTITION logs_2023 CONCURRENTLY;\n"):
        assert "validate-constraint-under-lock" not in [c for c, _, _ in findings(add + alone + validate)], alone
    # the referenced table's lock counts too: validating a constraint of `users` after the ADD locked it
    (message,) = messages(add + 'ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n',
                          "validate-constraint-under-lock")
    assert "SHARE ROW EXCLUSIVE lock line 2 took on users" in message
    # the same ALTER TABLE: an earlier command's ACCESS EXCLUSIVE is held when VALIDATE runs
    assert messages("ALTER TABLE notes ADD COLUMN color text, VALIDATE CONSTRAINT notes_user_fk;\n",
                    "validate-constraint-under-lock")


def test_not_null_default_dropped_needs_the_same_column_still_not_null():
    assert "not-null-default-dropped" not in [c for c, _, _ in findings(
        'ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\nALTER TABLE t ALTER COLUMN b DROP DEFAULT;')]
    got = [c for c, _, _ in findings('ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\n'
                                     'ALTER TABLE t ALTER COLUMN a DROP NOT NULL;\n'
                                     'ALTER TABLE t ALTER COLUMN a DROP DEFAULT;')]
    assert "not-null-default-dropped" not in got  # NULL is allowed again: old INSERTs still work
    assert "not-null-default-dropped" in [c for c, _, _ in findings(
        'ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\nALTER TABLE t ALTER COLUMN a DROP DEFAULT;')]
