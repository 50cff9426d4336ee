"""A migration request left `applying` by a process that stopped: at start-up the target says
whether the change landed (the mark its own transaction wrote), and the request is reported
applied or failed in its thread, with the ledger row the crash did not write."""
from __future__ import annotations

import psycopg
import pytest

from bot.areas import AREAS
from bot.areas.migrations.flow import MARK_SQL, ensure_marks_table
from bot.core.applier import apply_claim, recover_applying
from bot.core.approvals.book import migration_sha256
from bot.core.approvals.settings import expires_at
from bot.core.config import Settings
from bot.core.registry import Registry
from bot.core.service import BotService
from handlers.migrations.apply import ApplySettings, apply_migration
from handlers.target import Target

UP = 'ALTER TABLE "Notes" ADD COLUMN "Archived" boolean;\n'


@pytest.fixture
def svc(demo_db, fake_slack):
    settings = Settings(targets={"prod": Target("prod", demo_db)}, state_url=demo_db, slack_bot_token="xoxb-test",
                        slack_api_url=fake_slack.url, channel="C0OPS", approvers=frozenset({"U0BOSS"}),
                        sections={})
    service = BotService(settings, Registry(AREAS), start_background=False)
    yield service
    service.close()


def applying_request(svc, up=UP):
    book = svc.approvals.book
    req = book.create(kind="migration", name="add-archived", target="prod", sha256=migration_sha256(up, None),
                      payload={"up": up, "down": None, "apply_by": "bot"}, analysis={}, requires_approval=True,
                      required=1, requested_by="U0ALICE", attested_by=None, channel="C0OPS",
                      expires_at=expires_at(svc.approvals.settings))
    book.set_message(req.id, "C0OPS", f"1700000000.{req.id:06d}")
    book.vote(req.id, "U0BOSS", "approve", True, req.created_at)
    assert book.move(req.id, ("approved",), "applying")
    return book.get(req.id)


def ledger(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT request_id, result, approvers FROM dbops.migration_ledger ORDER BY id").fetchall()


def thread_texts(fake_slack, ts):
    return [c.params["text"] for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def test_a_change_that_committed_before_the_crash_is_reported_applied(svc, demo_db, fake_slack):
    req = applying_request(svc)
    target = svc.settings.target("prod")
    assert ensure_marks_table(target) is None
    done = apply_migration(target, UP, ApplySettings(), mark=(MARK_SQL, (req.id, req.sha256, req.name)))
    assert done.ok  # ... and then the process died before it could record anything
    lines = recover_applying(svc)
    assert svc.approvals.book.get(req.id).status == "applied"
    assert ledger(demo_db) == [(req.id, "applied", ["U0BOSS"])]
    assert any("applied" in t and "found after its process stopped" in t
               for t in thread_texts(fake_slack, req.message_ts))
    assert len(lines) == 1 and req.code in lines[0]
    assert recover_applying(svc) == []  # once


def test_a_change_whose_transaction_never_committed_is_reported_failed(svc, demo_db, fake_slack):
    req = applying_request(svc)
    recover_applying(svc)
    after = svc.approvals.book.get(req.id)
    assert after.status == "failed" and "nothing was applied" in after.status_detail
    assert ledger(demo_db) == [(req.id, "failed", ["U0BOSS"])]
    assert any("nothing was applied" in t for t in thread_texts(fake_slack, req.message_ts))


def test_a_request_a_live_process_is_applying_is_left_alone(svc, demo_db):
    req = applying_request(svc)
    claim = apply_claim(svc.store, req)
    assert claim.try_acquire()  # the process applying it holds its claim
    try:
        assert recover_applying(svc) == []
        assert svc.approvals.book.get(req.id).status == "applying" and ledger(demo_db) == []
    finally:
        claim.release()


def test_a_migration_with_statements_outside_a_transaction_is_not_called_unapplied(svc):
    req = applying_request(svc, UP + 'CREATE INDEX CONCURRENTLY "IX_Notes_Archived" ON "Notes" ("Archived");\n')
    recover_applying(svc)
    after = svc.approvals.book.get(req.id)
    assert after.status == "failed" and "may have been applied" in after.status_detail
