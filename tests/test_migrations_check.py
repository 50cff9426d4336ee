"""check_migration against the real demo database (asidenote schema and rows)."""
from __future__ import annotations

import hashlib

import psycopg
import pytest

from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.migrations import check_migration
from handlers.migrations.settings import MigrationCheckSettings
from handlers.report import Outcome

SAFE_PREAMBLE = "SET lock_timeout = '2s';\n"
DOWN = "SELECT 1;"  # any DOWN file: reversibility is not what these tests are about


class CountingConnection(psycopg.Connection):
    """A real connection that counts the statements sent through execute()."""

    executed = 0

    def execute(self, *args, **kwargs):
        self.executed += 1
        return super().execute(*args, **kwargs)


def codes(result, severity=None):
    return [f.code for f in result.findings if severity is None or f.severity.value == severity]


def only(result, code):
    found = [f for f in result.findings if f.code == code]
    assert len(found) == 1, result.findings
    return found[0]


@pytest.fixture
def conn(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as c:
        yield c


def test_drop_column_with_data_is_forbidden_and_empty_column_is_a_warning(conn):
    conn.execute('ALTER TABLE "Users" ADD COLUMN "Legacy" text')  # every row NULL
    result = check_migration(
        SAFE_PREAMBLE + 'ALTER TABLE "Users" DROP COLUMN "DisplayName";\nALTER TABLE "Users" DROP COLUMN "Legacy";\n',
        DOWN, conn=conn)
    with_data, empty = [f for f in result.findings if f.code == "drop-column"]
    assert (with_data.severity.value, with_data.line) == ("forbidden", 2)
    assert '"DisplayName"' in with_data.message and "holds data" in with_data.message
    assert (empty.severity.value, empty.line) == ("warning", 3)
    assert "empty" in empty.message
    assert result.requires_approval and result.exit_code == 3

    conn.execute('UPDATE "Users" SET "Legacy" = \'x\' WHERE "Id" = 5')  # one value is enough
    again = check_migration(SAFE_PREAMBLE + 'ALTER TABLE "Users" DROP COLUMN "Legacy";', DOWN, conn=conn)
    assert only(again, "drop-column").severity.value == "forbidden"


def test_drop_column_without_database_assumes_data():
    result = check_migration('ALTER TABLE "Users" DROP COLUMN "DisplayName";', DOWN)
    finding = only(result, "drop-column")
    assert finding.severity.value == "forbidden" and "assumed to hold data" in finding.message


def test_varchar_widening_reports_nothing_above_info(conn):
    result = check_migration(
        SAFE_PREAMBLE + 'ALTER TABLE "Users" ALTER COLUMN "Email" TYPE varchar(512);\n'
        'ALTER TABLE "Users" ALTER COLUMN "Username" TYPE text;\n'
        'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(16,2);\n', DOWN, conn=conn)
    assert result.findings and {f.severity.value for f in result.findings} == {"info"}
    assert codes(result) == ["safe-type-change"] * 3
    assert "varchar(256) to varchar(512)" in result.findings[0].message  # old type from the catalog
    assert not result.requires_approval and result.exit_code == 0
    assert result.to_report().outcome is Outcome.OK


def test_narrowing_counts_rows_that_do_not_fit(conn):
    expected = conn.execute('SELECT count(*) FROM "Users" WHERE length("Email") > 18').fetchone()[0]
    assert expected == 4901  # user100@example.com and longer: 5000 users minus user1..user99
    result = check_migration(SAFE_PREAMBLE + 'ALTER TABLE "Users"\n  ALTER COLUMN "Email" TYPE varchar(18);',
                             DOWN, conn=conn)
    finding = only(result, "narrowing-type-change")
    assert finding.severity.value == "forbidden" and finding.line == 2
    assert "4,901 rows" in finding.message

    budgets = conn.execute('SELECT count(*) FROM "Projects" WHERE "Budget" >= 10000').fetchone()[0]
    assert budgets > 0
    result = check_migration(SAFE_PREAMBLE + 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(6,2);',
                             DOWN, conn=conn)
    assert f"{budgets:,} rows" in only(result, "narrowing-type-change").message


def test_narrowing_where_every_row_fits_is_a_warning(conn):
    result = check_migration(
        SAFE_PREAMBLE + 'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(8,2), '
        'ALTER COLUMN "Status" TYPE smallint;\nALTER TABLE "Users" ALTER COLUMN "Id" TYPE integer;', DOWN, conn=conn)
    narrowing = [f for f in result.findings if f.code == "narrowing-type-change"]
    assert len(narrowing) == 3 and {f.severity.value for f in narrowing} == {"warning"}
    assert all("0 rows do not fit" in f.message for f in narrowing)
    assert not result.requires_approval


def test_lossy_and_rewriting_type_changes_use_catalog_types(conn):
    result = check_migration(
        SAFE_PREAMBLE + 'ALTER TABLE "AuditLogs" ALTER COLUMN "IpAddress" TYPE cidr;\n'
        'ALTER TABLE "AuditLogs" ALTER COLUMN "Timestamp" TYPE date;\n'
        'ALTER TABLE "Projects" ALTER COLUMN "Status" TYPE bigint;\n', DOWN, conn=conn)
    lossy = [f for f in result.findings if f.code == "lossy-type-change"]
    assert [(f.line, f.severity.value) for f in lossy] == [(2, "forbidden"), (3, "forbidden")]
    assert "from inet to cidr" in lossy[0].message and "from timestamptz to date" in lossy[1].message
    rewrite = only(result, "table-rewrite")
    assert rewrite.line == 4 and "ACCESS EXCLUSIVE" in rewrite.message and "from integer to bigint" in rewrite.message


def test_unknown_old_type_is_forbidden(conn):
    result = check_migration(SAFE_PREAMBLE + 'ALTER TABLE "Users" ALTER COLUMN "Nope" TYPE text;', DOWN, conn=conn)
    finding = only(result, "lossy-type-change")
    assert finding.severity.value == "forbidden" and "old type is unknown" in finding.message


def test_database_facts_take_a_constant_number_of_queries(demo_db):
    def queries(sql: str) -> int:
        with CountingConnection.connect(demo_db, autocommit=True) as counting:
            check_migration(sql, DOWN, conn=counting)
            return counting.executed

    small = 'ALTER TABLE "Users" DROP COLUMN "DisplayName";\nALTER TABLE "Users" ALTER COLUMN "Email" TYPE varchar(10);'
    big = "\n".join([
        'ALTER TABLE "Users" DROP COLUMN "DisplayName", DROP COLUMN "PasswordHash";',
        'ALTER TABLE "Notes" DROP COLUMN "Content", ALTER COLUMN "Title" TYPE varchar(5);',
        'ALTER TABLE "Boards" DROP COLUMN "Color", ALTER COLUMN "Name" TYPE varchar(3);',
        'ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(5,2), ALTER COLUMN "Status" TYPE smallint;',
        'ALTER TABLE "AuditLogs" ALTER COLUMN "ActionType" TYPE varchar(4), DROP COLUMN "Details";',
        'ALTER TABLE "IndexCards" ALTER COLUMN "Position" TYPE smallint;',
    ])
    # statement_timeout, column types, non-null presence of dropped columns, misfit counts
    assert queries(small) == queries(big) == 4


def test_slow_fact_queries_hit_the_timeout_with_a_clear_error(conn):
    settings = MigrationCheckSettings(fact_timeout_seconds=0.001)
    with pytest.raises(DbopsError) as err:
        check_migration('ALTER TABLE "Notes" ALTER COLUMN "Content" TYPE varchar(10);', DOWN, conn=conn,
                        settings=settings)
    assert "fact_timeout_seconds" in str(err.value) and "postgres" not in str(err.value).lower()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing left open


def test_settings_from_dict():
    settings = MigrationCheckSettings.from_dict({"disabled": ["rename-table", "lock-timeout-missing"],
                                                 "fact_timeout_seconds": 5})
    assert settings == MigrationCheckSettings(disabled=("rename-table", "lock-timeout-missing"),
                                              fact_timeout_seconds=5.0)
    assert MigrationCheckSettings.from_dict({}) == MigrationCheckSettings()
    result = check_migration('ALTER TABLE "Boards" RENAME TO "Boardz";', DOWN, settings=settings)
    assert result.findings == []
    for bad, words in [
        ({"disabled": ["drop-table"]}, "migrate.check.disabled: 'drop-table' guards a forbidden operation"),
        ({"disabled": ["do-block"]}, "'do-block' guards a forbidden operation"),  # DO blocks are opaque
        ({"disabled": ["unknown-statement"]}, "'unknown-statement' guards a forbidden operation"),
        ({"disabled": ["no-such-rule"]}, "'no-such-rule' is not a rule code"),
        ({"disabled": "do-block"}, "migrate.check.disabled must be a list"),
        ({"fact_timeout_seconds": 0}, "migrate.check.fact_timeout_seconds must be a number"),
        ({"timeout": 3}, "migrate.check.timeout is not a setting"),
    ]:
        with pytest.raises(ConfigError) as err:
            MigrationCheckSettings.from_dict(bad)
        assert words in str(err.value)


def test_unparseable_file_raises_usage_error_with_line():
    with pytest.raises(UsageError) as err:
        check_migration("-- add a column\nSET lock_timeout = '1s';\n\nALTER TABLE \"Notes\" ADD COLUM x int;\n")
    assert "UP.sql line 4" in str(err.value) and "syntax error" in str(err.value)
    with pytest.raises(UsageError) as err:
        check_migration("SELECT 1;", "DROP TABLE;\n", filename="0042_up.sql")
    assert "DOWN.sql line 1" in str(err.value)
    with pytest.raises(UsageError) as err:
        check_migration("CREATE TABLE t (\n  id int,\n  name text\n", filename="0042_up.sql")
    assert "0042_up.sql line 3" in str(err.value)


def test_json_shape_is_exact():
    sql = 'ALTER TABLE "Users" RENAME COLUMN "DisplayName" TO "FullName";\nDROP TABLE "Notes";\n'
    data = check_migration(sql).to_json()
    assert set(data) == {"requires_approval", "findings"} and data["requires_approval"] is True
    assert data["findings"]
    for finding in data["findings"]:
        assert set(finding) == {"code", "severity", "line", "statement", "message", "hint"}
        assert finding["severity"] in ("forbidden", "warning", "info")
        assert isinstance(finding["line"], int) and isinstance(finding["statement"], str)
    drop = next(f for f in data["findings"] if f["code"] == "drop-table")
    assert drop == {**drop, "severity": "forbidden", "line": 2, "statement": 'DROP TABLE "Notes"'}


def test_line_numbers_in_a_multi_line_file_with_comments():
    sql = (
        "-- 0042: notes get colours ☂ (non-ASCII before statements shifts byte offsets)\n"  # 1
        "/* block comment\n"  # 2
        "   over lines; with a semicolon */\n"  # 3
        "\n"  # 4
        "SET lock_timeout = '2s';  -- trailing ümlaut comment\n"  # 5
        "\n"  # 6
        "ALTER TABLE \"Notes\"\n"  # 7
        "    DROP COLUMN \"IsPinned\";\n"  # 8
        "  -- a comment before the next statement\n"  # 9
        "UPDATE \"Notes\" SET \"Title\" = 'é; not a statement end'; DELETE FROM \"Boards\";\n"  # 10
        "/* x */ TRUNCATE \"AuditLogs\";"  # 11
    )
    result = check_migration(sql, DOWN)
    lines = {f.code: f.line for f in result.findings}
    assert lines == {"drop-column": 7, "update-without-where": 10, "delete-without-where": 10, "truncate": 11}
    update = only(result, "update-without-where")
    assert update.statement == "UPDATE \"Notes\" SET \"Title\" = 'é; not a statement end'"
    assert only(result, "drop-column").statement == 'ALTER TABLE "Notes"\n    DROP COLUMN "IsPinned"'


def test_last_statement_without_semicolon_ends_at_its_last_token():
    result = check_migration('SET lock_timeout = 1000;\nDROP TABLE "Notes"\n\n-- trailing comment\n', DOWN)
    assert [(f.code, f.line, f.statement) for f in result.findings] == [("drop-table", 2, 'DROP TABLE "Notes"')]


def test_tables_created_in_the_same_file_lose_no_data():
    sql = (
        "CREATE TABLE import_batch (id bigint, note text);\n"
        "INSERT INTO import_batch SELECT \"Id\", \"Title\" FROM \"Notes\";\n"
        "TRUNCATE import_batch;\n"
        "ALTER TABLE import_batch RENAME TO import_done;\n"
        "DROP TABLE import_done;\n"
        "DROP TABLE import_batch;\n"  # gone after the rename: this one is someone else's table
    )
    result = check_migration(sql, DOWN)
    assert [(f.code, f.severity.value, f.line) for f in result.findings] == [
        ("truncate", "warning", 3), ("drop-table", "warning", 5), ("drop-table", "forbidden", 6),
        ("lock-timeout-missing", "warning", 6)]  # the only statement that locks a table other sessions use


def test_ignore_comment_silences_warnings_but_never_forbidden():
    sql = (
        "SET lock_timeout = '2s';\n"
        "-- dbops:ignore rename-column\n"
        'ALTER TABLE "Users" RENAME COLUMN "DisplayName" TO "FullName";\n'
        "-- dbops:ignore drop-table\n"
        'DROP TABLE "Notes";\n'
        'ALTER TABLE "Users" RENAME COLUMN "Username" TO "Handle";\n'
    )
    result = check_migration(sql, DOWN)
    assert [(f.code, f.line) for f in result.findings] == [("drop-table", 5), ("rename-column", 6)]
    assert "cannot silence" in result.findings[0].message and result.requires_approval


def test_irreversible_without_down_and_report(conn):
    sql = SAFE_PREAMBLE + 'ALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
    without = check_migration(sql, conn=conn, filename="0042_add_color.up.sql")
    assert codes(without) == ["irreversible"] and without.requires_approval
    report = without.to_report()
    assert report.outcome is Outcome.APPROVAL_REQUIRED and report.outcome.exit_code == 3
    assert report.data["requires_approval"] is True and report.data["findings"][0]["code"] == "irreversible"
    assert without.sha256 == hashlib.sha256(sql.encode()).hexdigest()

    with_down = check_migration(sql, 'ALTER TABLE "Notes" DROP COLUMN "Color";', conn=conn)
    assert with_down.findings == [] and with_down.exit_code == 0
    assert with_down.to_report().outcome is Outcome.OK

    with_down.add_finding(without.findings[0])  # the hook the DOWN rehearsal uses
    assert with_down.requires_approval and with_down.exit_code == 3


def test_expand_contract_warnings(conn):
    sql = (
        'ALTER TABLE "Notes" ADD COLUMN "Slug" text NOT NULL;\n'
        'ALTER TABLE "Notes" ALTER COLUMN "BoardId" SET NOT NULL;\n'
        'CREATE INDEX "IX_Notes_Title" ON "Notes" ("Title");\n'
        'ALTER TABLE "Notes" ADD CONSTRAINT "CK_Title" CHECK (length("Title") > 0);\n'
        'ALTER TABLE "Users" ADD CONSTRAINT "UQ_Users_DisplayName" UNIQUE ("DisplayName");\n'
        'ALTER TABLE "Notes" ADD COLUMN "Uid" uuid DEFAULT gen_random_uuid();\n'
        'ALTER TABLE "Boards" RENAME TO "Boardz";\n'
        "CREATE FUNCTION notes_words(t text) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;\n"
        "CREATE TABLE scratch (id bigint);\n"
        "CREATE INDEX scratch_id ON scratch (id);\n"
    )
    result = check_migration(sql, DOWN, conn=conn)
    got = [(f.code, f.line) for f in result.findings]
    assert got == [
        ("add-column-not-null-without-default", 1), ("lock-timeout-missing", 1), ("set-not-null", 2),
        ("create-index-not-concurrently", 3), ("constraint-not-valid-missing", 4),
        ("unique-constraint-without-index", 5), ("table-rewrite", 6), ("rename-table", 7), ("create-function", 8),
    ]
    assert all(f.severity.value == "warning" and f.hint for f in result.findings)
    assert not result.requires_approval
