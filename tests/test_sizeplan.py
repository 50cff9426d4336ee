"""The size plan: projections from a synthetic history (dates computed from the history's own growth,
never written down), the history kept in the state store, and a sample measured on real parts (the
database, the fake Render's disk metric)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from bot.core.config import Settings
from bot.core.state import migrate
from handlers.sizeplan import Disks, RenderDisk, SizePlanSettings, SizeSample, history, make_plan, measure, record
from handlers.target import Target
from tests.fakes.render_api import FakeRender

GiB, MiB = 1024 ** 3, 1024 ** 2
GROWTH = 50 * MiB  # a day
START = 10 * GiB


def size_on(day: date, first: date) -> int:
    return START + GROWTH * (day - first).days


def first_day(today: date, reached) -> date:
    """The first day from `today` on whose projected size makes `reached(size)` true: found by walking
    the synthetic growth day by day, not by the plan's formula."""
    day = today
    while not reached(day):
        day += timedelta(days=1)
        assert day < today + timedelta(days=20 * 365)
    return day


def synthetic(today: date, days: int = 60, backup_minutes_now: float = 40.0) -> list[SizeSample]:
    first = today - timedelta(days=days - 1)
    newest = size_on(today, first)
    speed = newest / (backup_minutes_now * 60)  # bytes a second: the backup of today's size takes that long
    return [SizeSample(day=first + timedelta(days=i), database_bytes=size_on(first + timedelta(days=i), first),
                       render_disk_used_bytes=size_on(first + timedelta(days=i), first) + 2 * GiB,
                       render_disk_bytes=20 * GiB, render_disk_autoscaling=False,
                       backup_s=size_on(first + timedelta(days=i), first) / speed, drill_s=600.0)
            for i in range(days)]


def test_the_plan_projects_each_limit_to_the_day_the_growth_reaches_it():
    today = datetime.now(timezone.utc).date()
    samples = synthetic(today)
    first, speed = samples[0].day, samples[-1].database_bytes / samples[-1].backup_s
    settings = SizePlanSettings(backup_window_minutes=60, warn_days=90)
    plan = make_plan("prod", samples, today, settings, Disks(local_free=25 * GiB, size_factor=0.6))
    assert plan.size == size_on(today, first)
    assert plan.growth_per_month == pytest.approx(GROWTH * 30.44)
    limits = {lim.name: lim for lim in plan.limits}

    window = first_day(today, lambda d: size_on(d, first) >= 60 * 60 * speed)
    drill_copy = first_day(today, lambda d: size_on(d, first) * 1.6 >= 25 * GiB)
    render = first_day(today, lambda d: size_on(d, first) + 2 * GiB >= 20 * GiB)
    assert limits["backup window"].when == window
    assert limits["local disk"].when == drill_copy
    assert limits["Render disk"].when == render
    assert "the backup takes about 40 min of 1 h" in limits["backup window"].detail

    # Only what is reached within warn_days is a problem, with the move to make.
    horizon = today + timedelta(days=90)
    assert drill_copy <= horizon < min(window, render)
    ok, line = plan.line()
    assert not ok
    assert f"local disk: reached about {drill_copy.isoformat()}" in line and "drill on Render instead" in line
    assert "backup window" not in line and "Render disk" not in line
    assert line.startswith("12.9 GB, +1.5 GB/month")
    rows = {row[0]: row for row in plan.to_report().sections[0].table.rows}
    assert rows["backup window"][1] == window.isoformat() and "recovery copy" in rows["backup window"][3]
    assert rows["Render disk"][1] == render.isoformat() and "Storage" in rows["Render disk"][3]


def test_a_limit_already_passed_says_so_and_a_recovery_copy_backup_gets_another_move():
    today = datetime.now(timezone.utc).date()
    samples = synthetic(today, backup_minutes_now=75)  # longer than the window already
    plan = make_plan("prod", samples, today, SizePlanSettings(backup_window_minutes=60),
                     Disks(local_free=5 * GiB, scheduled_from="render-recovery"))
    limits = {lim.name: lim for lim in plan.limits}
    assert limits["backup window"].reached and limits["local disk"].reached
    ok, line = plan.line()
    assert not ok and "backup window: REACHED" in line and "backup.jobs" in line


