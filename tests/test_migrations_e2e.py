"""Migration safety end to end: the real bot over signed HTTP, the fake Slack, a real database.

A DROP COLUMN with data waits for an approver's reaction; others' reactions change nothing; an
approval leads to a fresh backup, the apply, and the column gone; the gate knows the exact SQL."""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from bot.core.approvals.book import RequestStatus
from bot.core.approvals.message import STATUS_LINE
from tests.fakes.bot_process import ROOT, view_submission

UP = 'SET lock_timeout = \'5s\';\nALTER TABLE "Notes" DROP COLUMN "IsPinned";\n'
DOWN = 'ALTER TABLE "Notes" ADD COLUMN "IsPinned" boolean NOT NULL DEFAULT false;\n'
BOSS, ALICE, EVE = "U0BOSS", "U0ALICE", "U0EVE"


def columns(dsn, table="Notes"):
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                                           " AND attnum > 0 AND NOT attisdropped", (f'"{table}"',)).fetchall()}


def dbops(*args, dsn, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": dsn, "DBOPS_DOTENV": "/nonexistent",
            "DBOPS_CONFIG": str(cwd / "dbops.toml"), "DBOPS_BACKUP_DIR": str(cwd / "backups")} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def request_message(fake_slack, code):
    return [c for c in fake_slack.calls_to("chat.postMessage") if f"request {code}" in c.params["text"]]


def react(bot, user, ts, reaction="white_check_mark", added=True, event_id=None, retry_num=None):
    event = {"type": "reaction_added" if added else "reaction_removed", "user": user, "reaction": reaction,
             "item": {"type": "message", "channel": "C0OPS", "ts": ts}, "event_ts": str(time.time())}
    answer = bot.event(event, event_id or f"Ev{user}{reaction}{added}{time.time_ns()}", retry_num=retry_num)
    assert answer.status_code == 200


def shown_states(fake_slack, ts):
    """The state each chat.update of the message at `ts` showed, in order: its status, with the
    approvals count while it is pending (its first block's first line says the same)."""
    shown = []
    for call in fake_slack.calls_to("chat.update"):
        if call.params.get("ts") != ts:
            continue
        status = RequestStatus(call.params["text"].rsplit(": ", 1)[1])
        line = call.params["blocks"][0]["text"]["text"].split("\n")[0]
        assert line.startswith(STATUS_LINE[status]), line
        shown.append(f"{status} {line.split(' · ')[1]}" if status is RequestStatus.PENDING else str(status))
    return shown


def thread_texts(fake_slack, ts):
    return [c.params["text"] for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def wait_for_states(fake_slack, ts, *states, timeout=20):
    """Waits until the message at `ts` has shown exactly these states (each vote waits for the
    previous one's redraw, so every state is seen however the threads interleave)."""
    return fake_slack.wait_for(lambda: shown_states(fake_slack, ts) == list(states), what=f"states {states}",
                               timeout=timeout)


def event_handled(dsn, event_id):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM dbops.slack_events WHERE event_id = %s", (event_id,)).fetchone() is not None


def request_status(dsn, code):
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status FROM dbops.approval_requests WHERE id = %s", (int(code[1:]),)).fetchone()
    return row[0] if row else None


def submit_form(bot, user, up, down, name, staging=True):
    values = {"name": {"value": {"type": "plain_text_input", "value": name}},
              "up": {"value": {"type": "plain_text_input", "value": up}},
              "down": {"value": {"type": "plain_text_input", "value": down}},
              "staging": {"value": {"type": "checkboxes",
                                    "selected_options": [{"value": "yes"}] if staging else []}}}
    body = view_submission(user, "dbops_migrate", json.dumps({"mode": "request", "channel": "C0OPS"}), values)
    answer = bot.post_signed(body, "application/x-www-form-urlencoded")
    assert answer.status_code == 200


@pytest.fixture
def prod(demo_db, tmp_path):
    """The demo database with one verified backup (the rehearsal restores it)."""
    (tmp_path / "dbops.toml").write_text("")
    done = dbops("backup", dsn=demo_db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return demo_db


def test_drop_column_waits_for_an_approver_then_backup_apply_and_the_column_is_gone(bot_factory, fake_slack, prod,
                                                                                    tmp_path):
    bot = bot_factory(prod, DBOPS_APPROVERS=f"{BOSS},{ALICE}")
    assert bot.command("migrate request").status_code == 200
    fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), what="the form")
    submit_form(bot, ALICE, UP, DOWN, "drop-notes-ispinned")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="request message", timeout=120)
    message = json.dumps(posted[0].params)
    assert "drop-column" in message and "rehearsed on a copy of backup b001" in message
    assert "attested by <@U0ALICE>" in message and "SHA-256" in message
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) == 2
                                and fake_slack.calls_to("reactions.add"), what="the hint reactions")
    assert {c.params["name"] for c in hints} == {"white_check_mark", "x"}
    ts = hints[0].params["timestamp"]
    assert ts == posted[0].params.get("ts", ts)

    react(bot, EVE, ts)  # not an approver
    react(bot, ALICE, ts)  # the requester
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral") if c.params["user"] == ALICE
                                 and "someone else must approve" in c.params["text"]], what="note to requester")
    time.sleep(1)
    assert request_status(prod, "r001") == "pending" and "IsPinned" in columns(prod)

    react(bot, BOSS, ts)
    fake_slack.wait_for(lambda: request_status(prod, "r001") == "applied", what="applied", timeout=120)
    assert "IsPinned" not in columns(prod)
    with psycopg.connect(prod) as conn:
        ledger = conn.execute("SELECT result, backup_id, approvers FROM dbops.migration_ledger").fetchall()
        backups = conn.execute("SELECT id, requested_by, status FROM dbops.backups ORDER BY id").fetchall()
    assert ledger == [("applied", "b002", [BOSS])]
    assert ("b002", "migration r001", "completed") in backups
    thread = thread_texts(fake_slack, ts)
    assert any("applied" in t for t in thread)
    assert posted[0].params["blocks"][0]["text"]["text"].startswith(f"{STATUS_LINE['pending']} · 0 of 1 approvals")
    assert f"✓ <@{BOSS}> approved (1 of 1): applying now" in thread
    wait_for_states(fake_slack, ts, "approved", "applying", "applied")  # one message, changed in place


