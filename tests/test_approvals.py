"""Approval by reaction: who counts, what changes, what is told; on a real state store and fake Slack."""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from bot.areas import AREAS
from bot.core.approvals.book import RequestStatus, Vote
from bot.core.approvals.message import STATUS_LINE
from bot.core.approvals.reactions import ReactionOutcome
from bot.core.approvals.settings import expires_at
from bot.core.config import Settings
from bot.core.registry import Applied, Applier, Area, Registry
from bot.core.service import BotService
from handlers.target import Target

REQUESTER, BOSS, BOSS2, STRANGER, BOT = "U0ALICE", "U0BOSS", "U0BOSS2", "U0EVE", "U0OTHERBOT"


@pytest.fixture
def svc(fresh_db, fake_slack):
    fake_slack.users[BOT] = {"id": BOT, "is_bot": True}
    settings = Settings(targets={"prod": Target("prod", fresh_db)}, state_url=fresh_db,
                        slack_bot_token="xoxb-test", slack_api_url=fake_slack.url, channel="C0OPS",
                        approvers=frozenset({BOSS, BOSS2, REQUESTER}),  # the requester approves others' requests
                        sections={"approvals": {"required": 1}})
    applied: list[int] = []
    done = threading.Event()

    def apply(svc, req, inv):
        applied.append(req.id)
        done.set()
        return Applied(RequestStatus.APPLIED, "done")

    registry = Registry([*AREAS, Area("test", appliers=(Applier("test", lock="test", apply=apply,
                                                               binds=lambda req: req.sha256),))])
    service = BotService(settings, registry, start_background=False)
    service.applied, service.applied_event = applied, done
    yield service
    service.close()


def new_request(svc, required=1, now=None, kind="test"):
    approvals = svc.approvals
    req = approvals.book.create(kind=kind, name="drop old column", target="prod", sha256="ab" * 32,
                                payload={}, analysis={}, requires_approval=True, required=required,
                                requested_by=REQUESTER, attested_by=REQUESTER, channel="C0OPS",
                                expires_at=expires_at(approvals.settings, now))
    approvals.book.set_message(req.id, "C0OPS", f"1700000000.{req.id:06d}")
    return approvals.book.get(req.id)


def react(svc, req, user, reaction="white_check_mark", added=True, event_id=None, ts=None, now=None):
    event = {"type": "reaction_added" if added else "reaction_removed", "user": user, "reaction": reaction,
             "item": {"type": "message", "channel": req.channel, "ts": ts or req.message_ts}}
    return svc.approvals.on_reaction(event, event_id or f"Ev{user}{reaction}{added}{req.id}{ts}", added, now=now)


def status(svc, req):
    return svc.approvals.book.get(req.id).status


def test_only_an_approvers_reaction_on_that_message_approves_and_starts_the_apply(svc, fake_slack):
    req = new_request(svc)
    assert react(svc, req, STRANGER) is ReactionOutcome.NOT_AN_APPROVER
    assert react(svc, req, REQUESTER) is ReactionOutcome.OWN_REQUEST
    assert react(svc, req, BOT) is ReactionOutcome.BOT
    assert react(svc, req, BOSS, ts="1699999999.000001") is ReactionOutcome.NOT_A_REQUEST
    assert react(svc, req, BOSS, reaction="thumbsup") is ReactionOutcome.OTHER_REACTION
    assert status(svc, req) == "pending" and svc.applied == []
    assert any(c.params.get("user") == REQUESTER for c in fake_slack.calls_to("chat.postEphemeral"))
    assert react(svc, req, BOSS) is ReactionOutcome.APPROVED
    assert svc.applied_event.wait(5) and svc.applied == [req.id]
    fake_slack.wait_for(lambda: status(svc, req) == "applied", what="the request applied")  # by core's lifecycle
    thread = [c.params for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == req.message_ts]
    assert any("approved" in p["text"] for p in thread)
    assert fake_slack.calls_to("chat.update")  # the message itself shows the new state
    actions = [a["action"] for a in svc.store.audit_entries()]
    assert "approve" in actions and "approve-ignored" in actions


