"""Failures of the PostgreSQL programs, throwaway servers and decryption are DbopsErrors: the bot shows
their message instead of "internal error"; a terminal shows the same message without Slack's markup."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.frontends.cli import error_text
from handlers.backup import crypto
from handlers.errors import DbopsError
from handlers.postgres import pg_tool


def test_missing_postgres_programs_say_where_dbops_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DBOPS_PG_BIN", str(tmp_path))
    with pytest.raises(DbopsError, match="DBOPS_PG_BIN=.* has no pg_dump in it"):
        pg_tool("pg_restore")


def test_a_file_that_is_not_an_encrypted_archive_is_a_shown_error():
    with pytest.raises(DbopsError, match="not a dbops encrypted archive"):
        crypto.decrypt_stream(io.BytesIO(b"PGDMP" + b"\0" * 200), io.BytesIO(), b"k" * 32)


# -- in a terminal: the same messages, without Slack's markup ------------------------------------
ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql://ops@127.0.0.1:9/asidenote"  # refused at once; none of these runs reach it
SLACK_MARKUP = re.compile(r"`|:[a-z_]+:|(?<!\w)\*\S")


def dbops(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env", "DATABASE_URL": UNREACHABLE,
            "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("args, said", [
    (["backup", "list", "--target", "nowhere"], "error: unknown target nowhere; known targets: prod"),
    (["stauts"], "error: unknown subcommand stauts. Did you mean status?"),
    (["status", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["migrate", "check", "/nonexistent/up.sql"], "error: cannot read the UP file /nonexistent/up.sql"),
    (["migrate", "check", "examples/migrations/drop_pinned.up.sql", "--down", "/nonexistent/down.sql"],
     "error: cannot read the DOWN file /nonexistent/down.sql"),
    (["drill", "report", "x7"], "error: "),
])
def test_terminal_errors_carry_no_slack_markup(args, said):
    done = dbops(*args)
    assert done.returncode in (1, 2), done.stderr
    assert said in done.stderr
    assert not SLACK_MARKUP.search(done.stderr), done.stderr
    assert "Traceback" not in done.stderr


def test_a_json_error_is_plain_text_too():
    done = dbops("backup", "list", "--target", "nowhere", "--format", "json")
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"error": "unknown target nowhere; known targets: prod", "exit_code": 2}


def test_error_text_drops_emoji_bold_and_backticks_and_wraps_under_itself():
    text = error_text(":x: *restore refused*: run `dbops backup sync` first, then ask again for the same backup",
                      width=40)
    assert text.splitlines() == ["error: x restore refused: run dbops",
                                 "       backup sync first, then ask again",
                                 "       for the same backup"]
    assert error_text("usage: dbops backup [-h]") == "usage: dbops backup [-h]"
