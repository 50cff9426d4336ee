"""The approval gate fails closed, through the real front ends (signed Slack requests to the bot
process, the fake Slack, the `dbops` command) on a real database.

Nothing is applied without an approval, whatever the analyser found; an unverified terminal
requester needs one approval more; approvers see the full SQL and the SHA-256 that binds UP and
DOWN; a request has one path to the database; destructive commands are approvers-only; a bot open
to everyone does not start; secrets of any spelling never reach Slack."""
from __future__ import annotations

import getpass
import json
import re
import time
from urllib.parse import quote, urlencode

import psycopg
import pytest

from bot.core.approvals.book import migration_sha256, text_sha256
from tests.fakes.bot_process import BotProcess
from tests.test_migrations_e2e import (  # noqa: F401
    BOSS,
    EVE,
    columns,
    dbops,
    prod,
    react,
    request_message,
    request_status,
    submit_form,
)

ALICE = "U0ALICE"
ADD_UP = 'SET lock_timeout = \'5s\';\nALTER TABLE "Notes" ADD COLUMN "Archived" boolean;\n'
ADD_DOWN = 'SET lock_timeout = \'5s\';\nALTER TABLE "Notes" DROP COLUMN "Archived";\n'
DO_UP = "DO $$ BEGIN RAISE NOTICE 'hello'; END $$;\n"
DELETE_UP = 'DELETE FROM "AuditLogs";\n'


def section_text(blocks: list[dict]) -> str:
    """What the section blocks of a message show: their text and their fields."""
    return "\n".join(piece for b in blocks if b.get("type") == "section"
                     for piece in [(b.get("text") or {}).get("text", ""), *(f["text"] for f in b.get("fields", []))])


def row_count(dsn, table):
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def request_row(dsn, code):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT status, required_approvals, requested_by, sha256 FROM dbops.approval_requests"
                            " WHERE id = %s", (int(code[1:]),)).fetchone()


def hint_ts(fake_slack, index=0):
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) >= 2 * (index + 1)
                                and fake_slack.calls_to("reactions.add"), what="the hint reactions")
    return hints[2 * index].params["timestamp"]


def test_a_request_with_only_warnings_waits_for_an_approval_and_shows_its_full_sql(bot_factory, fake_slack, prod):
    bot = bot_factory(prod)
    assert bot.command("migrate request").status_code == 200
    fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), what="the form")
    submit_form(bot, ALICE, ADD_UP, ADD_DOWN, "add-archived")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="request message", timeout=120)
    ts = hint_ts(fake_slack)
    assert request_status(prod, "r001") == "pending" and "Archived" not in columns(prod)
    message = json.dumps(posted[0].params)
    # the full UP and DOWN as the approver reads them, and the full SHA-256 that binds both
    shown = section_text(posted[0].params["blocks"])
    assert "ALTER TABLE \"Notes\" ADD COLUMN \"Archived\" boolean;" in shown
    assert "ALTER TABLE \"Notes\" DROP COLUMN \"Archived\";" in shown
    sha = migration_sha256(ADD_UP, ADD_DOWN)
    assert request_row(prod, "r001")[3] == sha and sha in message
    assert text_sha256(ADD_UP) in message and text_sha256(ADD_DOWN) in message
    assert re.search(r"`[0-9a-f]{64}`", message)

    react(bot, BOSS, ts)
    fake_slack.wait_for(lambda: request_status(prod, "r001") == "applied", what="applied", timeout=120)
    assert "Archived" in columns(prod)
    with psycopg.connect(prod) as conn:
        assert conn.execute("SELECT approvers FROM dbops.migration_ledger").fetchall() == [([BOSS],)]
        # the mark written in the migration's own transaction: what a restart asks the target
        assert conn.execute("SELECT request_id, sha256 FROM dbops.migration_marks").fetchall() == [(1, sha)]


