"""Drills on Render: a point-in-time recovery made by the fake Render out of a real PostgreSQL copy,
verified against production (the demo database), and always deleted; and drills of Render's exports."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import tarfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.drill import DrillSettings, DrillStore, drill_alarm
from handlers.postgres import libpq_env, pg_tool
from handlers.render import (
    RenderClient,
    RenderSettings,
    RetryPolicy,
    UnsafeArchive,
    mirror_export,
    run_export_drill,
    run_render_drill,
    safe_extract,
)
from handlers.report import Progress
from handlers.target import Target
from tests.fakes.render_api import FakeRender

KEY = "rnd_DrillK3y-\"quoted\"-secret"
STEPS = ["create instance", "restore", "verify", "delete instance"]


class Clock:
    """Injected sleep and monotonic clock: a wait moves time on, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def render(pg_server, demo_template):
    made: list[str] = []

    def make_copy(instance: dict) -> str:
        name = f"copy_{instance['id'].replace('-', '_')}"
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{demo_template}"')
        made.append(name)
        return pg_server.dsn(name)

    def drop_copy(instance: dict) -> None:
        name = f"copy_{instance['id'].replace('-', '_')}"
        demo_data.drop_database(pg_server.dsn(), name)
        made.remove(name)

    fake = FakeRender(KEY, make_copy, drop_copy).start()
    fake.made = made
    yield fake
    fake.stop()
    for name in list(made):
        demo_data.drop_database(pg_server.dsn(), name)
    assert fake.schema_errors == []


