"""The rehearsal is a sandbox, seen from the front ends: a migration that tries to run a program on
the host and post the bot's environment fails with a permission error, runs nothing, and no output,
Slack message, log line, job record or approval record holds a secret of the bot or its base64."""
from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import psycopg
import pytest

from handlers.target import dsn_secrets
from tests.fakes.bot_process import BOT_TOKEN, SIGNING_SECRET
from tests.test_migrations_e2e import dbops, prod, request_message, submit_form  # noqa: F401 (prod: a fixture)


def hostile_up(marker: Path) -> str:
    return (f"CREATE TABLE leak (x text);\n"
            f"COPY leak FROM PROGRAM 'touch {marker}; env | base64 -w0';\n"
            "DO $$BEGIN RAISE EXCEPTION '%', (SELECT string_agg(x, '') FROM leak); END$$;\n")


def spellings(secret: str) -> list[str]:
    """The secret as is, and the part of its base64 that any encoding of it contains, at each of
    the three alignments it can have inside a longer base64 text."""
    raw = secret.encode()
    found = [secret]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = -(-offset * 4 // 3) + 1  # past the characters that mix in the bytes before it
        core = encoded[start:-4]
        if len(core) >= 8:
            found.append(core)
    return found


@pytest.fixture
def bot_secrets(prod) -> dict[str, str]:
    return {"DBOPS_BACKUP_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "DBOPS_S3_SECRET_ACCESS_KEY": "s3-" + secrets.token_hex(16),
            "AWS_SECRET_ACCESS_KEY": "aws-" + secrets.token_hex(16)}


def every_secret(bot_secrets: dict[str, str], dsn: str) -> list[str]:
    return [*bot_secrets.values(), *dsn_secrets(dsn), BOT_TOKEN, SIGNING_SECRET]


def state_text(dsn: str) -> str:
    """Everything the bot recorded: jobs, audit log, approval requests (payload and analysis), ledger."""
    with psycopg.connect(dsn) as conn:
        rows = [conn.execute(f"SELECT row_to_json(t)::text FROM dbops.{table} t").fetchall()
                for table in ("jobs", "audit_log", "approval_requests", "migration_ledger")]
    return "\n".join(r[0] for table in rows for r in table)


def assert_no_secret(texts: list[str], secrets_: list[str]) -> None:
    for text in texts:
        for secret in secrets_:
            for spelled in spellings(secret):
                assert spelled not in text, "a secret (or its base64) reached the output"


def test_copy_from_program_in_a_terminal_request_fails_and_leaks_nothing(prod, tmp_path, bot_secrets, monkeypatch):
    marker = tmp_path / "program-ran"
    (tmp_path / "up.sql").write_text(hostile_up(marker))
    (tmp_path / "down.sql").write_text("DROP TABLE leak;\n")
    for key, value in bot_secrets.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    done = dbops("migrate", "request", str(tmp_path / "up.sql"), "--down", str(tmp_path / "down.sql"),
                 "--name", "leak", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "42501" in done.stdout and "insufficient_privilege" in done.stdout
    assert not marker.exists()  # the program never ran
    assert_no_secret([done.stdout, done.stderr, state_text(prod)], every_secret(bot_secrets, prod))


def test_copy_from_program_in_a_slack_request_fails_and_leaks_nothing(bot_factory, fake_slack, prod, tmp_path,
                                                                       bot_secrets):
    marker = tmp_path / "program-ran"
    bot = bot_factory(prod, **bot_secrets)
    submit_form(bot, "U0ALICE", hostile_up(marker), "DROP TABLE leak;\n", "leak")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the request", timeout=120)
    message = json.dumps(posted[0].params)
    assert "42501" in message and "insufficient_privilege" in message
    assert not marker.exists()
    bot.stop()
    assert_no_secret(fake_slack.raw_bodies() + [bot.output(), state_text(prod)], every_secret(bot_secrets, prod))
