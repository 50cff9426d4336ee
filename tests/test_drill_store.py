"""Drills in the state store: ids, history with its trend, written reports, and the overdue alarm."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.core.state import migrate
from handlers.drill import DrillResult, DrillSettings, DrillStore, drill_alarm
from handlers.errors import UsageError
from handlers.report import Check, Outcome, Verdict

STEPS = ["create instance", "restore", "verify", "delete instance"]


def a_result(total: float, passed: bool = True, started: float | None = None, backup: str = "b003") -> DrillResult:
    started = started if started is not None else time.time() - total
    durations = [1.0, total * 0.6, total * 0.3, 0.5]
    steps, at = [], started
    for name, seconds in zip(STEPS, durations):
        steps.append({"step": name, "started_at": at, "seconds": seconds, "outcome": "ok", "detail": ""})
        at += seconds
    checks = [{"name": "pg_restore errors", "ok": True, "detail": "pg_restore reported no errors"},
              {"name": "row counts and content checksums of 9 tables", "ok": passed,
               "detail": "200,000 rows, all equal" if passed else "table public.Notes: 100 rows expected, 90 restored"}]
    return DrillResult(backup_id=backup, target="prod", instance_kind="local", started_at=started,
                       finished_at=started + total, instance="throwaway local PostgreSQL", steps=steps,
                       checks=[Check.from_dict(c) for c in checks],
                       versions={"drill server": "PostgreSQL 18.6"},
                       backup={"created_at": "2026-11-25T00:00:00+00:00", "format": "custom", "size": 1234,
                               "integrity_level": "checksums", "tables": 9, "rows": 200000},
                       procedure=["Created the drill instance.", "Restored it.", "Verified it.", "Deleted it."],
                       recovery_point_age_s=3600.0)


@pytest.fixture
def state(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


def test_record_gives_short_ids_and_report_markdown_reads_back(state):
    store = DrillStore(state)
    first = store.record("prod", "b003", a_result(60), "U123")
    second = a_result(70, passed=False)
    assert (first, store.record("prod", "b003", second, "scheduler")) == ("d001", "d002")
    assert second.drill_id == "d002"
    markdown = store.report_markdown("d002")
    assert markdown.startswith("# Restore drill d002: FAILED")
    assert "table public.Notes: 100 rows expected, 90 restored" in markdown
    assert "## Procedure" in markdown and "1. Created the drill instance." in markdown
    assert store.get("D001").passed


@pytest.mark.parametrize("bad", ["d999", "x7", "7"])
def test_unknown_or_malformed_id_is_a_usage_error_naming_it(state, bad):
    DrillStore(state).record("prod", "b003", a_result(60), "U123")
    with pytest.raises(UsageError) as err:
        DrillStore(state).report_markdown(bad)
    assert bad in str(err.value) or "d999" in str(err.value)


def test_history_lists_steps_totals_and_a_trend(state):
    store = DrillStore(state)
    now = time.time()
    for i, total in enumerate([60, 80, 100, 120]):
        store.record("prod", f"b00{i}", a_result(total, started=now - 86400 * (4 - i)), "scheduler")
    store.record("prod", "b009", a_result(50, passed=False, started=now - 60), "U1")
    store.record("staging", "b100", a_result(10), "U1")
    report = store.history("prod", limit=10)
    table = report.sections[0].table
    assert table.headers == ["id", "when", "result", "backup", "its age", "total", "restore", "verify",
                             "instance"]
    assert [r[0] for r in table.rows] == ["d005", "d004", "d003", "d002", "d001"]  # newest first, prod only
    assert table.rows[0][2] == "failed" and table.rows[1][2] == "passed"
    assert table.rows[1][4] == "1 h" and table.rows[1][5] == "2 min"
    assert report.data["trend"] == "▁▃▆█"  # passed drills, oldest to newest
    assert "▁▃▆█" in report.summary and report.outcome is Outcome.FAILED  # the latest failed
    assert DrillStore(state).history("nowhere").summary.startswith("No restore drill has run")


def test_empty_history_names_the_command_that_runs_a_drill(state):
    assert DrillStore(state).history("prod").summary == "No restore drill has run on prod yet. Run one: `dbops drill`"
    assert DrillStore(state).history("staging", prefix="/db").summary.endswith("Run one: `/db drill --target staging`")


def test_trend_covers_more_drills_than_the_table_shows(state):
    store = DrillStore(state)
    now = time.time()
    for i, total in enumerate([60, 120, 90, 90]):
        store.record("prod", "b001", a_result(total, started=now - 86400 * (4 - i)), "scheduler")
    report = store.history("prod", limit=2)
    assert len(report.sections[0].table.rows) == 2
    assert report.data["trend"] == "▁█▅▅"
    assert "▁█▅▅ (1 min to 2 min)" in report.summary


def test_alarm_when_no_drill_passed_within_max_age_days(state):
    settings = DrillSettings.from_dict({"max_age_days": 14})
    ok, line = drill_alarm(state, "prod", settings)
    assert not ok and "no restore drill has ever passed on prod: run `dbops drill`" in line

    store = DrillStore(state)
    store.record("prod", "b001", a_result(60, started=time.time() - 20 * 86400), "scheduler")
    store.record("prod", "b002", a_result(60, passed=False, started=time.time() - 3 * 86400), "scheduler")
    ok, line = drill_alarm(state, "prod", settings)
    assert not ok and "in the last 14 days" in line and "d001" in line  # a failed drill does not count
    assert "the last drill failed on prod (d002" in line  # and the newest attempt failing is said first

    store.record("prod", "b003", a_result(60, started=time.time() - 2 * 86400 - 90), "scheduler")
    ok, line = drill_alarm(state, "prod", settings)
    assert ok and "d003" in line and "2 d ago" in line
    later = datetime.now(timezone.utc) + timedelta(days=13)
    assert not drill_alarm(state, "prod", settings, now=later)[0]
    assert drill_alarm(state, "prod", DrillSettings.from_dict({"max_age_days": 30}), now=later)[0]
    assert store.last_passed("prod")["drill_id"] == "d003"


def test_cancelled_drill_is_recorded_as_cancelled_and_never_counts_as_passed(state):
    store = DrillStore(state)
    interrupted = a_result(30)
    interrupted.cancelled = True  # Ctrl-C after every check had passed
    interrupted.steps[2].update(outcome="cancelled", detail="interrupted (Ctrl-C)")
    drill = store.record("prod", "b004", interrupted, "cli:ops")
    assert store.recent("prod")[0]["outcome"] == "cancelled"
    assert store.last_passed("prod") is None
    again = store.get(drill)
    assert again.outcome == "cancelled" and not again.passed
    assert store.report_markdown(drill).startswith(f"# Restore drill {drill}: CANCELLED")
    assert "passed" not in again.summary


def test_warnings_are_kept_and_shown_but_the_drill_passed(state):
    result = a_result(30)
    result.checks.append(Check("expected indexes (3)", Verdict.WARNING,
                               "missing in the source as well: index on Notes (BoardId)"))
    drill = DrillStore(state).record("prod", "b005", result, "U1")
    again = DrillStore(state).get(drill)
    assert again.passed and again.warnings == [result.checks[-1]]
    markdown = again.to_markdown()
    assert markdown.startswith(f"# Restore drill {drill}: PASSED with warnings")
    assert "| expected indexes (3) | warning | missing in the source as well" in markdown
    assert again.to_report().outcome is Outcome.OK
