"""`/db restore` in Slack: an approver asks, another approver's reaction lets it run, the bot
restores into the configured target, proves it and reports in the thread."""
from __future__ import annotations

import psycopg

from tests.test_migrations_e2e import (
    ALICE,
    BOSS,
    dbops,
    react,
    request_message,
    request_status,
    thread_texts,
    wait_for_states,
)

EVE = "U0EVE"


def rows(dsn: str, table: str = "Notes") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_a_restore_asked_in_slack_runs_only_after_another_approver_reacts(bot_factory, fake_slack, demo_db,
                                                                          fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    taken = dbops("backup", dsn=demo_db, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\n')
    bot = bot_factory(demo_db, RECOVERY_URL=fresh_db, DBOPS_APPROVERS=f"{BOSS},{ALICE}")

    assert "approvers only" in bot.command("restore latest --into recovery", user=EVE).text
    assert bot.command("restore latest --into recovery", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the restore request", timeout=60)
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) == 2
                                and fake_slack.calls_to("reactions.add"), what="the hint reactions")
    ts = hints[0].params["timestamp"]

    react(bot, BOSS, ts)  # the requester cannot approve their own restore
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral") if c.params["user"] == BOSS],
                        what="the note to the requester")
    assert request_status(demo_db, "r001") == "pending"
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('public.\"Notes\"')").fetchone()[0] is None

    react(bot, ALICE, ts)
    fake_slack.wait_for(lambda: request_status(demo_db, "r001") in ("applied", "failed"), what="the restore",
                        timeout=180)
    assert request_status(demo_db, "r001") == "applied"
    assert rows(fresh_db) == rows(demo_db)
    wait_for_states(fake_slack, ts, "approved", "applying", "applied")  # the request message, changed in place
    thread = thread_texts(fake_slack, ts)
    assert f"✓ <@{ALICE}> approved (1 of 1): applying now" in thread
    assert any("applied" in t for t in thread)
