"""Stopping running work: `backup cancel`, `drill cancel`, `job cancel N`, in Slack (the job stops at
once in the bot that runs it) and from another process (its heartbeat reads the request). What the
job made goes, its rows say `cancelled`, the channel is told; a job that cannot stop cleanly is not
asked to. A lock held on "Notes" keeps a real pg_dump waiting; the fake Render never finishes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bot.core.state.store import StateStore
from tests.fakes.render_api import FakeRender
from tests.test_backup_partial_mode import wait_for
from tests.test_jobs_http import jobs, notes_locked

ROOT = Path(__file__).resolve().parents[1]
KEY = "rnd_CancelK3yNeverShown"


def backups(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, status, error FROM dbops.backups ORDER BY id").fetchall()


def pg_dump_waiting(dsn: str) -> bool:
    """pg_dump has started and waits for the lock on "Notes": the backup is in the middle of its dump."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                            " AND wait_event_type = 'Lock'").fetchone()[0] > 0


def every_file(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_backup_cancel_in_slack_leaves_no_partial_file_and_a_cancelled_row(bot_factory, fake_slack, demo_db,
                                                                         notes_locked, tmp_path):
    bot = bot_factory(demo_db)
    assert "queued `backup`" in bot.command("backup", user="U0ALICE").text
    wait_for(lambda: pg_dump_waiting(demo_db), what="pg_dump waiting behind the lock")
    assert any(p.name.endswith(".partial") for p in (tmp_path / "backups").iterdir())  # a dump under way
    [(job_id, _, status, _, _)] = jobs(demo_db)
    assert status == "running"

    refused = bot.command(f"job cancel {job_id}", user="U0CAROL")  # neither its requester nor an approver
    fake_slack.wait_for(lambda: [t for t in fake_slack.texts("chat.postEphemeral") if "only they or an approver"
                                 in t], what="the refusal")
    assert refused.status_code == 200 and jobs(demo_db)[0][2] == "running"

    bot.command("backup cancel", user="U0ALICE")  # its requester may
    told = fake_slack.wait_for(lambda: [t for t in fake_slack.texts() if "cancelled; nothing was kept" in t],
                               what="the channel told the backup was cancelled")
    assert "stopped at the request of &lt;@U0ALICE&gt;" in told[0]  # the channel's copy keeps no mention
    assert any(f"Asked job #{job_id}" in t for t in fake_slack.texts("chat.postMessage"))
    wait_for(lambda: jobs(demo_db)[0][2] != "running", what="the job's end")
    [(_, kind, status, _, summary)] = jobs(demo_db)
    assert (kind, status) == ("backup", "cancelled") and "<@U0ALICE>" in summary
    [(backup_id, status, error)] = backups(demo_db)
    assert status == "cancelled" and "cancelled" in error
    assert every_file(tmp_path / "backups") == []  # the partial dump is gone
    assert not pg_dump_waiting(demo_db)
    notes_locked()
    listed = bot.command("backup list")  # and a cancelled backup is not a failure to alarm about
    assert listed.status_code == 200


def cli(*args: str, env: dict[str, str], **kw) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "RENDER_"))}
    return subprocess.Popen([sys.executable, "-m", "bot.frontends.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**base, "PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env",
                                 "DBOPS_JOB_HEARTBEAT_S": "1", **env}, **kw)


def test_job_cancel_from_another_process_stops_a_terminal_backup(demo_db, notes_locked, tmp_path):
    env = {"DATABASE_URL": demo_db, "DBOPS_BACKUP_DIR": str(tmp_path / "backups"),
           "DBOPS_CONFIG": str(tmp_path / "dbops.toml")}
    (tmp_path / "dbops.toml").touch()
    running = cli("backup", env=env)
    try:
        wait_for(lambda: pg_dump_waiting(demo_db), what="pg_dump waiting behind the lock")
        [(job_id, *_)] = jobs(demo_db)
        asked = cli("job", "cancel", f"#{job_id}", "--format", "json", env=env)
        out, err = asked.communicate(timeout=60)
        assert asked.returncode == 0, err
        assert json.loads(out)["stopped_here"] is False  # another process: its heartbeat reads the request
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 1
    assert "cancelled; nothing was kept (stopped at the request of cli:" in " ".join(err.split())
    assert [j[2] for j in jobs(demo_db)] == ["cancelled"]
    assert [b[1] for b in backups(demo_db)] == ["cancelled"]
    assert every_file(tmp_path / "backups") == []


def test_a_job_that_cannot_stop_cleanly_is_not_asked_and_a_finished_one_says_so(fresh_db, tmp_path):
    store = StateStore(fresh_db, max_size=2)
    try:
        lock, job = store.start_job("prod", "backup", "backup verify b001", "cli:ops", None)
        env = {"DATABASE_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml")}
        (tmp_path / "dbops.toml").touch()
        asked = cli("job", "cancel", str(job.id), "--format", "json", env=env)
        out, _ = asked.communicate(timeout=60)
        assert asked.returncode == 2
        assert "cannot be cancelled: only backups and drills stop cleanly half-way" in json.loads(out)["error"]
        assert store.job(job.id).cancel_requested_by is None
        asked = cli("backup", "cancel", "--format", "json", env=env)  # the running backup job is a verify
        out, _ = asked.communicate(timeout=60)
        assert asked.returncode == 2 and "cannot be cancelled" in json.loads(out)["error"]
        store.finish_job(job.id, "succeeded", "verified")
        lock.release()
        asked = cli("job", "cancel", str(job.id), "--format", "json", env=env)
        out, _ = asked.communicate(timeout=60)
        assert asked.returncode == 2 and "is not running: it succeeded" in json.loads(out)["error"]
        asked = cli("drill", "cancel", "--format", "json", env=env)
        out, _ = asked.communicate(timeout=60)
        assert asked.returncode == 2 and "no drill job is running on prod;" in json.loads(out)["error"]
    finally:
        store.close()


@pytest.fixture
def render():
    server = FakeRender(KEY).start()
    yield server
    server.stop()
    assert server.schema_errors == []


def test_drill_cancel_stops_a_render_drill_and_its_instance_is_deleted(render, demo_db, tmp_path):
    source = render.add_instance("asidenote-db", window=timedelta(days=3))
    render.available_after_polls = None  # Render never finishes restoring: the drill waits until told
    (tmp_path / "dbops.toml").write_text("[render]\npoll_first_s = 0.2\npoll_max_s = 0.5\n")
    env = {"DATABASE_URL": demo_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"), "RENDER_API_KEY": KEY,
           "RENDER_API_URL": render.url, "RENDER_POSTGRES_ID": source["id"]}
    running = cli("render", "drill", env=env)
    try:
        wait_for(lambda: len(render.requests_to("GET", "/postgres/{postgresId}")) >= 3, what="the wait for Render")
        recovery = [i for i in render.instances.values() if i["name"].startswith("dbops-drill-")]
        assert len(recovery) == 1
        asked = cli("drill", "cancel", env=env)
        _, err = asked.communicate(timeout=60)
        assert asked.returncode == 0, err
        out, err = running.communicate(timeout=120)
    finally:
        running.kill()
    assert [i["name"] for i in render.instances.values()] == ["asidenote-db"]  # the billed instance is gone
    assert render.requests_to("DELETE", "/postgres/{postgresId}")
    assert "cancelled" in out.lower() and "stopped at the request of cli:" in " ".join(out.split())
    assert [j[2] for j in jobs(demo_db)] == ["cancelled"]
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT passed FROM dbops.drills").fetchall() == [(False,)]
    assert KEY not in out + err
