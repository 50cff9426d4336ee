"""Production is gone, and the state store with it: the bot still starts, degraded. It answers
/db status, /db backup list (from the backup storage) and says what to do for a restore; /healthz
stays 200 ("degraded"), because the bot is doing its job."""
from __future__ import annotations

import json

import httpx

from handlers.pginstance import TemporaryInstance
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
    restore = bot.command("restore latest --into prod", user="U0BOSS")
    assert "dbops restore latest --into" in restore.text
    assert "Traceback" not in bot.output()
