"""`restore --at TIME --from render`: Render's point-in-time recovery of production into a new instance,
against the fake Render API (built from Render's spec; its "restored copy" a real PostgreSQL database):
a moment outside the window is refused before anything is made, the new instance is verified against
the bot's backup nearest before the moment and kept (its connection string to the requester only, its
cost a day and how to delete it in the report), one Render cannot make is deleted; `render
delete-instance` deletes only instances dbops made so, and the bot deletes them after a while."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers.backup import BackupCatalog, BackupSettings, take_backup
from handlers.errors import UsageError
from handlers.render import RenderSettings
from handlers.render.pitr import (
    RESTORE_PREFIX,
    Reference,
    delete_restore_instance,
    expired_restores,
    parse_moment,
    restore_point_in_time,
)
from handlers.target import Target
from tests.fakes.render_api import FakeRender, _iso
from tests.test_migrations_e2e import ALICE, BOSS, react, request_message, request_status
from tests.test_render_drill import KEY, Clock, render

ROOT = Path(__file__).resolve().parents[1]


def settings(**kw) -> RenderSettings:
    return RenderSettings(api_key=KEY, poll_first_s=1, poll_max_s=2, wait_limit_minutes=5, **kw)


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def backed_up(demo_db, fresh_db, tmp_path):
    """A real backup of production (the demo database), catalogued: the reference a restore is verified with."""
    migrate.apply(fresh_db)
    catalog = BackupCatalog(fresh_db)
    result = take_backup(Target("prod", demo_db), BackupSettings(dir=tmp_path / "b", min_free_mb=0), catalog, "U1")
    return Reference(result.backup_id, result.manifest.created_at, result.manifest.to_dict())


def test_the_moment_is_read_as_utc_unless_it_says_otherwise():
    assert parse_moment("2026-12-07 10:41") == datetime(2026, 12, 7, 10, 41, tzinfo=timezone.utc)
    assert parse_moment("2026-12-07T11:41:00+01:00") == datetime(2026, 12, 7, 10, 41, tzinfo=timezone.utc)
    with pytest.raises(UsageError, match="is not a moment: give it like '2026-12-07 10:41'"):
        parse_moment("yesterday at ten")


@pytest.mark.parametrize("when, why", [(timedelta(days=4), "before the window"),
                                       (timedelta(minutes=2), "the last minutes")])
def test_a_moment_outside_the_window_is_refused_with_the_window_and_nothing_is_made(render, when, why):
    source = render.add_instance("asidenote-db", window=timedelta(days=3))
    with render_client(render) as client, pytest.raises(UsageError) as refused:
        restore_point_in_time(client, source["id"], now() - when, settings(), source_name="prod", reference=None,
                              expected_indexes=None, amcheck=False, jobs=1)
    text = str(refused.value)
    starts = datetime.fromisoformat(render.recovery[source["id"]]["startsAt"].replace("Z", "+00:00"))
    assert "is outside the point-in-time recovery window of asidenote-db: from " in text
    assert starts.strftime("%Y-%m-%d %H:%M") in text and "nothing was made" in text
    assert render.requests_to("POST", "/postgres/{postgresId}/recovery") == []
    assert list(render.instances) == [source["id"]]


def render_client(render):
    return RenderSettings(api_key=KEY, api_url=render.url).client()


def test_a_point_in_time_restore_is_verified_against_the_nearest_backup_and_kept(render, backed_up):
    source = render.add_instance("asidenote-db", window=timedelta(days=3), plan="basic_1gb")
    at = now() - timedelta(hours=1)
    clock = Clock()
    with render_client(render) as client:
        done = restore_point_in_time(client, source["id"], at, settings(api_url=render.url), source_name="prod",
                                     reference=backed_up, expected_indexes=None, amcheck=False, jobs=1,
                                     sleep=clock.sleep, clock=clock)
    report = done.report
    assert report.ok, report.summary
    [post] = render.requests_to("POST", "/postgres/{postgresId}/recovery")
    assert post.body["restoreTime"] == _iso(at.replace(microsecond=0))  # the moment asked for, to the second
    [made] = [i for i in render.instances.values() if i["id"] != source["id"]]
    assert made["name"].startswith(RESTORE_PREFIX) and made["status"] == "available"  # kept, not deleted
    assert render.requests_to("DELETE", "/postgres/{postgresId}") == [] and render.made
    checks = {c["name"]: c for c in report.data["checks"]}
    assert f"row counts of {len(backed_up.manifest['tables'])} tables against backup {backed_up.backup_id}" in checks
    assert f"verified against backup {backed_up.backup_id}" in report.summary and "Production was not touched" \
        in report.summary
    assert "about $0.78 a day (basic_1gb, 15 GB; $23.50 a month" in report.summary  # $19 + 15 GB at $0.30
    assert f"`render delete-instance {made['name']}`" in report.summary and report.data["keep_until"]
    assert done.connection and done.connection not in json.dumps(report.to_dict())
    password = psycopg.conninfo.conninfo_to_dict(done.connection)["password"]
    assert password not in json.dumps(report.to_dict()) and password in done.secrets


def test_an_instance_render_cannot_make_is_deleted(render):
    source = render.add_instance("asidenote-db", window=timedelta(days=3))
    render.available_after_polls = None  # never available
    clock = Clock()
    with render_client(render) as client:
        done = restore_point_in_time(client, source["id"], now() - timedelta(hours=2), settings(api_url=render.url),
                                     source_name="prod", reference=None, expected_indexes=None, amcheck=False,
                                     jobs=1, sleep=clock.sleep, clock=clock)
    assert not done.report.ok and done.connection is None and not done.report.data["kept"]
    assert "FAILED" in done.report.summary and "wait_limit_minutes" in done.report.summary
    assert list(render.instances) == [source["id"]]  # the billed instance is gone


def test_render_delete_instance_deletes_only_what_a_restore_made(render):
    prod = render.add_instance("asidenote-db")
    other = render.add_instance("someone-elses-db")
    made = render.add_instance(f"{RESTORE_PREFIX}20261207-104100-abc123")
    with render_client(render) as client:
        for name in (prod["id"], "someone-elses-db"):
            with pytest.raises(UsageError, match="was not made by a point-in-time restore of dbops"):
                delete_restore_instance(client, name, settings(), protected={prod["id"]})
        with pytest.raises(UsageError, match="no instance named"):
            delete_restore_instance(client, "dbops-restore-nothing", settings(), protected=set())
        report = delete_restore_instance(client, made["name"], settings(), protected={prod["id"]})
    assert "no longer billed" in report.summary
    assert set(render.instances) == {prod["id"], other["id"]}


def test_restores_older_than_their_keep_hours_are_deleted_by_the_bot(render):
    old = render.add_instance(f"{RESTORE_PREFIX}old", createdAt=_iso(now() - timedelta(hours=50)))
    young = render.add_instance(f"{RESTORE_PREFIX}young", createdAt=_iso(now() - timedelta(hours=2)))
    drill = render.add_instance("asidenote-db", createdAt=_iso(now() - timedelta(days=90)))
    with render_client(render) as client:
        said, alarms = expired_restores(client, settings(restore_keep_hours=48), now())
        assert expired_restores(client, settings(restore_keep_hours=0), now()) == ([], [])
    assert alarms == [] and len(said) == 1 and old["name"] in said[0]
    assert set(render.instances) == {young["id"], drill["id"]}


def dbops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RENDER_", "DBOPS_", "DATABASE_URL", "SLACK_"))}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**base, "PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent",
                                                      **env})


def test_restore_at_from_render_in_a_terminal(render, demo_db, fresh_db, tmp_path):
    source = render.add_instance("asidenote-db", window=timedelta(days=3))
    (tmp_path / "dbops.toml").write_text("[render]\npoll_first_s = 0.2\npoll_max_s = 0.5\n")
    env = {"DATABASE_URL": demo_db, "DBOPS_STATE_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
           "RENDER_API_KEY": KEY, "RENDER_API_URL": render.url, "RENDER_POSTGRES_ID": source["id"],
           "DBOPS_BACKUP_DIR": str(tmp_path / "b")}
    at = (now() - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
    refused = dbops("restore", "--at", at, "--from", "render", "--into", "recovery", "--confirm", "render", env=env)
    assert refused.returncode == 2 and "give no backup id, --into" in " ".join(refused.stderr.split())
    done = dbops("restore", "--at", at, "--from", "render", "--confirm", "render", "--format", "json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["kept"] and body["restored_to"].startswith(at.replace(" ", "T"))
    assert "its connection string was printed on standard error, once" in body["summary"]
    handed = [line for line in done.stderr.splitlines() if line.startswith("postgresql://")]
    assert len(handed) == 1 and handed[0] not in done.stdout
    assert "no backup of the bot" in body["summary"]  # none was taken: soundness only, and said so


def test_restore_at_from_render_in_slack_needs_an_approval_and_hands_the_connection_to_the_requester(
        bot_factory, fake_slack, render, demo_db, fresh_db, tmp_path):
    source = render.add_instance("asidenote-db", window=timedelta(days=3))
    (tmp_path / "dbops.toml").write_text("[render]\npoll_first_s = 0.2\npoll_max_s = 0.5\n")
    bot = bot_factory(demo_db, DBOPS_STATE_URL=fresh_db, DBOPS_APPROVERS=f"{BOSS},{ALICE}", RENDER_API_KEY=KEY,
                      RENDER_API_URL=render.url, RENDER_POSTGRES_ID=source["id"])
    at = (now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert bot.command(f"restore --at '{at}' --from render", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the restore request", timeout=60)
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) == 2
                                and fake_slack.calls_to("reactions.add"), what="the hint reactions")
    assert render.requests_to("POST", "/postgres/{postgresId}/recovery") == []  # nothing before the approval
    react(bot, ALICE, hints[0].params["timestamp"])
    fake_slack.wait_for(lambda: request_status(fresh_db, "r001") in ("applied", "failed"), what="the restore",
                        timeout=240)
    assert request_status(fresh_db, "r001") == "applied", bot.output()[-3000:]
    [handed] = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                            if "postgresql://" in c.params["text"]], what="the connection string")
    assert handed.params["user"] == BOSS  # the requester, not the approver
    dsn = handed.params["text"].split("\n")[-1]
    password = psycopg.conninfo.conninfo_to_dict(dsn)["password"]
    assert password not in " ".join(c.raw or "" for c in fake_slack.calls if c is not handed)
    assert password not in bot.output()
