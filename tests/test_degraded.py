"""Production is gone, and the state store with it: the bot still starts, degraded. It answers
/db status, /db backup list (from the backup storage) and /db restore (its approvals recorded on a
stand-in for the state database); /healthz
stays 200 ("degraded"), because the bot is doing its job."""
from __future__ import annotations

import json

import httpx

from handlers import demo_data
from handlers.postgres import TemporaryInstance
from tests.test_cli import dbops


def test_the_bot_starts_degraded_and_answers_from_storage(bot_factory, fake_slack, tmp_path):
    prod = TemporaryInstance(purpose="test-prod").start()
    try:
        dsn = prod.dsn()
        env = {"DATABASE_URL": dsn, "DBOPS_BACKUP_DIR": str(tmp_path / "backups"),
               "DBOPS_CONFIG": str(tmp_path / "none.toml")}
        (tmp_path / "none.toml").write_text("")
        taken = dbops("backup", env=env)
        assert taken.returncode == 0, taken.stderr
    finally:
        prod.stop()  # production, and the state store on it, are gone

    bot = bot_factory(dsn)
    health = httpx.get(bot.url + "/healthz", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and body["state_database"] is False
    assert any("unreachable" in w for w in body["warnings"])
    assert any("same database as target" in w for w in body["warnings"])

    assert bot.command("status").status_code == 200
    shown = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                         if "dbops status" in json.dumps(c.params)], what="status")
    assert "state database is unreachable" in json.dumps(shown[0].params)

    assert bot.command("backup list").status_code == 200
    listed = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                          if "b001" in json.dumps(c.params)], what="the backup list")
    assert "from" in json.dumps(listed[0].params) and "storage" in json.dumps(listed[0].params)

    refused = bot.command("indexes")
    assert "state database is unreachable" in refused.text and "`/db backup list`" in refused.text
    assert "queued `restore`" in bot.command("restore latest --into prod", user="U0BOSS").text
    assert "Traceback" not in bot.output()


def test_with_the_state_database_down_a_restore_is_approved_in_slack_on_a_stand_in(
        bot_factory, fake_slack, pg_server, demo_db, fresh_db, tmp_path):
    """The votes are counted by the same SQL as always, on a throwaway local server; once the state
    database answers, what is still pending there is void and the audit trail moves over."""
    import os

    import psycopg

    from tests.test_migrations_e2e import ALICE, BOSS, react, request_message
    from tests.test_migrations_e2e import dbops as dbops_in
    from tests.test_restore_slack import EVE, rows

    (tmp_path / "dbops.toml").write_text("")
    assert dbops_in("backup", dsn=demo_db, cwd=tmp_path).returncode == 0
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\n')
    state_name = f"state_later_{os.getpid()}"
    state_dsn = pg_server.dsn(state_name)  # a database not created yet: unreachable
    bot = bot_factory(demo_db, DBOPS_STATE_URL=state_dsn, RECOVERY_URL=fresh_db, DBOPS_APPROVERS=f"{BOSS},{ALICE}")
    assert httpx.get(bot.url + "/healthz", timeout=10).json()["state_database"] is False

    assert "approvers only" in bot.command("restore latest --into recovery", user=EVE).text
    assert bot.command("restore latest --into recovery", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r9001"), what="the request", timeout=60)
    hints = lambda n: len(fake_slack.calls_to("reactions.add")) == n and fake_slack.calls_to("reactions.add")  # noqa: E731
    ts = fake_slack.wait_for(lambda: hints(2), what="the hint reactions")[0].params["timestamp"]

    react(bot, BOSS, ts)  # the requester cannot approve their own restore, stand-in or not
    react(bot, EVE, ts)  # nor can someone who is not an approver
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral") if c.params["user"] == BOSS],
                        what="the note to the requester")
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('public.\"Notes\"')").fetchone()[0] is None

    react(bot, ALICE, ts)
    thread = lambda: [c.params["text"] for c in fake_slack.calls_to("chat.postMessage")  # noqa: E731
                      if c.params.get("thread_ts") == ts]
    fake_slack.wait_for(lambda: any("`r9001` applied" in t or "`r9001` failed" in t for t in thread()),
                        what="the restore's outcome", timeout=180)
    assert any("`r9001` applied" in t for t in thread()), thread()
    assert rows(fresh_db) == rows(demo_db)
    assert not any(EVE in t for t in thread())

    assert bot.command("restore latest --into recovery --overwrite", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r9002"), what="the second request", timeout=60)
    ts2 = fake_slack.wait_for(lambda: hints(4), what="its hint reactions")[2].params["timestamp"]

    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:  # the state database is back
        conn.execute(f'CREATE DATABASE "{state_name}"')
    try:
        fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                     if c.params.get("thread_ts") == ts2 and "void" in c.params["text"]],
                            what="the pending request made void", timeout=60)
        fake_slack.wait_for(lambda: httpx.get(bot.url + "/healthz", timeout=10).json()["state_database"],
                            what="the state database in use")
        with psycopg.connect(state_dsn) as conn:
            audited = {(r[0], r[1]) for r in conn.execute(
                "SELECT subcommand, action FROM dbops.audit_log WHERE subcommand LIKE 'restore r900%'")}
        assert {("restore r9001", "request"), ("restore r9001", "approve"), ("restore r9001", "apply"),
                ("restore r9002", "expire")} <= audited, audited
        assert "Traceback" not in bot.output()
    finally:
        bot.stop()
        demo_data.drop_database(pg_server.dsn(), state_name)
