"""Reaction events turned into votes, and the thread, message and audit side of every change."""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable

from .. import output
from ..config import Settings
from ..notify import Notifier
from ..state.store import StateStore
from .book import ApprovalBook, ApprovalRequest, RequestStatus, Vote, VoteChange, text_sha256
from .identity import SLACK_ID, identities, slack_identity
from .message import request_blocks, sql_files
from .seal import Sealer
from .settings import ApprovalSettings

log = logging.getLogger("dbops.approvals")


class ReactionOutcome(StrEnum):
    """What one reaction event did (for logs and tests)."""

    NOT_A_MESSAGE = "not a message"
    OTHER_REACTION = "other reaction"
    NOT_A_REQUEST = "not a request"
    DUPLICATE = "duplicate delivery"
    BOT = "bot"
    OWN_REQUEST = "own request"
    NOT_AN_APPROVER = "not an approver"
    NO_CHANGE = "no change"
    COUNTED = "counted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


READ_BACK_PAUSE = timedelta(minutes=15)  # after a read-back Slack did not answer

VOTE_ACTION = {VoteChange.EXPIRED: "expire", VoteChange.REJECTED: "reject", VoteChange.WITHDRAWN: "withdraw",
               VoteChange.COUNTED: "approve", VoteChange.APPROVED: "approve"}  # the audit log's action