@pytest.fixture
def state(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


def drill_settings(tmp_path: Path) -> DrillSettings:
    return DrillSettings.from_dict({"work_dir": str(tmp_path), "jobs": 1})


def settings(**section) -> RenderSettings:
    return RenderSettings.from_config(section, env={"RENDER_API_KEY": KEY})


def client(fake: FakeRender, clock: Clock, **retry) -> RenderClient:
    return RenderClient(KEY, fake.url, timeout_s=10.0, retry=RetryPolicy(**retry), sleep=clock.sleep,
                        jitter=lambda: 0.0)


def everything_said(result, told: list[Progress], caplog) -> str:
    return "\n".join([json.dumps(result.to_dict()), result.to_markdown(), str(result.to_report().to_json()),
                      *(p.detail for p in told), caplog.text])


def assert_no_secret(text: str, pg_server) -> None:
    for secret in [KEY, *pg_server.secrets()]:
        assert secret not in text
    assert "password=" not in text and "postgresql://" not in text


def test_pitr_drill_restores_verifies_shows_row_differences_deletes_and_is_recorded(
        render, pg_server, demo_db, tmp_path, state, caplog):
    caplog.set_level(logging.DEBUG)
    prod = render.add_instance("asidenote-db", plan="basic_1gb")
    with psycopg.connect(demo_db, autocommit=True) as conn:  # production moved on after the restore time
        conn.execute("""DELETE FROM "Notes" WHERE "Id" IN (SELECT "Id" FROM "Notes" ORDER BY "Id" LIMIT 3)""")
    clock, told = Clock(), []
    outcome = run_render_drill(client(render, clock), prod["id"], Target("prod", demo_db), settings(),
                               drill_settings(tmp_path), expected_indexes=[("Users", ("Email",), True)],
                               progress=told.append, sleep=clock.sleep, clock=clock)
    result = outcome.result
    assert result.passed, result.summary
    assert outcome.alarm is None and result.instance_kind == "render-pitr"
    assert [s["step"] for s in result.steps] == STEPS and all(s["outcome"] == "ok" for s in result.steps)
    rows = next(c for c in result.checks if c.name.startswith("row counts"))
    assert rows.ok and "differences, expected" in rows.detail and "(+3)" in rows.detail
    assert any(c.name.startswith("pg_amcheck") and c.detail == "no corruption found" for c in result.checks)
    assert any(c.name == "expected indexes (1)" and c.ok for c in result.checks)
    # The recovery: 15 minutes ago, named for the drill, polled until available, then deleted.
    posted = render.requests_to("POST", "/postgres/{postgresId}/recovery")[0].body
    assert posted["restoreName"].startswith("dbops-drill-")
    assert 14 * 60 <= result.recovery_point_age_s <= 16 * 60
    assert render.made == [] and list(render.instances) == [prod["id"]]
    assert "existed" in result.instance and "billed" in result.instance and "plan basic_1gb" in result.instance
    assert clock.waits == [15.0]  # one wait: available on the second look
    drill_id = DrillStore(state).record("prod", result.backup_id, result, "U0BOSS")
    with psycopg.connect(state) as conn:
        assert conn.execute("SELECT instance_kind FROM dbops.drills").fetchone()[0] == "render-pitr"
    assert DrillStore(state).get(drill_id).passed
    assert_no_secret(everything_said(result, told, caplog), pg_server)


def test_a_schema_that_changed_since_fails_the_drill_and_the_instance_still_goes(
        render, pg_server, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute('CREATE INDEX notes_title ON "Notes" ("Title")')
    clock = Clock()
    result = run_render_drill(client(render, clock), prod["id"], Target("prod", demo_db), settings(),
                              drill_settings(tmp_path), sleep=clock.sleep, clock=clock).result
    assert not result.passed and "schema differs: 1 index" in result.summary  # the kind and a count
    assert any("notes_title" in c.detail for c in result.failed_checks)  # which: in the detail
    assert render.made == [] and list(render.instances) == [prod["id"]]


def test_an_instance_stuck_in_creating_hits_the_time_limit_and_is_deleted(render, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    render.available_after_polls = None  # never becomes available
    clock, told = Clock(), []
    result = run_render_drill(client(render, clock), prod["id"], Target("prod", demo_db),
                              settings(wait_limit_minutes=45), drill_settings(tmp_path), progress=told.append,
                              sleep=clock.sleep, clock=clock).result
    assert not result.passed and result.outcome == "failed"
    restore = next(s for s in result.steps if s["step"] == "restore")
    assert restore["outcome"] == "failed" and "still creating after 45 min" in restore["detail"]
    assert next(s for s in result.steps if s["step"] == "verify")["outcome"] == "skipped"
    assert next(s for s in result.steps if s["step"] == "delete instance")["outcome"] == "ok"
    assert sum(clock.waits) == 45 * 60 and max(clock.waits) == 60.0  # backoff grew to the cap
    assert any("Render restores take 10 to 30 minutes" in p.detail for p in told)
    assert list(render.instances) == [prod["id"]]


def test_a_delete_that_keeps_failing_is_retried_then_raised_as_an_alarm(render, pg_server, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    render.delete_failures = -1
    clock = Clock()
    outcome = run_render_drill(client(render, clock, server_retries=1), prod["id"], Target("prod", demo_db),
                               settings(delete_retries=3), drill_settings(tmp_path), sleep=clock.sleep, clock=clock)
    left = next(d for d in render.instances.values() if d["name"].startswith("dbops-drill-"))
    assert not outcome.result.passed
    assert outcome.alarm and "ALARM" in outcome.alarm and left["name"] in outcome.alarm
    assert left["dashboardUrl"] in outcome.alarm and "billed" in outcome.alarm
    assert len(render.requests_to("DELETE", "/postgres/{postgresId}")) == 4 * 2  # 4 tries, each retried once
    assert left["dashboardUrl"] in outcome.result.summary
    render.delete_failures = 0  # the fixture's copy goes with it


def test_a_delete_that_fails_a_few_times_is_retried_until_it_goes(render, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    render.delete_failures = 3
    clock = Clock()
    outcome = run_render_drill(client(render, clock, server_retries=0), prod["id"], Target("prod", demo_db),
                               settings(delete_retries=5), drill_settings(tmp_path), sleep=clock.sleep, clock=clock)
    assert outcome.result.passed and outcome.alarm is None and list(render.instances) == [prod["id"]]
    assert clock.waits[-3:] == [5.0, 10.0, 20.0]


def test_a_lost_answer_to_the_recovery_request_finds_the_instance_by_name_and_deletes_it(
        render, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    render.recovery_answer_lost = True
    clock = Clock()
    result = run_render_drill(client(render, clock), prod["id"], Target("prod", demo_db), settings(),
                              drill_settings(tmp_path), sleep=clock.sleep, clock=clock).result
    assert not result.passed and "HTTP 500" in result.summary
    assert list(render.instances) == [prod["id"]]
    listed = render.requests_to("GET", "/postgres")[0]
    assert listed.query["name"][0].startswith("dbops-drill-")


@pytest.mark.parametrize("recovery", ["NOT_AVAILABLE", "BACKUP_NOT_READY"])
def test_no_instance_is_created_when_recovery_is_not_available(render, demo_db, tmp_path, recovery):
    prod = render.add_instance("asidenote-db", recovery=recovery, window=None)
    clock = Clock()
    result = run_render_drill(client(render, clock), prod["id"], Target("prod", demo_db), settings(),
                              drill_settings(tmp_path), sleep=clock.sleep, clock=clock).result
    assert not result.passed and recovery in result.summary
    assert render.requests_to("POST", "/postgres/{postgresId}/recovery") == []


def test_the_restore_time_is_never_before_the_window_nor_within_the_last_minutes(render, demo_db, tmp_path):
    young = render.add_instance("young-db", window=timedelta(minutes=20))
    clock = Clock()
    run_render_drill(client(render, clock), young["id"], Target("prod", demo_db), settings(restore_minutes_ago=30),
                     drill_settings(tmp_path), sleep=clock.sleep, clock=clock)
    posted = render.requests_to("POST", "/postgres/{postgresId}/recovery")[0].body["restoreTime"]
    starts = render.recovery[young["id"]]["startsAt"]
    assert posted > starts
    newborn = render.add_instance("newborn-db", window=timedelta(minutes=5))
    result = run_render_drill(client(render, clock), newborn["id"], Target("prod", demo_db), settings(),
                              drill_settings(tmp_path), sleep=clock.sleep, clock=clock).result
    assert not result.passed and "at least 10 minutes ago" in result.summary
    assert len(render.requests_to("POST", "/postgres/{postgresId}/recovery")) == 1


# -- exports -----------------------------------------------------------------------------------

def make_export(dsn: str, tmp_path: Path) -> bytes:
    """What Render's export is: pg_dump's directory format, as a gzipped tar."""
    folder = tmp_path / "dump"
    subprocess.run([pg_tool("pg_dump"), "--format", "directory", "--file", str(folder)],
                   check=True, capture_output=True, env=libpq_env(dsn))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="asidenote.dir")
    return buffer.getvalue()


def test_export_drill_restores_the_newest_export_and_keeps_a_copy(render, pg_server, demo_db, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    prod = render.add_instance("asidenote-db")
    render.add_export(prod["id"], b"an older export that would not restore", age=timedelta(days=2))
    render.add_export(prod["id"], make_export(demo_db, tmp_path), age=timedelta(hours=3))
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("""DELETE FROM "Notes" WHERE "Id" IN (SELECT "Id" FROM "Notes" ORDER BY "Id" LIMIT 2)""")
    told: list[Progress] = []
    backups = tmp_path / "backups"
    result = run_export_drill(client(render, Clock()), prod["id"], Target("prod", demo_db), settings(),
                              drill_settings(tmp_path), progress=told.append,
                              keep=lambda path, export: mirror_export(path, export, "prod", backups))
    assert result.passed, result.summary
    assert result.instance_kind == "render-export" and result.backup_id.startswith("render-export exp-")
    rows = next(c for c in result.checks if c.name.startswith("row counts"))
    assert "(+2)" in rows.detail
    kept = list((backups / "prod" / "render-exports").iterdir())
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600
    assert 2.9 * 3600 < result.recovery_point_age_s < 3.2 * 3600
    said = everything_said(result, told, caplog)
    assert_no_secret(said, pg_server)
    assert "X-Amz-Signature" not in said and "secret" not in said


def tar_with(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize("bad, says", [
    (member("asidenote.dir/../../escaped.txt"), "outside its folder"),
    (member("/etc/dbops-escaped"), "absolute path"),
    (member("asidenote.dir/toc.dat", tarfile.SYMTYPE, link="/etc/passwd"), "a link"),
    (member("asidenote.dir/toc.dat", tarfile.LNKTYPE, link="../../x"), "a link"),
    (member("asidenote.dir/dev", tarfile.CHRTYPE), "device"),
    (member("asidenote.dir/fifo", tarfile.FIFOTYPE), "device, FIFO"),
], ids=["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_an_unsafe_export_member_is_refused_before_anything_is_written(tmp_path, bad, says):
    archive = tmp_path / "export.tar.gz"
    archive.write_bytes(tar_with(member("asidenote.dir/a.dat"), bad))
    into = tmp_path / "work" / "unpacked"
    with pytest.raises(UnsafeArchive, match=says):
        safe_extract(archive, into, max_bytes=1 << 20, max_files=100)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "work" / "escaped.txt").exists()
    assert not list(into.rglob("*"))  # refused before a single member was written


def test_an_export_past_the_size_or_file_limit_is_refused(tmp_path):
    archive = tmp_path / "export.tar.gz"
    archive.write_bytes(tar_with(member("d/a.dat", size=600), member("d/b.dat", size=600), data=b"y" * 600))
    with pytest.raises(UnsafeArchive, match="more than 1,000 bytes"):
        safe_extract(archive, tmp_path / "u1", max_bytes=1000, max_files=100)
    with pytest.raises(UnsafeArchive, match="more than 1 files"):
        safe_extract(archive, tmp_path / "u2", max_bytes=10_000, max_files=1)


def test_an_export_drill_refuses_an_escaping_archive_and_starts_nothing(render, demo_db, tmp_path):
    prod = render.add_instance("asidenote-db")
    render.add_export(prod["id"], tar_with(member("asidenote.dir/toc.dat"), member("../../../tmp/owned")))
    with pytest.raises(UnsafeArchive, match="outside its folder"):
        run_export_drill(client(render, Clock()), prod["id"], Target("prod", demo_db), settings(),
                         drill_settings(tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("dbops-")]  # work folder removed


# -- the overdue alarm counts each kind --------------------------------------------------------

def test_the_overdue_alarm_counts_each_kind_of_drill(render, demo_db, tmp_path, state):
    from tests.test_drill_store import a_result

    settings_ = DrillSettings.from_dict({"max_age_days": 14})
    store = DrillStore(state)
    store.record("prod", "b001", a_result(60), "scheduler")  # a local drill, passed now
    pitr = a_result(60, started=__import__("time").time() - 20 * 86400)
    pitr.instance_kind = "render-pitr"
    store.record("prod", "pitr@x", pitr, "U0BOSS")
    ok, line = drill_alarm(state, "prod", settings_)
    assert not ok and "render-pitr" in line and "in the last 14 days" in line and "local" in line
    fresh = a_result(60)
    fresh.instance_kind = "render-pitr"
    store.record("prod", "pitr@y", fresh, "U0BOSS")
    ok, line = drill_alarm(state, "prod", settings_)
    assert ok and "local:" in line and "render-pitr:" in line
