"""Reaction events turned into votes, and the thread, message and audit side of every change."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from enum import StrEnum
from typing import Callable

from ..config import Settings
from ..notify import Notifier
from ..state.store import StateStore
from .book import ApprovalBook, ApprovalRequest, VoteChange, text_sha256
from .identity import SLACK_ID, identities, slack_identity
from .message import request_blocks, sql_files, sql_inline
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
        self.book = ApprovalBook(store)
        self.settings = ApprovalSettings.from_dict(settings.section("approvals"))
        self._bot_users: dict[str, bool] = {}

    def refresh_message(self, req: ApprovalRequest) -> None:
        if req.channel and req.message_ts:
            fresh = self.book.get(req.id) or req
            self.notifier.update(req.channel, req.message_ts, f"{fresh.kind} request {fresh.code}: {fresh.status}",
                                 request_blocks(fresh, self.settings, self.book.approvers_of(req.id)))

    def tell(self, req: ApprovalRequest, text: str, actor: str, action: str, outcome: str) -> None:
        if req.channel and req.message_ts:
            self.notifier.post(req.channel, text, thread_ts=req.message_ts)
        self.refresh_message(req)
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
        vote = "approve" if reaction == self.settings.approve_reaction else "reject"
        if self.is_requester(req, user) and vote == "approve":
            if added and self.book.record_event(event_id):
                self.notifier.ephemeral(req.channel, user, f"You asked for `{req.code}`: someone else must approve it.")
                self._refused(req, user, "approve-ignored", "own request")
            return ReactionOutcome.OWN_REQUEST
        if not self.is_approver(user):
            if self.book.record_event(event_id):
                self._refused(req, user, f"{vote}-ignored", "not an approver")
            return ReactionOutcome.NOT_AN_APPROVER
        req, change = self.book.vote(req.id, user, vote, added, now, event_id=event_id)
        if change is VoteChange.DUPLICATE:
            return ReactionOutcome.DUPLICATE
        if change is VoteChange.NONE:
            return ReactionOutcome.NO_CHANGE
        if change is VoteChange.EXPIRED:
            self.tell(req, f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied. "
                           "Send the request again.", user, "expire", "expired")
        elif change is VoteChange.REJECTED:
            self.tell(req, f":no_entry: <@{user}> rejected `{req.code}`. Nothing will be applied.", user, "reject", "rejected")
        elif change is VoteChange.WITHDRAWN:
            self.tell(req, f":leftwards_arrow_with_hook: <@{user}> withdrew their approval of `{req.code}`.", user,
                      "withdraw", "withdrawn")
        elif change is VoteChange.COUNTED:
            self.tell(req, f":ballot_box_with_check: <@{user}> approved `{req.code}` "
                           f"({self.book.approvals_count(req.id)} of {req.required_approvals}).", user, "approve", "counted")
        elif change is VoteChange.APPROVED:
            self.tell(req, f":white_check_mark: <@{user}> approved `{req.code}`: it is approved and will be applied now.",
                      user, "approve", "approved")
            self.start_apply(req)
        return ReactionOutcome(change.value)

    def is_requester(self, req: ApprovalRequest, user: str) -> bool:
        """The requester under any of their names: the Slack user who asked, the Slack user mapped to
        the `cli:<login>` that asked (when asked, or now)."""
        known = identities(self.bot_settings)
        return user in (req.requested_by, req.requester_slack, slack_identity(req.requested_by, known))

    def post_request(self, req: ApprovalRequest) -> bool:
        """Posts the request message (with the approve/reject reactions as a hint) and remembers it."""
        channel = self.bot_settings.channel or req.channel
        if not channel:
            log.error("request %s cannot be posted: DBOPS_CHANNEL is not set", req.code)
            return False
        req.channel = channel
        ts = self.notifier.post(channel, f"{req.kind} request {req.code}: {req.name} ({req.status})",
                                request_blocks(req, self.settings, []))
        if ts is None:
            return False
        self.book.set_message(req.id, channel, ts)
        req.message_ts = ts
        if "up" in req.payload and not sql_inline(req.payload):
            self._attach_sql(req)
        note = req.payload.get("requester_note")
        if note and SLACK_ID.fullmatch(req.requested_by):  # a terminal requester saw it on the terminal
            self.notifier.ephemeral(channel, req.requested_by, note)
        if req.status == "pending":
            self.notifier.react(channel, ts, self.settings.approve_reaction)
            self.notifier.react(channel, ts, self.settings.reject_reaction)
        elif req.status == "approved":  # nothing forbidden: recorded, and applied without a vote
            self.start_apply(req)
        return True

    def _attach_sql(self, req: ApprovalRequest) -> None:
        failed = [name for name, content in sql_files(req)
                  if not self.notifier.upload(req.channel, req.message_ts, name, content,
                                              f"{req.code} {name.rsplit('-', 1)[-1]} (SHA-256 {text_sha256(content)})")]
        if failed:
            self.notifier.post(req.channel, f":warning: {', '.join(failed)} could not be attached here. Do not "
                                            "approve what you have not read: ask the requester for the files and "
                                            "compare their SHA-256 with the message.", thread_ts=req.message_ts)

    def post_unposted(self) -> int:
        """Requests recorded from a terminal or CI: this replica claims and posts them."""
        channel = self.bot_settings.channel
        if not channel:
            return 0
        claimed = self.book.claim_unposted(channel)
        for req in claimed:
            if not self.post_request(req):
                self.book.unclaim(req.id)
        return len(claimed)

    def expire(self, now: datetime | None = None) -> list[ApprovalRequest]:
        expired = self.book.expire_due(now or datetime.now(timezone.utc))
        for req in expired:
            self.tell(req, f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied.",
                      "bot", "expire", "expired")
        return expired
