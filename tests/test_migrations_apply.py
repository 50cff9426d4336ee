"""Applying a migration to a real PostgreSQL: one transaction, CONCURRENTLY outside it, lock timeouts
retried with backoff, failures rolled back and named."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from handlers.errors import ConfigError, TargetUnreachable, UsageError
from handlers.migrations import parse_statements
from handlers.migrations.apply import ApplySettings, apply_migration, plan_batches
from handlers.report import Outcome
from handlers.target import Target

FAST = ApplySettings(lock_timeout_s=0.3, statement_timeout_s=30, lock_retries=3, retry_backoff_s=0.2)


def columns(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                            "AND NOT attisdropped", (f'"{table}"',)).fetchall()
    return {r[0] for r in rows}


def exists(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def test_applies_a_multi_statement_migration(demo_db):
    up = ('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
          'CREATE TABLE "Tags" ("Id" bigint PRIMARY KEY, "Name" text NOT NULL);\n'
          "UPDATE \"Notes\" SET \"Color\" = 'red' WHERE \"Id\" <= 10;\n")
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert result.ok and not result.aborted and result.error is None
    assert result.statements_applied == 3 and result.attempts == 1
    assert [s["line"] for s in result.statements] == [1, 2, 3]
    assert "Color" in columns(demo_db, "Notes") and exists(demo_db, '"Tags"')
    report = result.to_report()
    assert report.outcome is Outcome.OK and report.summary.startswith("applied 3 statements to `prod`")
    assert result.to_dict()["statements_applied"] == 3


def test_a_failure_in_statement_3_rolls_back_statements_1_and_2(demo_db):
    up = ('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
          'CREATE TABLE "Tags" ("Id" bigint PRIMARY KEY);\n'
          '\n'
          'ALTER TABLE "Notes" ALTER COLUMN "BoardId" SET NOT NULL;\n')
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert not result.ok and result.statements_applied == 0
    assert result.failed_line == 4 and "SET NOT NULL" in result.failed_statement
    assert "contains null values" in result.error
    assert result.committed_before_failure == []
    assert "Color" not in columns(demo_db, "Notes") and not exists(demo_db, '"Tags"')
    report = result.to_report()
    assert report.outcome is Outcome.FAILED
    assert report.summary.startswith("FAILED at line 4: ") and "Rolled back: nothing was applied" in report.summary


def test_create_index_concurrently_runs_outside_the_transaction(demo_db):
    up = ('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
          'CREATE INDEX CONCURRENTLY "IX_Notes_Color" ON "Notes" ("Color");\n'
          "ALTER TABLE \"Notes\" ALTER COLUMN \"Color\" SET DEFAULT 'red';\n")
    batches = plan_batches(parse_statements(up))
    assert [(b.lines, b.in_transaction) for b in batches] == [([1], True), ([2], False), ([3], True)]
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert result.ok, result.error  # inside a transaction PostgreSQL would refuse it
    assert [s["outside_transaction"] for s in result.statements] == [False, True, False]
    with psycopg.connect(demo_db) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = '\"IX_Notes_Color\"'::regclass").fetchone()
    assert valid == (True,)


def test_statements_committed_before_a_failure_are_reported(demo_db):
    up = ('ALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
          'CREATE INDEX CONCURRENTLY "IX_Notes_Color" ON "Notes" ("Color");\n'
          'ALTER TABLE "Notes" ADD COLUMN "Size" int;\n'
          'ALTER TABLE "Notes" ALTER COLUMN "BoardId" SET NOT NULL;\n')
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert not result.ok and result.failed_line == 4
    assert result.committed_before_failure == [1, 2] and result.statements_applied == 2
    assert "Color" in columns(demo_db, "Notes") and "Size" not in columns(demo_db, "Notes")
    assert "NOT fully rolled back" in result.summary and "lines 1, 2" in result.summary


def test_failed_concurrent_index_leaves_no_invalid_index(demo_db):
    up = 'CREATE UNIQUE INDEX CONCURRENTLY "UX_Notes_UserId" ON "Notes" ("UserId");'
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert not result.ok and result.failed_line == 1 and "could not create unique index" in result.error
    assert not exists(demo_db, '"UX_Notes_UserId"')
    assert any("invalid index" in n and "dropped" in n for n in result.notes)


class HeldLock:
    """Another session holding a lock on a table, released after `seconds` (None: at exit)."""

    def __init__(self, dsn: str, table: str, seconds: float | None = None, mode: str = "ACCESS SHARE") -> None:
        self.conn = psycopg.connect(dsn)
        self.conn.execute(f'LOCK TABLE "{table}" IN {mode} MODE')
        self.timer = threading.Timer(seconds, self.release) if seconds is not None else None
        self.released_at: float | None = None

    def __enter__(self) -> "HeldLock":
        if self.timer:
            self.timer.start()
        return self

    def release(self) -> None:
        if self.released_at is None:
            self.released_at = time.monotonic()
            self.conn.rollback()

    def __exit__(self, *exc) -> None:
        if self.timer:
            self.timer.join()
        self.release()
        self.conn.close()


def test_a_lock_timeout_is_retried_with_backoff(demo_db):
    up = 'ALTER TABLE "Notes" ADD COLUMN "Color" text;\nALTER TABLE "Boards" ADD COLUMN "Archived" boolean;\n'
    ticks = []
    settings = ApplySettings(lock_timeout_s=0.3, statement_timeout_s=30, lock_retries=5, retry_backoff_s=0.2)
    with HeldLock(demo_db, "Notes", seconds=1.0) as held:
        started = time.monotonic()
        result = apply_migration(Target("prod", demo_db), up, settings, progress=ticks.append)
        finished = time.monotonic()
    assert result.ok, result.error
    assert result.attempts > 1
    assert finished > held.released_at and held.released_at - started > 0.8
    assert any("lock timeout, retry 1 of 5" in t.detail for t in ticks)
    assert "Archived" in columns(demo_db, "Boards") and "Color" in columns(demo_db, "Notes")
    assert "lock-timeout retr" in result.summary


def test_gives_up_after_the_retries_and_says_why(demo_db):
    up = 'ALTER TABLE "Boards" ADD COLUMN "Archived" boolean;\nALTER TABLE "Notes" ADD COLUMN "Color" text;\n'
    settings = ApplySettings(lock_timeout_s=0.2, statement_timeout_s=30, lock_retries=2, retry_backoff_s=0.1)
    with HeldLock(demo_db, "Notes"):
        result = apply_migration(Target("prod", demo_db), up, settings)
    assert not result.ok and result.attempts == 3
    assert result.failed_line == 2
    assert "lock timeout" in result.error and "0.2 s" in result.error and "3 attempts" in result.error
    assert "Archived" not in columns(demo_db, "Boards")  # statement 1 was rolled back with the rest


def test_a_statement_timeout_is_not_retried(demo_db):
    settings = ApplySettings(lock_timeout_s=1, statement_timeout_s=0.2, lock_retries=3, retry_backoff_s=0.1)
    result = apply_migration(Target("prod", demo_db), "SELECT pg_sleep(5);", settings)
    assert not result.ok and result.attempts == 1 and "statement timeout" in result.error


def test_before_first_statement_false_applies_nothing(demo_db):
    up = 'ALTER TABLE "Notes" ADD COLUMN "Color" text;'
    result = apply_migration(Target("prod", demo_db), up, FAST, before_first_statement=lambda: False)
    assert result.aborted and not result.ok and result.statements_applied == 0
    assert "Color" not in columns(demo_db, "Notes")
    assert result.to_report().summary == "aborted before any statement ran: nothing was applied."


def test_before_first_statement_is_called_right_before_applying(demo_db):
    seen = []

    def still_approved() -> bool:
        seen.append("Color" in columns(demo_db, "Notes"))
        return True

    result = apply_migration(Target("prod", demo_db), 'ALTER TABLE "Notes" ADD COLUMN "Color" text;', FAST,
                             before_first_statement=still_approved)
    assert result.ok and seen == [False] and "Color" in columns(demo_db, "Notes")


def test_enum_value_used_later_is_added_in_its_own_transaction(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('calm')")
    up = ("ALTER TYPE mood ADD VALUE 'busy';\nCREATE TABLE days (m mood NOT NULL DEFAULT 'busy');\n"
          "INSERT INTO days DEFAULT VALUES;\n")
    batches = plan_batches(parse_statements(up))
    assert [b.in_transaction for b in batches] == [False, True]
    result = apply_migration(Target("t", fresh_db), up, FAST)
    assert result.ok, result.error
    # An ADD VALUE nothing uses stays in the transaction.
    assert [b.in_transaction
            for b in plan_batches(parse_statements("ALTER TYPE mood ADD VALUE 'x'; SELECT 1;"))] == [True]


def test_begin_and_commit_in_the_file_are_dropped_and_rollback_refused(demo_db):
    up = 'BEGIN;\nALTER TABLE "Notes" ADD COLUMN "Color" text;\nCOMMIT;\n'
    result = apply_migration(Target("prod", demo_db), up, FAST)
    assert result.ok and result.statements_applied == 1
    with pytest.raises(UsageError, match="line 2"):
        apply_migration(Target("prod", demo_db), "SELECT 1;\nROLLBACK;", FAST)


def test_sql_that_does_not_parse_is_a_usage_error(demo_db):
    with pytest.raises(UsageError, match="UP.sql line 1"):
        apply_migration(Target("prod", demo_db), "ALTR TABLE x;", FAST)


def test_unreachable_target_names_no_secret():
    target = Target("prod", "host=/nonexistent-dbops dbname=app user=app password=hunter2pw")
    with pytest.raises(TargetUnreachable) as info:
        apply_migration(target, "SELECT 1;", FAST)
    assert "hunter2pw" not in str(info.value) and "prod" in str(info.value)


def test_settings_from_dict():
    assert ApplySettings.from_dict(None) == ApplySettings(5.0, 900.0, 3, 2.0)
    s = ApplySettings.from_dict({"lock_timeout_s": 2, "statement_timeout_s": 60, "lock_retries": 0,
                                 "retry_backoff_s": 0})
    assert (s.lock_timeout_s, s.statement_timeout_s, s.lock_retries, s.retry_backoff_s) == (2.0, 60.0, 0, 0.0)
    for bad, key in (({"lock_timeout_s": 0}, "lock_timeout_s"), ({"statement_timeout_s": "5"}, "statement_timeout_s"),
                     ({"lock_retries": -1}, "lock_retries"), ({"lock_retries": 1.5}, "lock_retries"),
                     ({"retry_backoff_s": -1}, "retry_backoff_s"), ({"lock_timeout": 5}, "lock_timeout")):
        with pytest.raises(ConfigError, match=rf"migrate\.apply\.{key}"):
            ApplySettings.from_dict(bad)


def test_concurrent_index_blocked_by_a_writer_is_cleaned_up_and_retried(demo_db):
    up = 'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");'
    settings = ApplySettings(lock_timeout_s=0.3, statement_timeout_s=30, lock_retries=5, retry_backoff_s=0.2)
    with HeldLock(demo_db, "Notes", seconds=1.0, mode="ROW EXCLUSIVE"):
        result = apply_migration(Target("prod", demo_db), up, settings)
    assert result.ok, result.error
    assert result.attempts > 1
    assert any("left an invalid index" in n for n in result.notes), result.notes
    with psycopg.connect(demo_db) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = '\"IX_Notes_Title\"'::regclass").fetchone()
    assert valid == (True,)
