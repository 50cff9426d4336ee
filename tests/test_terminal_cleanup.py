"""A terminal-only setup (no bot, so no start-up) cleans up after a kill: the next `dbops` command
marks the killed job and backup failed and removes the backup's `.partial` files, as the bot's
start-up does. A real `dbops backup` killed with SIGKILL while pg_dump writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bot.core.state import migrate
from tests.fakes.bot_process import ROOT


def dbops_env(dsn: str, state: str, folder: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    (tmp_path / "dbops.toml").touch()
    return env | {"PYTHONPATH": str(ROOT), "DATABASE_URL": dsn, "DBOPS_STATE_URL": state,
                  "DBOPS_DOTENV": "/nonexistent", "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
                  "DBOPS_BACKUP_DIR": str(folder), "DBOPS_JOB_HEARTBEAT_S": "1"}


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial")) if folder.is_dir() else []


def test_the_next_terminal_command_cleans_up_after_a_killed_backup(demo_db, fresh_db, tmp_path):
    migrate.apply(fresh_db)
    folder = tmp_path / "backups"
    env = dbops_env(demo_db, fresh_db, folder, tmp_path)
    killed = subprocess.Popen([sys.executable, "-m", "bot.frontends.cli", "backup"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not partials(folder) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partials(folder), "the backup finished before a partial file was seen"
    os.killpg(killed.pid, signal.SIGKILL)  # as when the machine dies: nothing gets to clean up
    killed.wait()
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT status FROM dbops.backups").fetchall() == [("running",)]
        assert conn.execute("SELECT status FROM dbops.jobs").fetchall() == [("running",)]
    time.sleep(3.5)  # three missed heartbeats of one second: the job's process is taken for dead

    listed = subprocess.run([sys.executable, "-m", "bot.frontends.cli", "backup", "list"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "backup b001 marked failed: interrupted" in listed.stderr
    assert "removed the unfinished file" in listed.stderr and "job #1 backup on prod marked failed" in listed.stderr
    assert partials(folder) == []
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT status FROM dbops.backups").fetchall() == [("failed",)]
        assert conn.execute("SELECT status FROM dbops.jobs ORDER BY id").fetchall()[0] == ("failed",)