def test_local_archives_on_the_same_disk_bring_the_drill_copy_date_forward():
    today = datetime.now(timezone.utc).date()
    samples = synthetic(today)
    first = samples[0].day
    alone = make_plan("prod", samples, today, SizePlanSettings(), Disks(local_free=40 * GiB))
    shared = make_plan("prod", samples, today, SizePlanSettings(), Disks(local_free=40 * GiB, local_archives=10))
    alone_when, shared_when = (next(lim.when for lim in p.limits if lim.name == "local disk") for p in (alone, shared))
    now = size_on(today, first)
    # Ten archives of 0.6 x the size grow with it, eating what is free: the copy stops fitting sooner.
    expected = first_day(today, lambda d: size_on(d, first) * 1.6 >= 40 * GiB - 10 * 0.6 * (size_on(d, first) - now))
    assert shared_when == expected < alone_when


def test_too_little_history_projects_nothing_and_a_shrinking_database_reaches_no_limit():
    today = datetime.now(timezone.utc).date()
    short = synthetic(today, days=3)
    plan = make_plan("prod", short, today, SizePlanSettings(min_history_days=7), Disks(local_free=100 * GiB))
    assert plan.growth_per_day is None and all(lim.when is None for lim in plan.limits)
    ok, line = plan.line()
    assert ok and "growth not known yet (2 days of history, 7 needed)" in line
    shrinking = [SizeSample(day=s.day, database_bytes=START - GROWTH * i) for i, s in enumerate(synthetic(today))]
    plan = make_plan("prod", shrinking, today, SizePlanSettings(), Disks(local_free=100 * GiB))
    assert plan.growth_per_day < 0 and all(lim.when is None for lim in plan.limits)
    assert plan.line()[0] and "no limit in sight" in plan.line()[1]
    assert make_plan("prod", [], today, SizePlanSettings(), Disks()).line() == (
        True, "no size recorded yet: it is sampled daily (or `size record`)")


def test_autoscaling_means_the_render_disk_has_no_date():
    today = datetime.now(timezone.utc).date()
    samples = synthetic(today)
    samples[-1].render_disk_autoscaling = True
    plan = make_plan("prod", samples, today, SizePlanSettings(), Disks())
    [render] = [lim for lim in plan.limits if lim.name == "Render disk"]
    assert render.when is None and "autoscaling on" in render.detail


@pytest.fixture
def state(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


def test_the_history_is_kept_a_sample_a_day_and_status_projects_from_it(state, tmp_path):
    from bot.areas.sizeplan import current_plan

    today = datetime.now(timezone.utc).date()
    for sample in synthetic(today):
        record(state, "prod", sample)
    record(state, "prod", SizeSample(day=today, database_bytes=synthetic(today)[-1].database_bytes))  # again today
    kept = history(state, "prod", today - timedelta(days=365))
    assert len(kept) == 60 and kept[-1].render_disk_bytes == 20 * GiB  # a second sample keeps what it lacks
    settings = Settings(targets={}, state_url=state, sections={"drill": {"work_dir": str(tmp_path)},
                                                               "sizeplan": {"backup_window_minutes": 60}})
    plan = current_plan(settings, state, "prod")
    first = kept[0].day
    speed = kept[-1].database_bytes / kept[-1].backup_s
    assert {lim.name for lim in plan.limits} == {"backup window", "local disk", "Render disk"}
    assert next(lim.when for lim in plan.limits if lim.name == "backup window") == first_day(
        today, lambda d: size_on(d, first) >= 3600 * speed)


def test_a_sample_measures_the_database_the_newest_backup_and_renders_disk(state, demo_db, tmp_path, monkeypatch):
    from bot.areas.sizeplan import render_disk

    key = "rnd_SizePlanK3y"
    fake = FakeRender(key).start()
    try:
        prod = fake.add_instance("asidenote-db", diskSizeGB=15)
        fake.disk_used_gb[prod["id"]] = 3.5
        monkeypatch.setenv("RENDER_API_KEY", key)
        monkeypatch.setenv("RENDER_API_URL", fake.url)
        monkeypatch.setenv("RENDER_POSTGRES_ID", prod["id"])
        disk = render_disk(Settings(targets={}, state_url=state), "prod")
        assert fake.schema_errors == []
    finally:
        fake.stop()
    assert disk == RenderDisk(used_bytes=int(3.5 * GiB), size_bytes=15 * GiB, autoscaling=False)
    with psycopg.connect(state, autocommit=True) as conn:
        conn.execute("INSERT INTO dbops.backups (id, target, requested_by, status, duration_s, size_bytes) "
                     "VALUES ('b001', 'prod', 'U1', 'completed', 42.5, 12345)")
    sample = measure(Target("prod", demo_db), state, tmp_path, disk)
    with psycopg.connect(demo_db) as conn:
        assert sample.database_bytes == conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    assert (sample.backup_s, sample.backup_bytes, sample.drill_s) == (42.5, 12345, None)
    assert sample.render_disk_used_bytes == int(3.5 * GiB) and sample.local_free_bytes > 0
