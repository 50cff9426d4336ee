"""Day one on Render, as a new user meets it: the state store the real web process uses, the folders
it makes at start, connection errors that name the host and the variable actually set, Socket Mode
failing in one line, no Bolt warning at start, and a restore target that status expects nothing of."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from tests.fakes.bot_process import BOT_TOKEN, SIGNING_SECRET
from tests.test_cli import dbops

ROOT = Path(__file__).resolve().parents[1]


def has_state_schema(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'dbops')").fetchone()[0]


def test_the_web_process_keeps_its_state_in_dbops_state_url_and_makes_its_folders(bot_factory, demo_db, fresh_db,
                                                                                  tmp_path):
    tmpdir, backups = tmp_path / "disk" / "tmp", tmp_path / "disk" / "backups"
    bot = bot_factory(demo_db, DBOPS_STATE_URL=fresh_db, TMPDIR=str(tmpdir), DBOPS_BACKUP_DIR=str(backups))
    health = httpx.get(bot.url + "/healthz", timeout=10).json()
    assert health["state_database"] is True and health["warnings"] == []
    assert has_state_schema(fresh_db) and not has_state_schema(demo_db)  # production holds none of the bot's state
    assert tmpdir.is_dir() and backups.is_dir()  # made at start, before anything wrote to them
    assert "will be unused" not in bot.output()  # Bolt's warning about our own client and its token


def test_with_only_database_url_the_state_is_in_production_and_health_says_so(bot_factory, fresh_db):
    bot = bot_factory(fresh_db)
    health = httpx.get(bot.url + "/healthz", timeout=10).json()
    assert has_state_schema(fresh_db)
    [warning] = health["warnings"]
    assert "same database as target `prod`" in warning and "DBOPS_STATE_URL" in warning


def test_an_unreachable_state_database_names_its_host_and_the_variable_that_was_set(tmp_path):
    prod = "postgresql://ops:hunter2secret@127.0.0.1:9/asidenote"
    (tmp_path / "dbops.toml").touch()
    base = {"DATABASE_URL": prod, "DBOPS_CONFIG": str(tmp_path / "dbops.toml")}
    done = dbops("drill", "history", "--format", "json", env=base)
    message = json.loads(done.stdout)["error"]
    assert "the state database (DATABASE_URL, as DBOPS_STATE_URL is not set: 127.0.0.1:9/asidenote)" in message
    assert "connection refused" in message and "hunter2secret" not in done.stdout + done.stderr
    done = dbops("drill", "history", "--format", "json",
                 env={**base, "DBOPS_STATE_URL": prod.replace("/asidenote", "/ops")})
    message = json.loads(done.stdout)["error"]
    assert "the state database (DBOPS_STATE_URL: 127.0.0.1:9/ops) is unreachable: connection refused" in message
    assert "DATABASE_URL" not in message


def test_an_unreachable_target_is_named_with_its_host(fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.staging]\nurl_env = "STAGING_URL"\n')
    done = dbops("status", "--format", "json", env={
        "DATABASE_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
        "STAGING_URL": "postgresql://ops:hunter2hunter2@127.0.0.1:9/asidenote"})
    problems = json.loads(done.stdout)["problems"]
    assert "target `staging` (127.0.0.1:9/asidenote) is unreachable: connection refused" in problems
    assert "hunter2hunter2" not in done.stdout + done.stderr


def test_tmpdir_is_made_by_a_terminal_command_too(fresh_db, tmp_path):
    tmpdir = tmp_path / "var" / "tmp"
    done = dbops("backup", "schedule", env={"DATABASE_URL": fresh_db, "TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    assert tmpdir.is_dir()
    (tmp_path / "a-file").write_text("")  # no folder can be made in it, even by root
    bad = str(tmp_path / "a-file" / "tmp")
    # A terminal command (Render's build runs `dbops pg install` before the disk is mounted) goes on, saying so.
    done = dbops("backup", "schedule", env={"DATABASE_URL": fresh_db, "TMPDIR": bad})
    assert done.returncode == 0 and f"warning: TMPDIR is {bad}, which cannot be created (Not a directory)" in \
        " ".join(done.stderr.split())


def test_the_bot_does_not_start_when_tmpdir_cannot_be_made(fresh_db, tmp_path):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "none.toml").touch()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DATABASE_URL": fresh_db, "SLACK_BOT_TOKEN": BOT_TOKEN,
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "DBOPS_ALLOWED_CHANNELS": "C0OPS",
           "DBOPS_DOTENV": str(tmp_path / ".env"), "DBOPS_CONFIG": str(tmp_path / "none.toml"),
           "TMPDIR": str(tmp_path / "a-file" / "tmp")}
    done = subprocess.run([sys.executable, "-m", "bot"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"dbops: TMPDIR is {tmp_path}/a-file/tmp, which cannot be created (Not a "
                                   "directory): point it at a writable folder (on Render: under the disk's "
                                   "mountPath, /var/dbops)")


def test_a_restore_target_is_listed_but_no_backup_or_drill_is_expected_of_it(fresh_db, pg_server, tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\nrole = "restore-target"\n')
    done = dbops("status", "--format", "json", env={"DATABASE_URL": fresh_db, "RECOVERY_URL": pg_server.dsn(),
                                                   "DBOPS_CONFIG": str(tmp_path / "dbops.toml")})
    body = json.loads(done.stdout)
    assert [t["name"] for t in body["targets"]] == ["prod", "recovery"]
    assert {c["target"] for c in body["checks"]} == {"prod", None}  # nothing asked of `recovery`
    assert body["summary"] == "2 problems"  # prod's: no backup, no drill; none of recovery's
    assert not [p for p in body["problems"] if "recovery" in p]


def test_socket_mode_that_slack_refuses_is_one_clear_line(fake_slack, fresh_db, tmp_path):
    (tmp_path / "none.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "SLACK_", "DATABASE_URL"))}
    env |= {"PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_APP_TOKEN": "xapp-1-A0-revoked0secret", "SLACK_API_URL": fake_slack.url, "DATABASE_URL": fresh_db,
            "DBOPS_ALLOWED_CHANNELS": "C0OPS", "DBOPS_DOTENV": str(tmp_path / ".env"),
            "DBOPS_CONFIG": str(tmp_path / "none.toml"), "DBOPS_BACKUP_DIR": str(tmp_path / "backups")}
    done = subprocess.run([sys.executable, "-m", "bot", "--mode", "socket"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("dbops: Socket Mode could not connect: Slack answered invalid_auth; check "
                               "SLACK_APP_TOKEN")
    assert "revoked0secret" not in lines[0] and "Traceback" not in done.stderr
    assert fake_slack.calls_to("apps.connections.open", ok_only=False)