def test_do_block_and_delete_wait_unverified_cli_requester_needs_one_more_and_the_gate_refuses_bot_requests(
        bot_factory, fake_slack, prod, tmp_path):
    (tmp_path / "do.sql").write_text(DO_UP)
    (tmp_path / "delete.sql").write_text(DELETE_UP)
    done = dbops("migrate", "request", "do.sql", "--name", "do-block", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unverified" in done.stdout
    done = dbops("migrate", "request", "delete.sql", "--name", "delete-tags", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    for code in ("r001", "r002"):  # not mapped under [identities]: [approvals] required (1) + 1
        assert request_row(prod, code)[:3] == ("pending", 2, f"cli:{getpass.getuser()}")

    gate = dbops("migrate", "gate", "delete.sql", dsn=prod, cwd=tmp_path)
    assert gate.returncode == 1 and "applied by the bot" in gate.stdout  # one path: the bot's

    tags = row_count(prod, "AuditLogs")
    bot = bot_factory(prod, DBOPS_APPROVERS=f"{BOSS},U0BOSS2")
    fake_slack.wait_for(lambda: request_message(fake_slack, "r002"), what="both posted", timeout=60)
    for code in ("r001", "r002"):
        text = json.dumps(request_message(fake_slack, code)[0].params)
        assert "unverified" in text and "<@cli:" not in text
    assert not any("<@cli:" in body for body in fake_slack.raw_bodies())
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) >= 4
                                and fake_slack.calls_to("reactions.add"), what="hints")
    by_ts = sorted({c.params["timestamp"] for c in hints})
    delete_ts = by_ts[1]  # posted in id order: r001, then r002
    react(bot, BOSS, delete_ts)
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                 if c.params.get("thread_ts") == delete_ts and "(1 of 2)" in c.params["text"]],
                        what="one of two")
    assert request_status(prod, "r002") == "pending" and row_count(prod, "AuditLogs") == tags
    react(bot, "U0BOSS2", delete_ts)
    fake_slack.wait_for(lambda: request_status(prod, "r002") == "applied", what="applied", timeout=120)
    assert row_count(prod, "AuditLogs") == 0 and request_status(prod, "r001") == "pending"


def test_the_gate_passes_a_pipeline_request_once(fake_slack, prod, tmp_path):
    (tmp_path / "dbops.toml").write_text(f'[identities]\n"{getpass.getuser()}" = "U0CLI"\n')
    (tmp_path / "up.sql").write_text(ADD_UP)
    done = dbops("migrate", "request", "up.sql", "--name", "add-archived", "--apply-by", "pipeline",
                 dsn=prod, cwd=tmp_path)
    assert done.returncode == 3 and "unverified" not in done.stdout, done.stdout + done.stderr
    assert request_row(prod, "r001")[:2] == ("pending", 1)  # mapped: exactly [approvals] required
    with psycopg.connect(prod) as conn:  # an approver's vote (the reaction path is tested above)
        conn.execute("UPDATE dbops.approval_requests SET status = 'approved' WHERE id = 1")
    assert dbops("migrate", "gate", "up.sql", "--down", "up.sql", dsn=prod, cwd=tmp_path).returncode == 1  # other DOWN
    first = dbops("migrate", "gate", "up.sql", "--mark-applied", dsn=prod, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    second = dbops("migrate", "gate", "up.sql", "--mark-applied", dsn=prod, cwd=tmp_path)
    assert second.returncode == 1 and "already applied" in second.stdout
    assert dbops("migrate", "gate", "up.sql", dsn=prod, cwd=tmp_path).returncode == 1


def test_long_sql_is_attached_in_the_thread_in_full(bot_factory, fake_slack, prod, tmp_path):
    long_up = "".join(f"-- note {i}: {'x' * 60}\n" for i in range(80)) + ADD_UP
    fence_down = "-- ``` a fence would end the code block the SQL is shown in\n" + ADD_DOWN
    (tmp_path / "up.sql").write_text(long_up)
    (tmp_path / "down.sql").write_text(fence_down)
    assert dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "long",
                 dsn=prod, cwd=tmp_path).returncode == 3
    bot_factory(prod)
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="posted", timeout=60)
    ts = hint_ts(fake_slack)
    uploads = fake_slack.wait_for(lambda: len([u for u in fake_slack.uploads.values() if u.get("thread_ts")]) == 2
                                  and fake_slack.uploads, what="two files")
    files = {u["filename"]: u for u in uploads.values()}
    assert files["r001-up.sql"]["content"] == long_up and files["r001-down.sql"]["content"] == fence_down
    assert all(u["thread_ts"] == ts and u["channel"] == "C0OPS" for u in files.values())
    message = json.dumps(posted[0].params)
    assert "attached in full in this message's thread" in message and "note 79" not in message
    assert migration_sha256(long_up, fence_down) in message