def test_a_repeated_delivery_counts_once(svc):
    req = new_request(svc, required=2)
    assert react(svc, req, BOSS, event_id="Ev1") is ReactionOutcome.COUNTED
    assert react(svc, req, BOSS, event_id="Ev1") is ReactionOutcome.DUPLICATE
    assert react(svc, req, BOSS, event_id="Ev1-retry-with-new-id") is ReactionOutcome.NO_CHANGE  # same vote again
    assert svc.approvals.book.approvals_count(req.id) == 1
    assert status(svc, req) == "pending"
    assert react(svc, req, BOSS2) is ReactionOutcome.APPROVED


def test_removing_the_approval_before_apply_withdraws_it(svc):
    req = new_request(svc, required=2)
    react(svc, req, BOSS)
    assert react(svc, req, BOSS, added=False) is ReactionOutcome.WITHDRAWN
    assert svc.approvals.book.approvals_count(req.id) == 0
    react(svc, req, BOSS2)
    assert status(svc, req) == "pending"


def test_an_approvers_x_rejects_and_nothing_is_applied(svc):
    req = new_request(svc)
    assert react(svc, req, BOSS2, reaction="x") is ReactionOutcome.REJECTED
    assert react(svc, req, BOSS) is ReactionOutcome.NO_CHANGE
    assert status(svc, req) == "rejected" and svc.applied == []


def test_requests_expire(svc, fake_slack):
    long_ago = datetime.now(timezone.utc) - timedelta(hours=30)
    req = new_request(svc, now=long_ago)
    assert react(svc, req, BOSS) is ReactionOutcome.EXPIRED
    assert status(svc, req) == "expired" and svc.applied == []
    other = new_request(svc, now=long_ago)
    assert [r.id for r in svc.approvals.expire()] == [other.id]
    assert any("expired" in c.params["text"] for c in fake_slack.calls_to("chat.postMessage")
               if c.params.get("thread_ts") == other.message_ts)


def test_a_vote_whose_processing_failed_is_counted_when_slack_redelivers_it(svc):
    req = new_request(svc)
    with svc.store.pool.connection() as conn:  # the state database refuses the vote once
        conn.execute("CREATE FUNCTION dbops.refuse_vote() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN RAISE EXCEPTION 'state database trouble'; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON dbops.approval_votes FOR EACH ROW"
                     " EXECUTE FUNCTION dbops.refuse_vote()")
    with pytest.raises(Exception, match="state database trouble"):
        react(svc, req, BOSS, event_id="EvLost")
    with svc.store.pool.connection() as conn:
        conn.execute("DROP TRIGGER refuse ON dbops.approval_votes")
    assert status(svc, req) == "pending"
    assert react(svc, req, BOSS, event_id="EvLost") is ReactionOutcome.APPROVED  # the redelivery is not a duplicate
    assert react(svc, req, BOSS, event_id="EvLost") is ReactionOutcome.DUPLICATE


def test_a_terminal_requester_mapped_to_a_slack_user_cannot_approve_their_own_request(svc):
    svc.settings.sections["identities"] = {"alice": REQUESTER}
    approvals = svc.approvals
    req = approvals.book.create(kind="test", name="from ci", target="prod", sha256="cd" * 32, payload={},
                                analysis={}, requires_approval=True, required=1, requested_by="cli:alice",
                                attested_by=None, channel="C0OPS", expires_at=expires_at(approvals.settings))
    approvals.book.set_message(req.id, "C0OPS", "1700000001.000001")
    req = approvals.book.get(req.id)
    assert react(svc, req, REQUESTER) is ReactionOutcome.OWN_REQUEST
    assert status(svc, req) == "pending"
    assert react(svc, req, BOSS) is ReactionOutcome.APPROVED


def shown(fake_slack, req):
    """The first line of each chat.update of the request's message, in order."""
    return [c.params["blocks"][0]["text"]["text"].split("\n")[0] for c in fake_slack.calls_to("chat.update")
            if c.params.get("ts") == req.message_ts]


