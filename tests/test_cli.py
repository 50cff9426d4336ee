"""`dbops` from a terminal: exit codes, messages, formats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dbops(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    base |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env"}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=cwd or ROOT, timeout=120)


def test_help_lists_every_command_and_the_exit_codes():
    done = dbops("--help")
    assert done.returncode == 0
    assert "dbops status" in done.stdout and "dbops demo" in done.stdout
    assert "3 approval required" in done.stdout


def test_unknown_subcommand_exits_2_naming_the_closest_match():
    done = dbops("stauts")
    assert done.returncode == 2
    assert "Did you mean status?" in done.stderr


def test_bad_option_is_a_usage_error_not_a_traceback(fresh_db):
    done = dbops("status", "--frobnicate", env={"DATABASE_URL": fresh_db})
    assert done.returncode == 2
    assert "unrecognized arguments: --frobnicate" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_database_url_names_the_setting():
    done = dbops("status")
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in done.stderr


def test_status_json_on_a_reachable_target(fresh_db):
    done = dbops("status", "--format", "json", env={"DATABASE_URL": fresh_db})
    assert done.returncode == 1, done.stderr  # reachable, but no backup and no drill yet
    body = json.loads(done.stdout)
    assert body["outcome"] == "failed" and body["summary"] == "2 problems"  # no backup, no drill
    assert body["targets"] == [{"name": "prod", "reachable": True, "detail": body["targets"][0]["detail"]}]


def test_unreachable_target_fails_with_exit_1_and_no_secret(fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.staging]\nurl_env = "STAGING_URL"\n')
    done = dbops("status", env={"DATABASE_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
                                "STAGING_URL": "postgresql://ops:hunter2hunter2@127.0.0.1:9/asidenote"})
    assert done.returncode == 1
    assert "staging" in done.stdout and "connection refused" in done.stdout
    assert "hunter2hunter2" not in done.stdout + done.stderr


def test_malformed_setting_is_named(fresh_db):
    done = dbops("status", env={"DATABASE_URL": fresh_db, "DBOPS_APPROVERS": "alice,bob"})
    assert done.returncode == 2
    assert "DBOPS_APPROVERS has 'alice'" in done.stderr


def test_an_empty_list_names_the_command_to_run_next(fresh_db):
    env = {"DATABASE_URL": fresh_db}
    backups = dbops("backup", "list", "--target", "prod", env=env)
    assert backups.returncode == 0, backups.stderr
    assert "No backups of prod yet. Take one: dbops backup" in backups.stdout
    drills = dbops("drill", "history", env=env)
    assert drills.returncode == 0, drills.stderr
    assert "No restore drill has run on prod yet. Run one: dbops drill" in drills.stdout


def test_in_slack_the_empty_lists_name_the_slash_command(fresh_db, tmp_path):
    from bot.areas import AREAS
    from bot.core.config import load_settings
    from bot.core.registry import Invocation, Registry
    from bot.core.state.store import StateStore

    registry = Registry(AREAS)
    settings = load_settings({"DATABASE_URL": fresh_db, "DBOPS_BACKUP_DIR": str(tmp_path)}, read_dotenv=False,
                             checks=registry.settings_checks)
    store = StateStore(fresh_db, max_size=2)
    try:
        said = {}
        for words in ("backup list --target prod", "drill history", "migrate status", "readonly list"):
            cmd, args = registry.parse(words, "slack", prog="/db")
            inv = Invocation(command=cmd, args=args, settings=settings, actor="U0ALICE", registry=registry,
                             store=store, front_end="slack")
            said[words] = cmd.run(inv).summary
    finally:
        store.close()
    assert said == {"backup list --target prod": "No backups of prod yet. Take one: `/db backup`",
                    "drill history": "No restore drill has run on prod yet. Run one: `/db drill`",
                    "migrate status": "No migration requests yet. Ask for one: `/db migrate request`",
                    "readonly list": "No read-only roles managed by dbops yet. Ask for one: `/db readonly create NAME`"}
