"""The [drill] settings, smoke-query expectations, expected-index items and the drill schedule."""
from __future__ import annotations

from datetime import datetime, time, timezone
from pathlib import Path

import pytest

from handlers.drill import DrillSchedule, DrillSettings, ExpectedIndex, SmokeQuery, schedule_report
from handlers.errors import ConfigError


def test_defaults_follow_the_ops_plan():
    s = DrillSettings.from_dict({})
    assert s.instance == "local" and s.max_age_days == 14 and s.jobs >= 1
    assert s.amcheck and s.smoke_queries == [] and str(s.schedule) == "weekly on Sun at 03:00 UTC"
    assert s.scratch_url_env == "DBOPS_DRILL_URL"


def test_a_full_section_is_read():
    s = DrillSettings.from_dict({
        "instance": "scratch", "jobs": 3, "max_age_days": 7, "schedule": "daily 02:30", "work_dir": "/var/tmp/x",
        "amcheck_heapallindexed": False,
        "smoke_queries": [{"name": "a user can be found by email",
                           "sql": "SELECT 1 FROM \"Users\" WHERE \"Email\" = 'a@b.c'", "expect": "rows>=1"},
                          {"name": "count", "sql": "SELECT count(*) FROM t", "expect": 3}]})
    assert (s.instance, s.jobs, s.max_age_days, s.work_dir) == ("scratch", 3, 7, Path("/var/tmp/x"))
    assert s.schedule.time_of_day == time(2, 30, tzinfo=timezone.utc) and s.schedule.weekdays is None
    assert not s.amcheck_heapallindexed
    assert [q.expect for q in s.smoke_queries] == ["rows>=1", "3"]


@pytest.mark.parametrize("section, named", [
    ({"jobs": 0}, "drill.jobs must be a whole number >= 1"),
    ({"jobs": "4"}, "drill.jobs must be a whole number >= 1"),
    ({"max_age_days": -1}, "drill.max_age_days"),
    ({"instance": "docker"}, "drill.instance must be one of local, scratch, render"),
    ({"scratch_url": "postgresql://u:secretpw@h/db"}, "drill.scratch_url is not a setting"),
    ({"scratch_url_env": "postgresql://u:pw@h/db"}, "drill.scratch_url_env must be the name of an environment"),
    ({"schedule": "every tuesday"}, "drill.schedule: 'every tuesday' is not a schedule"),
    ({"schedule": "weekly funday 03:00"}, "'funday' is not a day"),
    ({"schedule": "daily 25:00"}, "HH:MM"),
    ({"amcheck": "yes"}, "drill.amcheck must be true or false"),
    ({"smoke_queries": {"name": "x"}}, "drill.smoke_queries must be a list"),
    ({"smoke_queries": [{"name": "x", "sql": "DELETE FROM users"}]}, "drill.smoke_queries[0].sql must be a SELECT"),
    ({"smoke_queries": [{"name": "x", "sql": "SELECT 1; SELECT 2"}]}, "exactly one statement, found 2"),
    ({"smoke_queries": [{"name": "x", "sql": "SELEC 1"}]}, "drill.smoke_queries[0].sql does not parse"),
    ({"smoke_queries": [{"name": "x", "sql": "SELECT 1", "expect": "rows about 3"}]}, "is not a row condition"),
    ({"smoke_queries": [{"name": "x", "sql": "SELECT 1"}, {"name": "x", "sql": "SELECT 2"}]}, "used twice"),
    ({"smoke_queries": [{"name": "x", "sql": "SELECT 1", "expected": 1}]}, "drill.smoke_queries[0].expected"),
])
def test_bad_settings_name_the_key(section, named):
    with pytest.raises(ConfigError) as err:
        DrillSettings.from_dict(section)
    assert named in str(err.value)
    assert "secretpw" not in str(err.value)


def test_smoke_expectations():
    rows3 = [(1,), (2,), (3,)]
    assert SmokeQuery("q", "SELECT 1", "rows>=1").judge(rows3)[0]
    assert not SmokeQuery("q", "SELECT 1", "rows=0").judge(rows3)[0]
    assert SmokeQuery("q", "SELECT 1", "rows == 3").judge(rows3)[0]
    assert not SmokeQuery("q", "SELECT 1", "rows<3").judge(rows3)[0]
    assert SmokeQuery("q", "SELECT 1", "1").judge(rows3) == (True, "returned '1' (expected '1')")
    assert SmokeQuery("q", "SELECT 1", "true").judge([(True,)])[0]
    assert SmokeQuery("q", "SELECT 1", "t").judge([(True,)])[0]
    assert not SmokeQuery("q", "SELECT 1", "true").judge([(False,)])[0]
    ok, detail = SmokeQuery("q", "SELECT 1", "42").judge([])
    assert not ok and "no rows" in detail


def test_expected_index_items_in_every_shape():
    want = ExpectedIndex("Users", ("Email",), True)
    assert ExpectedIndex.coerce(("Users", ("Email",), True)) == want
    assert ExpectedIndex.coerce({"table": "Users", "columns": ["Email"], "unique": True, "purpose": "login"}) == want
    assert ExpectedIndex.coerce({"table": "Users", "columns": "Email", "unique": True}) == want
    in_app = ExpectedIndex.coerce({"schema": "app", "table": "Users", "columns": ["Email"]})
    assert (in_app.schema, in_app.table, in_app.label) == ("app", "Users", "index on app.Users (Email)")
    assert ExpectedIndex.coerce(("app.Users", ["Email"])) == in_app

    class Item:  # like the index review's config objects
        table, columns, unique = "Notes", ["UserId", "CreatedAt"], False

    assert ExpectedIndex.coerce(Item()) == ExpectedIndex("Notes", ("UserId", "CreatedAt"))
    with pytest.raises(ValueError):
        ExpectedIndex.coerce(("Users",))


def test_schedule_next_run_and_scheduler_fields():
    weekly = DrillSchedule.parse("weekly mon,thursday 02:30")
    assert weekly.weekdays == frozenset({0, 3}) and weekly.time_of_day == time(2, 30, tzinfo=timezone.utc)
    wed = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)  # a Wednesday
    assert weekly.next_run(wed) == datetime(2026, 11, 26, 2, 30, tzinfo=timezone.utc)
    assert weekly.next_run(datetime(2026, 11, 26, 2, 30, tzinfo=timezone.utc)) == \
        datetime(2026, 11, 30, 2, 30, tzinfo=timezone.utc)
    daily = DrillSchedule.parse("daily 03:00")
    assert daily.next_run(wed) == datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
    assert daily.next_run(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
    off = DrillSchedule.parse("off")
    assert off.next_run(wed) is None and off.time_of_day is None


def test_schedule_report_says_when_the_next_drill_runs():
    s = DrillSettings.from_dict({"schedule": "weekly sun 03:00", "max_age_days": 14,
                                 "smoke_queries": [{"name": "a user can be found by email", "sql": "SELECT 1"}]})
    report = schedule_report(s, datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc))
    assert "2026-11-29 03:00 UTC" in report.summary
    rows = dict(report.sections[0].table.rows)
    assert rows["alarm"] == "when no drill has passed for 14 days"
    assert rows["smoke queries"] == "a user can be found by email"
    assert report.data["next_run"] == "2026-11-29T03:00:00+00:00"
    off = schedule_report(DrillSettings.from_dict({"schedule": "off"}), datetime(2026, 11, 25, tzinfo=timezone.utc))
    assert "on demand only" in off.summary and off.data["next_run"] is None
