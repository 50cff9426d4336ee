"""User text never writes Slack markup: a migration request's name is letters, digits, `.`, `_`
and `-` (the form says so under its field, the terminal refuses it), and everything a user typed
that the bot echoes (a target, a backup id, an error quoting the command) is escaped by the bot's
one escape, `output.escape`. The real bot over signed HTTP, the fake Slack, a real database."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.fakes.bot_process import ROOT, view_submission

ALICE, BOSS = "U0ALICE", "U0BOSS"
# The name of issue 20 (6): closes the code span, starts a line, pings the channel, forges an approval.
FORGED = "tidy`\n<!channel> :white_check_mark: *Reviewed and approved by <@U0BOSS>*"


def form(name: str) -> str:
    values = {"name": {"value": {"type": "plain_text_input", "value": name}},
              "up": {"value": {"type": "plain_text_input", "value": "COMMENT ON TABLE t IS 'x';"}},
              "down": {"value": {"type": "plain_text_input", "value": "COMMENT ON TABLE t IS NULL;"}},
              "staging": {"value": {"type": "checkboxes", "selected_options": []}}}
    return view_submission(ALICE, "dbops_migrate", json.dumps({"mode": "request", "channel": "C0OPS"}), values)


def requests_recorded(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('dbops.approval_requests')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM dbops.approval_requests").fetchone()[0]


def unescaped_markup(fake_slack) -> list[str]:
    """Every `<!...>` or `<@U0BOSS>` the bot sent anywhere: only the bot's own mentions are allowed."""
    return [m for body in fake_slack.raw_bodies() for m in re.findall(r"<!channel>|<@U0BOSS>\*", body)]


def test_a_forged_name_keeps_the_form_open_and_nothing_is_posted(bot_factory, fake_slack, fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    bot = bot_factory(fresh_db)
    answer = bot.post_signed(form(FORGED), "application/x-www-form-urlencoded")
    assert answer.status_code == 200
    said = answer.json()
    assert said["response_action"] == "errors" and "1 to 64 letters" in said["errors"]["name"]
    assert "channel" not in said["errors"]["name"]  # the name is not echoed back
    time.sleep(2)  # a request, had one been started, would be recorded by now
    assert requests_recorded(fresh_db) == 0 and not fake_slack.calls_to("chat.postMessage")


def test_the_terminal_refuses_the_forged_name_before_anything_runs(fresh_db, tmp_path):
    up = tmp_path / "up.sql"
    up.write_text("COMMENT ON TABLE t IS 'x';\n")
    (tmp_path / "none.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": fresh_db, "DBOPS_DOTENV": "/nonexistent",
            "DBOPS_CONFIG": str(tmp_path / "none.toml"), "DBOPS_BACKUP_DIR": str(tmp_path / "b")}
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", "migrate", "request", str(up), "--name", FORGED],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "1 to 64 letters, digits" in done.stderr and "Traceback" not in done.stderr
    assert requests_recorded(fresh_db) == 0


def test_typed_arguments_echoed_to_slack_are_escaped(bot_factory, fake_slack, fresh_db):
    """A target or a backup id typed in Slack reaches the channel (the job's progress message, a
    restore request) and the errors: as text, never as a `<!channel>` or a mention."""
    bot = bot_factory(fresh_db)
    assert bot.command('backup --target "<!channel>"').status_code == 200
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                 if "unknown target" in c.params["text"]], what="the error")
    assert bot.command('restore "<!channel>" --into prod', user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                 if "give a backup id" in c.params["text"]], what="the restore's refusal")
    assert bot.command("backup verify <@U0BOSS>* --bogus").status_code == 200  # argparse quotes what it read
    time.sleep(1)
    assert unescaped_markup(fake_slack) == []
    assert any("&lt;!channel&gt;" in text for text in fake_slack.texts())
    assert requests_recorded(fresh_db) == 0


def test_output_escape_is_the_only_escape():
    found = [str(path.relative_to(ROOT)) for folder in ("bot", "handlers") for path in (ROOT / folder).rglob("*.py")
             if '"&lt;"' in path.read_text()]
    assert found == ["bot/core/output.py"]