class Approvals:
    """Reaction events and the thread/message/audit side of every change.

    `start_apply(req)` is called once a request is approved; the service finds the applier of the
    request's kind among the areas and runs it in its worker pool."""

    def __init__(self, settings: Settings, store: StateStore, notifier: Notifier,
                 is_approver: Callable[[str], bool], start_apply: Callable[[ApprovalRequest], None]) -> None:
        self.bot_settings = settings
        self.store = store
        self.notifier = notifier
        self.is_approver = is_approver
        self.start_apply = start_apply
        self.book = ApprovalBook(store, on_move=self.redraw, sealer=Sealer.from_environment())
        self.settings = ApprovalSettings.from_dict(settings.section("approvals"))
        self._bot_users: dict[str, bool] = {}
        self._guard = threading.Lock()
        self._drawing: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
        self._shown: dict[int, bytes] = {}  # request id -> digest of the blocks its message shows
        self._read_back_paused: dict[int, datetime] = {}  # request id -> no read-back before then

    def redraw(self, request_id: int) -> None:
        """Shows the request's current state and votes on its message (chat.update), unless it shows
        them already. One redraw of a request at a time: each reads the state when it starts, so a
        slower redraw of an older state cannot land after a newer one."""
        with self._guard:
            lock = self._drawing[request_id]
        with lock:
            req = self.book.get(request_id)
            if req is None or not (req.channel and req.message_ts):
                return
            blocks = request_blocks(req, self.settings, self.book.approvers_of(request_id))
            digest = hashlib.sha256(json.dumps(blocks, sort_keys=True).encode()).digest()
            if self._shown.get(request_id) == digest:
                return
            if self.notifier.update(req.channel, req.message_ts, f"{req.kind} request {req.code}: {req.status}",
                                    blocks):
                self._shown[request_id] = digest

    def tell(self, req: ApprovalRequest, text: str, actor: str, action: str, outcome: str) -> None:
        """A short line in the request's thread, the message redrawn, and the audit entry."""
        if req.channel and req.message_ts:
            self.notifier.post(req.channel, text, thread_ts=req.message_ts)
        self.redraw(req.id)
        self.store.audit(actor, action, outcome, channel=req.channel, subcommand=f"{req.kind} {req.code}",
                         target=req.target, detail=text[:500])

    def _is_bot(self, user: str) -> bool:
        if user not in self._bot_users:
            answer = self.notifier.call("users.info", user=user)
            self._bot_users[user] = bool(answer and answer.get("user", {}).get("is_bot"))
        return self._bot_users[user]

    def _refused(self, req: ApprovalRequest, user: str, action: str, detail: str) -> None:
        self.store.audit(user, action, "refused", channel=req.channel, subcommand=f"{req.kind} {req.code}",
                         target=req.target, detail=detail)

    def on_reaction(self, event: dict, event_id: str | None, added: bool,
                    now: datetime | None = None) -> ReactionOutcome:
        now = now or datetime.now(timezone.utc)
        item = event.get("item") or {}
        if item.get("type") != "message":
            return ReactionOutcome.NOT_A_MESSAGE
        reaction, user = event.get("reaction"), event.get("user", "")
        if reaction not in (self.settings.approve_reaction, self.settings.reject_reaction):
            return ReactionOutcome.OTHER_REACTION
        req = self.book.by_message(item.get("channel"), item.get("ts"))
        if req is None:
            return ReactionOutcome.NOT_A_REQUEST
        if event_id and self.book.seen(event_id):
            return ReactionOutcome.DUPLICATE
        if self._is_bot(user):
            self.book.record_event(event_id)
            return ReactionOutcome.BOT
        vote = Vote.APPROVE if reaction == self.settings.approve_reaction else Vote.REJECT
        if self.is_requester(req, user) and vote is Vote.APPROVE:
            if added and self.book.record_event(event_id):
                self.notifier.ephemeral(req.channel, user, f"You asked for `{req.code}`: someone else must approve it.")
                self._refused(req, user, "approve-ignored", "own request")
            return ReactionOutcome.OWN_REQUEST
        if not self.is_approver(user):
            if self.book.record_event(event_id):
                self._refused(req, user, f"{vote}-ignored", "not an approver")
            return ReactionOutcome.NOT_AN_APPROVER
        return self._count_vote(req, user, vote, added, now, event_id)

    def _count_vote(self, req: ApprovalRequest, user: str, vote: Vote, added: bool, now: datetime,
                    event_id: str | None, why: str = "") -> ReactionOutcome:
        req, change = self.book.vote(req.id, user, vote, added, now, event_id=event_id)
        if change is VoteChange.DUPLICATE:
            return ReactionOutcome.DUPLICATE
        if change is VoteChange.NONE:
            return ReactionOutcome.NO_CHANGE
        self.tell(req, self.vote_line(req, user, change) + why, user, VOTE_ACTION[change], change)
        if change is VoteChange.APPROVED:
            self.start_apply(req)
        return ReactionOutcome(change.value)

    def reconcile(self, now: datetime | None = None) -> list[tuple[str, str, ReactionOutcome]]:
        """Reaction events the bot never processed (it was down or restarting, or processing failed
        after Slack had its answer): each open request's reactions read back (reactions.get) and the
        book brought in line where that fails closed. A rejection on the message rejects; an
        approval the book counts but the message no longer shows is withdrawn. An approval the
        message shows but the book lacks is not counted from a read-back, which may be stale by the
        time it is counted: its voter is asked, once, to add it again, which Slack then sends.
        Returns (request, user, outcome) for each change."""
        now = now or datetime.now(timezone.utc)
        changes = []
        for req in self.book.with_status(RequestStatus.PENDING) + self.book.with_status(RequestStatus.APPROVED):
            if not (req.channel and req.message_ts) or req.expired(now):
                continue  # expiring is expire()'s
            if self._read_back_paused.get(req.id, now) > now:
                continue
            # The book read before and after the message: a vote counted by an event during the
            # read-back is neither withdrawn nor asked for again.
            before = self.book.active_votes(req.id)
            shown = self._reactions_on(req)
            if shown is None:  # a deleted message, or Slack away: try again later, not every minute
                self._read_back_paused[req.id] = now + READ_BACK_PAUSE
                continue
            approving, rejecting = shown.get(self.settings.approve_reaction, set()), \
                shown.get(self.settings.reject_reaction, set())
            active = self.book.active_votes(req.id)
            for voter, vote in sorted(before & active):
                if vote is Vote.APPROVE and voter not in approving:
                    outcome = self._count_vote(req, voter, Vote.APPROVE, False, now, None,
                                               " (the approval is no longer on the message)")
                    changes.append((req.code, voter, outcome))
            for user in sorted(rejecting):
                if (user, Vote.REJECT) not in active and not self._is_bot(user) and self.is_approver(user):
                    outcome = self._count_vote(req, user, Vote.REJECT, True, now, None,
                                               " (read back from the message)")
                    changes.append((req.code, user, outcome))
                    if outcome is ReactionOutcome.REJECTED:
                        break
            counted = {voter for voter, vote in active if vote is Vote.APPROVE}
            for user in sorted(approving - counted):
                if self._is_bot(user) or not self.is_approver(user) or self.is_requester(req, user):
                    continue
                if self.book.record_event(f"unseen-approval:{req.id}:{user}"):  # asked once
                    self.notifier.post(req.channel, f":warning: <@{user}>, your :{self.settings.approve_reaction}: "
                                                    "is on this request but I did not see it added (was I "
                                                    "restarting?), so it is not counted: remove it and add it "
                                                    "again.", thread_ts=req.message_ts)
                    changes.append((req.code, user, ReactionOutcome.NO_CHANGE))
        return changes

    def _reactions_on(self, req: ApprovalRequest) -> dict[str, set[str]] | None:
        """Reaction name -> the users who left it on the request's message; None when Slack does not say."""
        answer = self.notifier.call("reactions.get", channel=req.channel, timestamp=req.message_ts, full=True)
        if not answer or not answer.get("ok"):
            return None
        return {r.get("name"): set(r.get("users") or []) for r in (answer.get("message") or {}).get("reactions") or []}

    def vote_line(self, req: ApprovalRequest, user: str, change: VoteChange) -> str:
        """What one vote did, as one short line in the request's thread."""
        if change is VoteChange.EXPIRED:
            return (f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied. "
                    "Send the request again.")
        if change is VoteChange.REJECTED:
            return f"✗ <@{user}> rejected it: nothing will be applied"
        count = f"({self.book.approvals_count(req.id)} of {req.required_approvals})"
        if change is VoteChange.WITHDRAWN:
            return f"↩ <@{user}> withdrew {count}"
        if change is VoteChange.APPROVED and req.apply_by == "bot":
            return f"✓ <@{user}> approved {count}: applying now"
        return f"✓ <@{user}> approved {count}"

    def is_requester(self, req: ApprovalRequest, user: str) -> bool:
        """The requester under any of their names: the Slack user who asked, the Slack user mapped to
        the `cli:<login>` that asked (when asked, or now)."""
        known = identities(self.bot_settings)
        return user in (req.requested_by, req.requester_slack, slack_identity(req.requested_by, known))

    def post_request(self, req: ApprovalRequest) -> bool:
        """Posts this request's message now (else the next scheduler tick does)."""
        return self.post_unposted(only=req.id) > 0

    def post_unposted(self, only: int | None = None) -> int:
        """Requests recorded and not posted yet (from a terminal, CI or a Slack command): each posted,
        its message recorded, then the approve/reject hints (or the apply, when it needs no vote).
        Returns how many were posted."""
        channel = self.bot_settings.channel
        if not channel:
            log.error("requests cannot be posted: DBOPS_CHANNEL is not set")
            return 0
        tried: list[int] = []
        posted = 0
        while True:
            sent: list[str] = []

            def post(req: ApprovalRequest) -> str | None:
                req.channel = channel
                ts = self.notifier.post(channel,
                                        f"{req.kind} request {req.code}: {output.escape(req.name)} ({req.status})",
                                        request_blocks(req, self.settings, []))
                if ts is not None:
                    sent.append(ts)
                return ts

            try:
                req = self.book.post_next(post, tried, only)
            except Exception:
                # Posted but not recorded: its votes could never be counted. The message goes, and the
                # request, still unposted, is posted again at the next tick.
                log.exception("recording a posted request failed; it is posted again later")
                for ts in sent:
                    self.notifier.call("chat.delete", channel=channel, ts=ts)
                return posted
            if req is None:
                return posted
            if req.message_ts is not None:
                self._posted(req)
                posted += 1

    def _posted(self, req: ApprovalRequest) -> None:
        if "up" in req.payload:
            self._attach_sql(req)
        note = req.payload.get("requester_note")
        if note and SLACK_ID.fullmatch(req.requested_by):  # a terminal requester saw it on the terminal
            self.notifier.ephemeral(req.channel, req.requested_by, note)
        if req.status is RequestStatus.PENDING:
            self.notifier.react(req.channel, req.message_ts, self.settings.approve_reaction)
            self.notifier.react(req.channel, req.message_ts, self.settings.reject_reaction)
        elif req.status is RequestStatus.APPROVED:  # nothing forbidden: recorded, and applied without a vote
            self.start_apply(req)

    def _attach_sql(self, req: ApprovalRequest) -> None:
        failed = [name for name, content in sql_files(req)
                  if not self.notifier.upload(req.channel, req.message_ts, name, content,
                                              f"{req.code} {name.rsplit('-', 1)[-1]} (SHA-256 {text_sha256(content)})")]
        if failed:
            self.notifier.post(req.channel, f":warning: {', '.join(failed)} could not be attached here. Do not "
                                            "approve what you have not read: ask the requester for the files and "
                                            "compare their SHA-256 with the message.", thread_ts=req.message_ts)

    def expire(self, now: datetime | None = None) -> list[ApprovalRequest]:
        expired = self.book.expire_due(now or datetime.now(timezone.utc))
        for req in expired:
            self.tell(req, f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied.",
                      "bot", "expire", "expired")
        return expired
