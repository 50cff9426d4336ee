"""The daily digest's content and its once-a-day claim, against a real PostgreSQL."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import psycopg

from handlers.indexes import build_digest, claim_digest, take_snapshot
from tests.test_indexes import do_review, run, schema_db, state_dsn  # noqa: F401  (fixtures)

DAY = timedelta(days=1)


def test_claim_is_won_by_exactly_one_of_two_racing_schedulers(state_dsn):
    for n in range(10):
        day = date(2025, 1, 1) + timedelta(days=n)
        barrier = threading.Barrier(2)
        wins: list[bool] = []

        def scheduler(name: str) -> None:
            barrier.wait()
            wins.append(claim_digest(state_dsn, "prod", day, claimed_by=name))

        threads = [threading.Thread(target=scheduler, args=(f"replica-{k}",)) for k in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False, True], f"day {day}: {wins}"
    # Another target the same day is its own claim; the same one again is refused.
    assert claim_digest(state_dsn, "staging", date(2025, 1, 1))
    assert not claim_digest(state_dsn, "prod", date(2025, 1, 1))
    with psycopg.connect(state_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbops.digest_claims").fetchone()[0] == 11


def test_quiet_day_says_no_change(schema_db, state_dsn):
    now = datetime.now(timezone.utc)
    first = build_digest(state_dsn, "prod", do_review(schema_db), ["backup: 3 h old"], now=now - DAY)
    assert first.previous_at is None and "first digest" in first.to_report().sections[0].text
    assert first.headline.startswith("1 problem")
    second = build_digest(state_dsn, "prod", do_review(schema_db), ["backup: 2 h old", "last drill: ok, 2 d ago"],
                          now=now)
    report = second.to_report()
    assert not second.changed
    assert report.sections[0].text == f"no change since {(now - DAY):%Y-%m-%d}"
    assert report.summary == "1 problem: 1 foreign key without index"
    assert report.sections[1].text == "backup: 2 h old\nlast drill: ok, 2 d ago"
    assert len(report.sections) == 2  # quiet days are short


def test_all_good_headline(fresh_db, state_dsn):
    run(fresh_db, "CREATE TABLE t (id int PRIMARY KEY)")
    digest = build_digest(state_dsn, "prod", do_review(fresh_db, expected=[]), [])
    assert digest.headline == "all good" and digest.to_report().ok


def test_changes_new_problems_then_resolved(schema_db, state_dsn):
    now = datetime.now(timezone.utc)
    build_digest(state_dsn, "prod", do_review(schema_db), [], now=now - 2 * DAY)
    run(schema_db, 'DROP INDEX "IX_AuditLogs_ActionType"',
        """INSERT INTO "Users" ("Email", "Username") VALUES ('a@x.org', 'a'), ('b@x.org', 'a2')""",
        'DROP INDEX "IX_Users_Username"')
    run(schema_db, """UPDATE "Users" SET "Username" = 'a'""")
    try:
        run(schema_db, 'CREATE UNIQUE INDEX CONCURRENTLY "IX_Users_Username" ON "Users" ("Username")')
    except psycopg.errors.UniqueViolation:
        pass  # leaves the invalid index behind, as in production
    changed = build_digest(state_dsn, "prod", do_review(schema_db), [], now=now - DAY)
    assert changed.changes == [
        "expected index now missing: AuditLogs(ActionType)",
        "expected index now invalid: Users(Username)",
        "new invalid index: IX_Users_Username on Users is invalid (a failed concurrent build)"
        " (unique: remove duplicate values first)",
    ]
    assert changed.problems == 4
    assert "3 changes since" in changed.to_report().sections[0].text
    run(schema_db, 'CREATE INDEX "IX_AuditLogs_ActionType" ON "AuditLogs" ("ActionType")')
    fixed = build_digest(state_dsn, "prod", do_review(schema_db), [], now=now)
    assert fixed.changes == ["resolved: AuditLogs(ActionType) (missing)"]
    assert fixed.previous_at == now - DAY
    assert fixed.problem_counts == [1, 4, fixed.problems] and fixed.problems == 3
    trend = fixed.to_report().sections[1]
    assert trend.title == "Trend"
    assert trend.text == "Problems per digest, last 3: ▁█▆ (1 to 4), oldest to newest"


def test_newly_unused_index(schema_db, state_dsn):
    now = datetime.now(timezone.utc)
    with psycopg.connect(schema_db, autocommit=True) as conn:
        for days in (40, 1):
            take_snapshot(conn, state_dsn, "prod", now=now - days * DAY)
    # 15 days ago the history was too short to call anything unused; today it covers the window.
    build_digest(state_dsn, "prod", do_review(schema_db, state_dsn, now=now - 15 * DAY), [], now=now - 15 * DAY)
    today = build_digest(state_dsn, "prod", do_review(schema_db, state_dsn, now=now), [], now=now)
    # The two indexes neither backing a constraint nor one of the expected indexes (dbops.toml).
    assert today.changes == ["newly unused: IX_Boards_UserId on Boards: no scans in 30 d, 8.0 kB",
                             "newly unused: IX_Notes_UserId_CreatedAt on Notes: no scans in 30 d, 8.0 kB"]
    assert "no change" not in today.to_report().sections[0].text


def test_slow_query_regression(fresh_db, state_dsn):
    run(fresh_db, "CREATE EXTENSION pg_stat_statements", *["SELECT pg_sleep(0.002)"] * 2)
    now = datetime.now(timezone.utc)
    before = do_review(fresh_db, expected=[])
    build_digest(state_dsn, "prod", before, [], now=now - DAY)
    run(fresh_db, *["SELECT pg_sleep(0.06)"] * 4)  # same statement, now 30 times slower
    after = do_review(fresh_db, expected=[])
    digest = build_digest(state_dsn, "prod", after, [], now=now)
    regressions = [c for c in digest.changes if c.startswith("slow-query regression")]
    assert len(regressions) == 1 and regressions[0].endswith("ms: SELECT pg_sleep($1)")
    # The same figures again: no regression, no change.
    again = build_digest(state_dsn, "prod", after, [], now=now + DAY)
    assert not again.changed
