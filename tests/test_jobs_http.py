"""Long jobs through the real bot: the 3-second rule, one job per (target, kind), progress in place,
and a job whose process was killed. A lock held on "Notes" keeps a real backup waiting, as a long
migration would."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest


@pytest.fixture
def notes_locked(demo_db):
    """Holds ACCESS EXCLUSIVE on "Notes" until released: pg_dump waits behind it."""
    conn = psycopg.connect(demo_db)
    conn.execute('LOCK TABLE "Notes" IN ACCESS EXCLUSIVE MODE')
    released = threading.Event()

    def release():
        if not released.is_set():
            conn.rollback()
            conn.close()
            released.set()

    yield release
    release()


def jobs(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, kind, status, requested_by, summary FROM dbops.jobs ORDER BY id").fetchall()


def test_commands_are_acknowledged_within_3s_while_a_long_job_runs(bot_factory, fake_slack, demo_db, notes_locked):
    bot = bot_factory(demo_db)
    started = time.monotonic()
    answer = bot.command("backup")
    assert time.monotonic() - started < 3
    assert "queued `backup`" in answer.text
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                 if "started by" in c.params["text"]],
                        what="the job's progress message")
    for text in ("status", "backup list", "help"):
        t0 = time.monotonic()
        assert bot.command(text).status_code == 200
        assert time.monotonic() - t0 < 3, text
    assert [j[2] for j in jobs(demo_db)] == ["running"]
    notes_locked()
    final = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.update")
                                         if "Backup b001 of prod" in c.params["text"]], what="final update", timeout=60)
    progress_ts = [c for c in fake_slack.calls_to("chat.postMessage") if "started by" in c.params["text"]][0]
    assert final[0].params["ts"] == fake_slack.calls_to("chat.postMessage")[0].params.get("ts", final[0].params["ts"])
    assert [j[2] for j in jobs(demo_db)] == ["succeeded"]
    assert progress_ts.params["channel"] == "C0OPS"


def test_a_second_request_for_the_same_job_is_told_who_runs_it(bot_factory, fake_slack, demo_db, notes_locked):
    bot = bot_factory(demo_db)
    answers = []
    barrier = threading.Barrier(2)

    def ask(user):
        barrier.wait()
        answers.append(bot.command("backup", user=user))

    threads = [threading.Thread(target=ask, args=(u,)) for u in ("U0ALICE", "U0BOB")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 200 for a in answers)
    busy = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                        if "already running" in c.params["text"]], what="busy note")
    assert len(busy) == 1
    running = [j for j in jobs(demo_db) if j[2] == "running"]
    assert len(running) == 1
    winner = running[0][3]
    assert busy[0].params["user"] != winner and f"<@{winner}>" in busy[0].params["text"]
    notes_locked()
    fake_slack.wait_for(lambda: [j for j in jobs(demo_db) if j[2] == "succeeded"], what="job done", timeout=60)


def test_a_job_left_running_by_a_killed_bot_is_marked_failed_and_reported(bot_factory, fake_slack, demo_db,
                                                                          notes_locked, tmp_path):
    bot = bot_factory(demo_db)
    bot.command("backup")
    fake_slack.wait_for(lambda: [j for j in jobs(demo_db) if j[2] == "running"], what="running job")
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                 if "started by" in c.params["text"]],
                        what="progress message")
    bot.kill()
    notes_locked()
    assert [j[2] for j in jobs(demo_db)] == ["running"]  # nobody was left to say otherwise
    again = bot_factory(demo_db)
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.update") if "interrupted" in c.params["text"]],
                        what="interrupted notice", timeout=90)
    (job,) = jobs(demo_db)
    assert job[2] == "failed" and "interrupted" in job[4]
    with psycopg.connect(demo_db) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM dbops.backups").fetchall()]
    assert "completed" not in statuses
    assert not list((tmp_path / "backups").glob("*.dump"))  # no file that looks complete
    assert again.command("backup").status_code == 200  # and the lock is free again
    fake_slack.wait_for(lambda: [j for j in jobs(demo_db) if j[2] == "succeeded"], what="new backup", timeout=60)