def test_a_request_message_changes_in_place_and_each_vote_is_a_line_in_its_thread(bot_factory, fake_slack, prod,
                                                                                   tmp_path):
    # the terminal's login is mapped to a Slack user: a verified requester needs exactly `required`
    (tmp_path / "dbops.toml").write_text(f'[approvals]\nrequired = 2\n[identities]\n"{getpass.getuser()}" = "U0CLI"\n')
    (tmp_path / "up.sql").write_text(UP)
    (tmp_path / "down.sql").write_text(DOWN)
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "drop-ispinned",
                 dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    bot = bot_factory(prod, DBOPS_APPROVERS=f"{BOSS},U0BOSS2")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the request", timeout=60)
    ts = fake_slack.wait_for(lambda: fake_slack.calls_to("reactions.add"), what="hint reactions")[0].params["timestamp"]
    assert posted[0].params["blocks"][0]["text"]["text"].startswith(f"{STATUS_LINE['pending']} · 0 of 2 approvals")
    files = fake_slack.wait_for(lambda: len([u for u in fake_slack.uploads.values() if u.get("content")]) == 2
                                and fake_slack.uploads, what="the SQL files")
    assert {u["filename"]: (u["content"], u["thread_ts"]) for u in files.values()} == {
        "r001-up.sql": (UP, ts), "r001-down.sql": (DOWN, ts)}  # short SQL too: one click away in the thread

    steps = ["pending 1 of 2 approvals", "pending 0 of 2 approvals", "pending 1 of 2 approvals"]
    react(bot, BOSS, ts)
    wait_for_states(fake_slack, ts, *steps[:1])
    react(bot, BOSS, ts, added=False)
    wait_for_states(fake_slack, ts, *steps[:2])
    react(bot, BOSS, ts)
    wait_for_states(fake_slack, ts, *steps)
    react(bot, "U0BOSS2", ts)
    wait_for_states(fake_slack, ts, *steps, "approved", "applying", "applied", timeout=120)
    assert request_status(prod, "r001") == "applied" and "IsPinned" not in columns(prod)
    votes = [t for t in thread_texts(fake_slack, ts) if t.startswith(("✓", "↩", "✗"))]
    assert votes == [f"✓ <@{BOSS}> approved (1 of 2)", f"↩ <@{BOSS}> withdrew (0 of 2)",
                     f"✓ <@{BOSS}> approved (1 of 2)", "✓ <@U0BOSS2> approved (2 of 2): applying now"]
    assert len(request_message(fake_slack, "r001")) == 1  # never posted again

    # a second request, rejected: its message says so in place; a later approval changes nothing
    (tmp_path / "add.sql").write_text('ALTER TABLE "Notes" ADD COLUMN "Archived" boolean;\n')
    assert dbops("migrate", "request", "add.sql", "--name", "add-archived", dsn=prod, cwd=tmp_path).returncode == 3
    fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) == 4, what="the second request's hints",
                        timeout=60)
    ts2 = fake_slack.calls_to("reactions.add")[2].params["timestamp"]
    react(bot, "U0BOSS2", ts2, reaction="x")
    wait_for_states(fake_slack, ts2, "rejected")
    react(bot, BOSS, ts2, event_id="EvLate")
    fake_slack.wait_for(lambda: event_handled(prod, "EvLate"), what="the late approval handled")
    assert request_status(prod, "r002") == "rejected"
    assert shown_states(fake_slack, ts2) == ["rejected"]
    assert [t for t in thread_texts(fake_slack, ts2) if t.startswith(("✓", "↩", "✗"))] == [
        "✗ <@U0BOSS2> rejected it: nothing will be applied"]


