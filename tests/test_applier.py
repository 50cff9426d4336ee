"""The one lifecycle of an approved request (bot/core/applier.py), on a real state store and target and
the fake Slack: what is applied is what was approved (a request rewritten in the state store after it
was posted is refused before its first change, for every kind, and by the pipeline's gate); the
read-only applier never runs beside another readonly job; a request whose recording failed after
Slack took its message is posted again."""
from __future__ import annotations

import json
import threading

import psycopg
import pytest

from bot.areas import AREAS
from bot.areas.readonly import request_binding
from bot.areas.restore import restore_binding
from bot.core.approvals.book import RequestStatus, migration_sha256
from bot.core.approvals.settings import expires_at
from bot.core.config import Settings
from bot.core.registry import Registry
from bot.core.service import BotService
from handlers.target import Target
from tests.test_migrations_e2e import dbops

BOSS, ALICE = "U0BOSS", "U0ALICE"
COMMENT_UP = 'COMMENT ON TABLE "Notes" IS \'notes\';\n'
DROP_UP = 'DROP TABLE "AuditLogs";\n'


@pytest.fixture
def svc(demo_db, fresh_db, fake_slack, tmp_path):
    settings = Settings(targets={"prod": Target("prod", demo_db), "recovery": Target("recovery", fresh_db)},
                        state_url=demo_db, slack_bot_token="xoxb-test", slack_api_url=fake_slack.url,
                        channel="C0OPS", approvers=frozenset({BOSS}), backup_dir=tmp_path / "backups",
                        sections={"approvals": {"required": 1}})
    service = BotService(settings, Registry(AREAS), start_background=False)
    yield service
    service.close()


def request(svc, kind, payload, sha256, target="prod", name="a request"):
    req = svc.approvals.book.create(kind=kind, name=name, target=target, sha256=sha256, payload=payload,
                                    analysis={}, requires_approval=True, required=1, requested_by=ALICE,
                                    attested_by=None, channel=None, expires_at=expires_at(svc.approvals.settings))
    assert svc.approvals.post_unposted() == 1
    return svc.approvals.book.get(req.id)