def thread(fake_slack, req):
    return [c.params["text"] for c in fake_slack.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == req.message_ts]


def test_each_vote_is_one_short_line_in_the_thread_and_the_count_on_the_message(svc, fake_slack):
    req = new_request(svc, required=2)
    react(svc, req, BOSS)
    react(svc, req, BOSS, added=False)
    react(svc, req, STRANGER)  # not an approver: no line, no redraw
    react(svc, req, BOSS2, reaction="x")
    assert thread(fake_slack, req) == [f"✓ <@{BOSS}> approved (1 of 2)", f"↩ <@{BOSS}> withdrew (0 of 2)",
                                       f"✗ <@{BOSS2}> rejected it: nothing will be applied"]
    pending = STATUS_LINE[RequestStatus.PENDING]
    assert shown(fake_slack, req) == [f"{pending} · 1 of 2 approvals", f"{pending} · 0 of 2 approvals",
                                      STATUS_LINE[RequestStatus.REJECTED]]


def test_every_status_change_of_the_book_redraws_the_message_once(svc, fake_slack):
    req = new_request(svc, kind="nobody-applies")  # it stays approved: the moves below are the test's own
    book = svc.approvals.book
    assert react(svc, req, BOSS) is ReactionOutcome.APPROVED
    assert book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.APPLYING)
    assert not book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.APPLYING)  # not this caller's change
    assert book.move(req.id, (RequestStatus.APPLYING,), RequestStatus.FAILED, "line 2: lock timeout; rolled back")
    svc.approvals.tell(req, ":x: failed", "bot", "apply", "failed")  # the message already shows it: no redraw
    assert shown(fake_slack, req) == [STATUS_LINE[s] for s in (RequestStatus.APPROVED, RequestStatus.APPLYING,
                                                                RequestStatus.FAILED)]
    last = fake_slack.calls_to("chat.update")[-1].params
    assert last["text"] == f"nobody-applies request {req.code}: failed"
    assert "line 2: lock timeout; rolled back" in last["blocks"][0]["text"]["text"]


def test_an_expired_request_shows_it_in_place(svc, fake_slack):
    long_ago = datetime.now(timezone.utc) - timedelta(hours=30)
    req = new_request(svc, now=long_ago)
    assert react(svc, req, BOSS) is ReactionOutcome.EXPIRED
    other = new_request(svc, now=long_ago)
    svc.approvals.expire()
    assert shown(fake_slack, req) == shown(fake_slack, other) == [STATUS_LINE[RequestStatus.EXPIRED]]


