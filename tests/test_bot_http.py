"""The bot through its real HTTP endpoint, with signed requests, against a fake Slack."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import psycopg

from tests.fakes.bot_process import ROOT, sign


def audit(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT actor, action, subcommand, outcome FROM dbops.audit_log ORDER BY id").fetchall()


def test_requests_without_a_valid_signature_are_rejected_and_run_nothing(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    body = "command=/db&text=status&user_id=U0ALICE&channel_id=C0OPS"
    form = "application/x-www-form-urlencoded"
    stale = sign(body, timestamp=int(time.time()) - 6 * 60)
    wrong = sign(body, secret="not-the-secret")
    for headers in ({}, wrong, stale,
                    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"}):
        assert bot.post_signed(body, form, headers=headers).status_code == 401
    time.sleep(0.5)
    assert fake_slack.calls_to("chat.postMessage") == []
    assert [a for a in audit(fresh_db) if a[1] == "command"] == []


def test_help_lists_commands_from_the_registry(bot_factory, fresh_db):
    bot = bot_factory(fresh_db)
    answer = bot.command("help")
    assert answer.status_code == 200
    text = json.dumps(answer.json())
    assert "/db status" in text and "/db help" in text


def test_unknown_subcommand_names_the_closest_match(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    answer = bot.command("stauts")
    assert answer.status_code == 200
    assert "unknown subcommand `stauts`" in answer.text and "Did you mean `status`?" in answer.text
    assert fake_slack.calls_to("chat.postMessage") == []
    fake_slack.wait_for(lambda: ("U0ALICE", "command", "stauts", "usage-error") in audit(fresh_db),
                        what="the usage error in the audit log")


def test_status_is_acknowledged_then_posted_to_the_channel(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    answer = bot.command("status")
    assert answer.status_code == 200
    posted = fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postMessage"), what="status report")
    assert posted[0].params["channel"] == "C0OPS"
    assert "dbops status" in posted[0].params["text"]
    assert "no verified backup of `prod` yet" in json.dumps(posted[0].params)
    assert ("U0ALICE", "command", "status", "failed") in audit(fresh_db)  # the missing backup is a problem


def test_a_user_outside_the_allowed_list_is_refused_and_audited(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db, DBOPS_ALLOWED_USERS="U0ALICE")
    answer = bot.command("status", user="U0MALLORY")
    assert answer.status_code == 200 and "not on the list" in answer.text
    refused = fake_slack.wait_for(lambda: [a for a in audit(fresh_db) if a[1] == "refused"], what="audit entry")
    assert refused[0][0] == "U0MALLORY"
    time.sleep(0.3)
    assert fake_slack.calls_to("chat.postMessage") == []


def test_a_channel_outside_the_allowed_list_is_refused(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    answer = bot.command("status", channel="C0RANDOM")
    assert "does not take commands in this channel" in answer.text


def test_slack_429_is_retried_after_retry_after_and_the_message_lands(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    fake_slack.fail_next("chat.postMessage", 429, times=1, retry_after=1)
    bot.command("status")
    fake_slack.wait_for(lambda: fake_slack.calls_to("chat.postMessage"), what="retried post")
    attempts = [c for c in fake_slack.calls_to("chat.postMessage", ok_only=False) if not c.params.get("thread_ts")]
    assert [c.status for c in attempts] == [429, 200]  # the report's main message (its detail follows in the thread)
    assert attempts[1].at - attempts[0].at >= 0.9  # waited for Retry-After


def test_slack_500s_are_retried_and_a_message_that_never_lands_is_logged(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    fake_slack.fail_next("chat.postMessage", 500, times=20)
    bot.command("status")
    fake_slack.wait_for(lambda: len(fake_slack.calls_to("chat.postMessage", ok_only=False)) >= 5,
                        what="retries", timeout=30)
    fake_slack.wait_for(lambda: "chat.postMessage failed" in bot.output(), what="log line", timeout=30)
    assert ("U0ALICE", "command", "status", "failed") in audit(fresh_db)  # the command itself still recorded


def test_healthz_reports_version_state_and_targets(bot_factory, fresh_db):
    bot = bot_factory(fresh_db)
    answer = httpx.get(bot.url + "/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["state_database"] is True and body["targets"] == {"prod": True} and body["version"]


def test_healthz_stays_200_and_says_degraded_when_a_target_is_unreachable(bot_factory, fresh_db, tmp_path):
    """A target that is down is the bot doing its job; 503 is for a bot that cannot work."""
    (tmp_path / "dbops.toml").write_text('[targets.staging]\nurl_env = "STAGING_URL"\n')
    bot = bot_factory(fresh_db, STAGING_URL="postgresql://nobody:secretpw99@127.0.0.1:9/none")
    answer = httpx.get(bot.url + "/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["targets"] == {"prod": True, "staging": False}
    assert "secretpw99" not in answer.text


def test_missing_setting_stops_the_bot_with_a_message_naming_it(fresh_db, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DATABASE_URL": fresh_db,
           "SLACK_BOT_TOKEN": "xoxb-1", "DBOPS_DOTENV": str(tmp_path / ".env"),
           "DBOPS_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").touch()
    done = subprocess.run([sys.executable, "-m", "bot"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in done.stderr
    assert "Traceback" not in done.stderr