def rewrite(dsn, req, **payload):
    """What someone who can write to the state database does after the request was posted."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE dbops.approval_requests SET payload = payload || %s::jsonb WHERE id = %s",
                     (json.dumps(payload), req.id))


def approve_and_wait(svc, req, approver=BOSS):
    """An approver approves; returns the request once the apply the approval started has ended."""
    done = threading.Event()
    original = svc.runner.submit

    def submit(fn, on_dropped=None):
        def run():
            try:
                fn()
            finally:
                done.set()
        return original(run, on_dropped)

    svc.runner.submit = submit
    try:
        event = {"user": approver, "reaction": "white_check_mark",
                 "item": {"type": "message", "channel": req.channel, "ts": req.message_ts}}
        assert svc.approvals.on_reaction(event, f"Ev{req.id}", added=True) == "approved"
        assert done.wait(120)
    finally:
        svc.runner.submit = original
    return svc.approvals.book.get(req.id)


def thread(fake_slack, req):
    return [c.params["text"] for c in fake_slack.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == req.message_ts]


def audited(svc, req):
    return [(e["action"], e["outcome"]) for e in svc.store.audit_entries(200)
            if e["subcommand"] == f"{req.kind} {req.code}"]


def tables(dsn):
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r'"
                                           " AND relnamespace = 'public'::regnamespace")}


def test_a_migration_rewritten_after_it_was_posted_is_refused_right_before_its_first_statement(
        svc, demo_db, fake_slack):
    req = request(svc, "migration", {"up": COMMENT_UP, "down": None, "apply_by": "bot"},
                  migration_sha256(COMMENT_UP, None))
    rewrite(demo_db, req, up=DROP_UP)  # the message showed a COMMENT; the state store now holds a DROP TABLE
    after = approve_and_wait(svc, req)
    assert after.status is RequestStatus.FAILED and "not what the approval binds" in after.status_detail
    assert "AuditLogs" in tables(demo_db)
    told = thread(fake_slack, req)
    assert any(t.startswith(f":no_entry: `{req.code}` refused:") and "changed in the state store" in t for t in told)
    assert any("taking a fresh backup" in t for t in told)  # refused after the backup: before the first statement
    assert ("apply", "refused") in audited(svc, req)
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT result FROM dbops.migration_ledger").fetchall() == [("failed",)]


def test_a_restore_rewritten_after_it_was_posted_is_refused(svc, demo_db, fresh_db, fake_slack):
    words = {"backup": "latest", "into": "recovery", "from": "prod", "overwrite": False, "backup_after": False}
    req = request(svc, "restore", words, restore_binding(words), target="recovery")
    rewrite(demo_db, req, into="prod", overwrite=True)  # over production itself
    after = approve_and_wait(svc, req)
    assert after.status is RequestStatus.FAILED and "refused" in after.status_detail
    assert any(f"`{req.code}` refused" in t for t in thread(fake_slack, req))
    assert ("apply", "refused") in audited(svc, req)
    assert "Notes" in tables(demo_db)


def test_a_readonly_request_rewritten_after_it_was_posted_is_refused(svc, demo_db, fake_slack):
    payload = {"action": "create", "role": "analytics_ro", "schemas": None, "requester_slack": ALICE}
    req = request(svc, "readonly", payload, request_binding(payload, "prod"))
    rewrite(demo_db, req, requester_slack="U0MALLORY")  # the connection string would go to someone else
    after = approve_and_wait(svc, req)
    assert after.status is RequestStatus.FAILED and "refused" in after.status_detail
    assert ("apply", "refused") in audited(svc, req)
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'analytics_ro'").fetchone() is None


def test_the_read_only_applier_never_runs_beside_another_readonly_job(svc, demo_db, fake_slack):
    payload = {"action": "create", "role": "analytics_ro", "schemas": None, "requester_slack": ALICE}
    req = request(svc, "readonly", payload, request_binding(payload, "prod"))
    lock, job = svc.store.start_job("prod", "readonly", "readonly rotate analytics_ro", BOSS, "C0OPS")
    assert lock is not None  # a `readonly rotate` is running
    try:
        after = approve_and_wait(svc, req)
    finally:
        lock.release()
    assert after.status is RequestStatus.FAILED and "readonly job on `prod` is already running" in after.status_detail
    assert "nothing was applied" in after.status_detail
    assert any(f"`{req.code}` failed" in t for t in thread(fake_slack, req))


def test_a_request_whose_recording_failed_after_slack_took_it_is_posted_again(svc, demo_db, fake_slack):
    with psycopg.connect(demo_db, autocommit=True) as conn:  # the state database refuses to record the message
        conn.execute("ALTER TABLE dbops.approval_requests ADD CONSTRAINT refuse_posting"
                     " CHECK (message_ts IS NULL) NOT VALID")
    req = svc.approvals.book.create(kind="restore", name="latest into recovery", target="recovery", sha256="ab" * 32,
                                    payload={}, analysis={}, requires_approval=True, required=1, requested_by=ALICE,
                                    attested_by=None, channel=None, expires_at=expires_at(svc.approvals.settings))
    assert svc.approvals.post_unposted() == 0
    first = [c for c in fake_slack.calls_to("chat.postMessage") if f"request {req.code}" in c.params["text"]]
    assert len(first) == 1
    deleted = [c.params["ts"] for c in fake_slack.calls_to("chat.delete")]
    assert len(deleted) == 1  # the message nobody could vote on is gone
    assert svc.approvals.book.get(req.id).message_ts is None

    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE dbops.approval_requests DROP CONSTRAINT refuse_posting")
    assert svc.approvals.post_unposted() == 1  # the next tick posts it again
    posted = svc.approvals.book.get(req.id)
    assert posted.message_ts is not None and posted.message_ts != deleted[0]
    assert svc.approvals.post_unposted() == 0  # once
    assert len(fake_slack.calls_to("reactions.add")) == 2


def test_the_gate_refuses_a_request_rewritten_after_it_was_posted(svc, demo_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    (tmp_path / "up.sql").write_text(COMMENT_UP)
    req = request(svc, "migration", {"up": COMMENT_UP, "down": None, "apply_by": "pipeline"},
                  migration_sha256(COMMENT_UP, None))
    assert svc.approvals.book.vote(req.id, BOSS, "approve", True, req.created_at)[0].status == "approved"
    rewrite(demo_db, req, up=DROP_UP)  # what the approvers were shown from now on (the message is redrawn)
    done = dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path)
    assert done.returncode == 1 and "not what the approval binds" in " ".join(done.stdout.split())
    after = svc.approvals.book.get(req.id)
    assert after.status is RequestStatus.FAILED
    assert ("gate", "refused") in [(e["action"], e["outcome"]) for e in svc.store.audit_entries(50)
                                   if e["subcommand"] == f"migration {req.code}"]
    assert dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path).returncode == 1