def test_the_enums_are_exactly_what_the_state_store_accepts(svc):
    """Stored as the same strings: every status and vote the code can write passes the tables'
    CHECK constraints, and every one they allow is a member the code can read."""
    with svc.store.pool.connection() as conn:
        checks = {r["conname"]: r["def"] for r in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conname IN ('approval_requests_status_check', 'approval_votes_vote_check')").fetchall()}
    allowed = {name: set(re.findall(r"'([^']*)'::text", text)) for name, text in checks.items()}
    assert allowed["approval_requests_status_check"] == {str(s) for s in RequestStatus}
    assert allowed["approval_votes_vote_check"] == {str(v) for v in Vote}
    req = new_request(svc)
    with svc.store.pool.connection() as conn:
        stored = conn.execute("SELECT status FROM dbops.approval_requests WHERE id = %s", (req.id,)).fetchone()
    assert type(stored["status"]) is str and stored["status"] == "pending"
    assert svc.approvals.book.get(req.id).status is RequestStatus.PENDING


# -- votes the bot never heard of, read back from the message ----------------------------------

def test_votes_missed_while_the_bot_was_away_are_read_back_only_where_that_fails_closed(svc, fake_slack):
    req = new_request(svc, required=2)
    where = (req.channel, req.message_ts)
    fake_slack.user_reacts(*where, BOSS, "white_check_mark")
    assert react(svc, req, BOSS) is ReactionOutcome.COUNTED
    # The bot restarts; meanwhile, with no event reaching it, BOSS takes the approval back and three
    # others approve: a second approver (which would approve the request), a stranger and the requester.
    fake_slack.user_reacts(*where, BOSS, "white_check_mark", added=False)
    for user in (BOSS2, STRANGER, REQUESTER):
        fake_slack.user_reacts(*where, user, "white_check_mark")
    changes = svc.approvals.reconcile()
    assert changes == [(req.code, BOSS, ReactionOutcome.WITHDRAWN), (req.code, BOSS2, ReactionOutcome.NO_CHANGE)]
    assert svc.approvals.book.approvals_count(req.id) == 0  # BOSS2's read-back approval is not counted
    assert status(svc, req) == "pending" and svc.applied == []
    said = thread(fake_slack, req)
    assert any(f"<@{BOSS}> withdrew" in line and "no longer on the message" in line for line in said)
    asked = [line for line in said if f"<@{BOSS2}>" in line and "add it again" in line]
    assert len(asked) == 1 and not any(f"<@{u}>" in line for line in said for u in (STRANGER, REQUESTER))
    assert svc.approvals.reconcile() == []  # asked once; nothing else to bring in line
    assert len([line for line in thread(fake_slack, req) if "add it again" in line]) == 1
    assert react(svc, req, BOSS2) is ReactionOutcome.COUNTED  # re-added: Slack sends the event, it counts


def test_a_rejection_missed_while_away_is_read_back_and_rejects(svc, fake_slack):
    req, other = new_request(svc), new_request(svc)
    fake_slack.user_reacts(req.channel, req.message_ts, BOSS2, "x")
    fake_slack.user_reacts(other.channel, other.message_ts, STRANGER, "x")  # not an approver: ignored
    assert svc.approvals.reconcile() == [(req.code, BOSS2, ReactionOutcome.REJECTED)]
    assert status(svc, req) == "rejected" and status(svc, other) == "pending"
    assert react(svc, req, BOSS) is ReactionOutcome.NO_CHANGE and svc.applied == []


def test_an_approval_only_on_the_message_never_approves_however_many_read_backs(svc, fake_slack):
    req = new_request(svc, required=1)
    svc.approvals.notifier.react(req.channel, req.message_ts, "white_check_mark")  # the bot's own hint
    fake_slack.user_reacts(req.channel, req.message_ts, BOSS, "white_check_mark")
    for _ in range(3):
        svc.approvals.reconcile()
    assert status(svc, req) == "pending" and svc.applied == []
    assert svc.approvals.book.active_votes(req.id) == set()


def test_the_scheduler_reads_the_open_requests_back_once_a_minute(svc, fake_slack, monkeypatch):
    from bot.core.scheduler import Scheduler

    monkeypatch.setattr(svc.registry, "schedules", [])  # only the housekeeping: no backup falls due mid-test
    req = new_request(svc)
    scheduler, now = Scheduler(svc, interval=1), datetime.now(timezone.utc)
    for seconds in (0, 10, 59, 61):
        scheduler.tick(now + timedelta(seconds=seconds))
    reads = [c for c in fake_slack.calls_to("reactions.get") if c.params.get("timestamp") == req.message_ts]
    assert len(reads) == 2


def test_a_read_back_slack_does_not_answer_waits_before_the_next_try(svc, fake_slack):
    req = new_request(svc)
    fake_slack.fail_next("reactions.get", 404)  # the request's message was deleted, say
    now = datetime.now(timezone.utc)
    fake_slack.user_reacts(req.channel, req.message_ts, BOSS2, "x")
    assert svc.approvals.reconcile(now) == []
    assert svc.approvals.reconcile(now + timedelta(minutes=5)) == []  # not asked again yet
    assert len(fake_slack.calls_to("reactions.get", ok_only=False)) == 1
    assert svc.approvals.reconcile(now + timedelta(minutes=16)) == [(req.code, BOSS2, ReactionOutcome.REJECTED)]