def test_backup_prune_is_for_approvers_unless_dry_run(bot_factory, fake_slack, fresh_db):
    bot = bot_factory(fresh_db)
    refused = bot.command("backup prune", user=EVE)
    assert refused.status_code == 200 and "approvers only" in refused.text
    allowed = bot.command("backup prune --dry-run", user=EVE)
    assert allowed.status_code == 200 and "approvers only" not in allowed.text and "queued" in allowed.text
    by_boss = bot.command("backup prune", user=BOSS)
    assert "approvers only" not in by_boss.text and "queued" in by_boss.text


def test_a_bot_open_to_everyone_does_not_start_unless_said_so(fake_slack, fresh_db, tmp_path):
    env = {"DATABASE_URL": fresh_db, "SLACK_API_URL": fake_slack.url, "DBOPS_CHANNEL": "C0OPS",
           "DBOPS_BACKUP_DIR": str(tmp_path / "backups")}
    with pytest.raises(RuntimeError) as refused:
        BotProcess(env, tmp_path).start()
    lines = [line for line in str(refused.value).splitlines()[1:] if line.strip()]
    assert len(lines) == 1 and "DBOPS_ALLOWED_CHANNELS and DBOPS_ALLOWED_USERS are both empty" in lines[0]
    (tmp_path / "dbops.toml").write_text("[slack]\nallow_everyone = true\n")
    bot = BotProcess(env, tmp_path).start()
    try:
        assert bot.proc.poll() is None
    finally:
        bot.stop()


def _role_dsn(pg_server, dbname, role, password):
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))
    return pg_server.dsn(dbname, user=role, password=password)


def spellings(secret):
    """Every way a secret can be written in a request body: as is, JSON-escaped, percent-encoded."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""), urlencode({"x": secret})[2:]}


@pytest.mark.parametrize("long", [False, True], ids=["inline", "attached"])
def test_passwords_of_any_spelling_never_reach_slack(bot_factory, fake_slack, pg_server, demo_db, tmp_path, long):
    dbname = demo_db.split("@/", 1)[1].split("?", 1)[0]
    nasty = 'pa"ss\\wörd✓-' + ("long" if long else "inline")  # a quote, a backslash, non-ASCII
    dsn = _role_dsn(pg_server, dbname, f"nasty_{'l' if long else 'i'}", nasty)
    other = _role_dsn(pg_server, dbname, f"plain_{'l' if long else 'i'}", "text")  # a payload key's name
    (tmp_path / "dbops.toml").write_text('[targets.other]\nurl_env = "OTHER_URL"\n')
    padding = "".join(f"-- padding {i}\n" for i in range(300)) if long else ""
    up = (f"-- the new role's password is {nasty}\n{padding}"
          'ALTER TABLE "Notes" ADD COLUMN "Summary" text;\n')
    bot = bot_factory(dsn, OTHER_URL=other)
    assert bot.command("migrate request").status_code == 200
    fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), what="the form")
    submit_form(bot, ALICE, up, None, "grant-role")  # a name is letters, digits, . _ - only: the secret is in the SQL
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="request message", timeout=120)
    if long:
        fake_slack.wait_for(lambda: [u for u in fake_slack.uploads.values() if u.get("content")], what="the file")
    hint_ts(fake_slack)
    bodies = fake_slack.raw_bodies()
    for body in bodies:
        for spelling in spellings(nasty) | spellings(dsn):
            assert spelling not in body
    # `text` is scrubbed from every value shown, and every payload still has its structure
    for call in fake_slack.calls:
        if call.method.startswith("chat."):
            assert isinstance(call.params.get("text"), str) and "text" not in call.params["text"]
            for block in call.params.get("blocks") or []:
                assert block["type"] in ("section", "context", "header", "divider")
                inner = block.get("text") or {}
                assert inner.get("type", "mrkdwn") in ("mrkdwn", "plain_text") and "text" not in inner.get("text", "")
    shown = section_text(posted[0].params["blocks"])
    assert long or 'ADD COLUMN "Summary" ***;' in shown  # the SQL is shown, the secret-equal word masked