def test_pipeline_gate_restart_and_duplicate_deliveries(bot_factory, fake_slack, prod, tmp_path):
    # the terminal's login is mapped to a Slack user: a verified requester needs exactly `required`
    (tmp_path / "dbops.toml").write_text(f'[approvals]\nrequired = 2\n[identities]\n"{getpass.getuser()}" = "U0CLI"\n')
    (tmp_path / "up.sql").write_text(UP)
    (tmp_path / "down.sql").write_text(DOWN)
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "drop-ispinned",
                 "--apply-by", "pipeline", dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr  # approval required
    assert dbops("migrate", "gate", "up.sql", "--down", "down.sql", dsn=prod, cwd=tmp_path).returncode == 1  # not yet

    bot = bot_factory(prod, DBOPS_APPROVERS=f"{BOSS},U0BOSS2")
    fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="posted by the bot", timeout=60)
    ts = fake_slack.wait_for(lambda: fake_slack.calls_to("reactions.add"), what="hint reactions")[0].params["timestamp"]
    react(bot, BOSS, ts, event_id="EvDup")
    react(bot, BOSS, ts, event_id="EvDup", retry_num=1)  # Slack's retry of the same event
    time.sleep(1)
    assert request_status(prod, "r001") == "pending"  # one approval counted once: 1 of 2

    bot.stop()  # restart between request and approval
    bot = bot_factory(prod, DBOPS_APPROVERS=f"{BOSS},U0BOSS2")
    react(bot, "U0BOSS2", ts)
    fake_slack.wait_for(lambda: request_status(prod, "r001") == "approved", what="approved", timeout=30)
    assert "IsPinned" in columns(prod)  # the pipeline applies it, not the bot

    assert dbops("migrate", "gate", "up.sql", "--down", "down.sql", dsn=prod, cwd=tmp_path).returncode == 0
    (tmp_path / "edited.sql").write_text(UP + "-- an edit after approval\n")
    edited = dbops("migrate", "gate", "edited.sql", "--down", "down.sql", dsn=prod, cwd=tmp_path)
    assert edited.returncode == 1 and "any edit after approval needs a new approval" in " ".join(edited.stdout.split())
    (tmp_path / "edited-down.sql").write_text(DOWN + "-- the DOWN is bound too\n")
    edited = dbops("migrate", "gate", "up.sql", "--down", "edited-down.sql", dsn=prod, cwd=tmp_path)
    assert edited.returncode == 1 and "any edit after approval needs a new approval" in " ".join(edited.stdout.split())
    assert dbops("migrate", "gate", "up.sql", "--down", "down.sql", "--mark-applied", dsn=prod,
                 cwd=tmp_path).returncode == 0
    again = dbops("migrate", "gate", "up.sql", "--down", "down.sql", "--mark-applied", dsn=prod, cwd=tmp_path)
    assert again.returncode == 1 and "already applied" in again.stdout  # used up


def test_a_down_that_does_not_restore_the_schema_makes_it_irreversible(prod, tmp_path):
    (tmp_path / "up.sql").write_text('CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");\n')
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "title-index", "--format", "json",
                 dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    body = json.loads(done.stdout)
    codes = {f["code"] for f in body["findings"]}
    assert "irreversible" in codes
    assert "IX_Notes_Title" in json.dumps(body)


def test_requests_expire(bot_factory, fake_slack, prod, tmp_path):
    (tmp_path / "dbops.toml").write_text("[approvals]\nexpires_hours = 0.0005\n")  # under 2 seconds
    (tmp_path / "up.sql").write_text(UP)
    assert dbops("migrate", "request", "up.sql", "--name", "too-late", dsn=prod, cwd=tmp_path).returncode == 3
    bot = bot_factory(prod)
    fake_slack.wait_for(lambda: request_status(prod, "r001") == "expired", what="expired", timeout=30)
    ts = [c for c in fake_slack.calls_to("chat.postMessage") if "request r001" in c.params["text"]]
    if ts:  # posted before it expired: an approval now changes nothing
        react(bot, BOSS, fake_slack.wait_for(lambda: fake_slack.calls_to("reactions.add"), what="hints")[0]
              .params["timestamp"])
    time.sleep(1)
    assert request_status(prod, "r001") == "expired" and "IsPinned" in columns(prod)
