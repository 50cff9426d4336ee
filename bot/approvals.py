"""Approval by reaction: requests, votes, and the reaction events that move them.

A request is approved when enough approvers put the approve reaction on
exactly its message; an approver's reject reaction rejects it; removing an
approval before apply withdraws it; requests expire. Reactions from anyone
else, from bots, on other messages, or repeated deliveries change nothing.
Every change is told in the message's thread, shown on the message itself,
and written to the audit log. All of it lives in the state store, so pending
requests survive a restart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from psycopg.types.json import Jsonb

from handlers.errors import ConfigError, UsageError
from handlers.report import Outcome, Report, Section, Table

from . import render

if TYPE_CHECKING:
    from .config import Settings
    from .service import BotService
    from .state.store import StateStore

log = logging.getLogger("dbops.approvals")


@dataclass(frozen=True)
class ApprovalSettings:
    approve_reaction: str = "white_check_mark"
    reject_reaction: str = "x"
    required: int = 1
    expires_hours: float = 24.0
    # Opt-in only: a request with no finding at all (not even a warning), rehearsed, from a verified
    # requester, is applied without an approval. Off, everything waits for `required` approvals.
    auto_apply_clean: bool = False

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "ApprovalSettings":
        known = {"reaction", "reject_reaction", "required", "expires_hours", "auto_apply_clean"}
        unknown = set(section) - known
        if unknown:
            raise ConfigError(f"[approvals] has unknown setting(s) {', '.join(sorted(unknown))}: "
                              f"known are {', '.join(sorted(known))}")
        required = section.get("required", 1)
        if isinstance(required, bool) or not isinstance(required, int) or required < 1:
            raise ConfigError("approvals.required must be a whole number >= 1")
        auto = section.get("auto_apply_clean", False)
        if not isinstance(auto, bool):
            raise ConfigError("approvals.auto_apply_clean must be true or false (default false: every request "
                              "waits for an approval)")
        hours = section.get("expires_hours", 24)
        if not isinstance(hours, (int, float)) or hours <= 0:
            raise ConfigError("approvals.expires_hours must be a number of hours > 0")
        names = (section.get("reaction", cls.approve_reaction), section.get("reject_reaction", cls.reject_reaction))
        for key, name in zip(("reaction", "reject_reaction"), names):
            if not isinstance(name, str) or not name or ":" in name or " " in name:
                raise ConfigError(f"approvals.{key} must be an emoji name without colons, e.g. white_check_mark")
        return cls(names[0], names[1], required, float(hours), auto)


# -- who asked -----------------------------------------------------------------------
_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def identities(settings: "Settings") -> dict[str, str]:
    """[identities] in dbops.toml: a terminal login or CI actor ($GITHUB_ACTOR) -> its Slack user ID."""
    section = settings.section("identities")
    for login, slack_id in section.items():
        if not isinstance(slack_id, str) or not _SLACK_ID.fullmatch(slack_id):
            raise ConfigError(f"[identities].{login} must be a Slack user ID like \"U0123456789\", not {slack_id!r}")
    return dict(section)


def slack_identity(actor: str, known: dict[str, str]) -> str | None:
    """The Slack user behind an actor: itself for a Slack user, the mapped ID for `cli:<login>`."""
    if _SLACK_ID.fullmatch(actor):
        return actor
    if actor.startswith("cli:"):
        return known.get(actor[4:])
    return None


def shown_actor(actor: str) -> str:
    """An actor that is not a Slack user, safe inside backticks (a login is whatever the terminal says)."""
    return re.sub(r"[^A-Za-z0-9_.:@+-]", "?", actor)[:80]


def mention(actor: str, slack_id: str | None = None) -> str:
    """A Slack mention only for a real Slack user ID; never `<@cli:...>`."""
    slack_id = slack_id if slack_id is not None else (actor if _SLACK_ID.fullmatch(actor) else None)
    if slack_id:
        return f"<@{slack_id}>" + ("" if slack_id == actor else f" (`{shown_actor(actor)}`)")
    return f"`{shown_actor(actor)}` (unverified)"


# -- what they saw -------------------------------------------------------------------
def text_sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def migration_sha256(up_sql: str, down_sql: str | None) -> str:
    """What an approval binds: UP and DOWN together. Computable from the files' own hashes
    (`sha256sum up.sql down.sql`), and no pair of different files shares it."""
    parts = f"dbops-migration-v1\nup {text_sha256(up_sql)}\ndown {text_sha256(down_sql) or 'none'}\n"
    return hashlib.sha256(parts.encode()).hexdigest()


INLINE_SQL_LIMIT = 2600  # characters (after Slack's escaping) of one SQL file shown in the message itself


def _slack_escape(text: str) -> str:
    # Slack's three control characters: unescaped, SQL could carry a <!channel> or a fake <@mention>.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sql_inline(payload: dict) -> bool:
    """Both files short enough, and neither able to close the code block they are shown in."""
    texts = [t for t in (payload.get("up"), payload.get("down")) if t is not None]
    return all(len(_slack_escape(t)) <= INLINE_SQL_LIMIT and "```" not in t for t in texts)


def sql_files(req: "ApprovalRequest") -> list[tuple[str, str]]:
    """(file name, content) of the SQL attached in the thread when it is too long to show inline."""
    files = [(f"{req.code}-up.sql", req.payload["up"])]
    if req.payload.get("down") is not None:
        files.append((f"{req.code}-down.sql", req.payload["down"]))
    return files


@dataclass
class ApprovalRequest:
    id: int
    kind: str
    name: str
    target: str
    sha256: str
    payload: dict
    analysis: dict
    requires_approval: bool
    required_approvals: int
    requested_by: str
    attested_by: str | None
    channel: str | None
    message_ts: str | None
    status: str
    status_detail: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    applied_at: datetime | None

    @property
    def code(self) -> str:
        return f"r{self.id:03d}"

    @property
    def requester_slack(self) -> str | None:
        """The requester's Slack user (recorded at request time from [identities]); None: unverified."""
        return self.payload.get("requester_slack") or slack_identity(self.requested_by, {})

    @property
    def apply_by(self) -> str:
        return self.payload.get("apply_by", "bot")

    def expired(self, now: datetime) -> bool:
        return self.status in ("pending", "approved") and now >= self.expires_at


class ApprovalBook:
    """The approval tables of the state store."""

    def __init__(self, store: "StateStore") -> None:
        self.store = store

    def _one(self, sql: str, params: tuple) -> ApprovalRequest | None:
        with self.store.pool.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        return ApprovalRequest(**row) if row else None

    def create(self, *, kind: str, name: str, target: str, sha256: str, payload: dict, analysis: dict,
               requires_approval: bool, required: int, requested_by: str, attested_by: str | None,
               channel: str | None, expires_at: datetime) -> ApprovalRequest:
        with self.store.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO dbops.approval_requests (kind, name, target, sha256, payload, analysis, requires_approval,"
                " required_approvals, requested_by, attested_by, channel, expires_at, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (kind, name, target, sha256, Jsonb(payload), Jsonb(analysis), requires_approval, required,
                 requested_by, attested_by, channel, expires_at, "pending" if requires_approval else "approved"),
            ).fetchone()
        return ApprovalRequest(**row)

    def set_message(self, request_id: int, channel: str, ts: str) -> None:
        with self.store.pool.connection() as conn:
            conn.execute("UPDATE dbops.approval_requests SET channel = %s, message_ts = %s WHERE id = %s",
                         (channel, ts, request_id))

    def get(self, request_id: int) -> ApprovalRequest | None:
        return self._one("SELECT * FROM dbops.approval_requests WHERE id = %s", (request_id,))

    def by_code(self, code: str) -> ApprovalRequest:
        digits = code[1:] if code[:1] == "r" else code
        found = self.get(int(digits)) if digits.isdigit() else None
        if found is None:
            raise UsageError(f"no approval request `{code}`; `migrate status` lists them")
        return found

    def by_message(self, channel: str, ts: str) -> ApprovalRequest | None:
        return self._one("SELECT * FROM dbops.approval_requests WHERE channel = %s AND message_ts = %s", (channel, ts))

    def by_sha(self, sha256: str, target: str) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT * FROM dbops.approval_requests WHERE sha256 = %s AND target = %s"
                                " ORDER BY id DESC", (sha256, target)).fetchall()
        return [ApprovalRequest(**r) for r in rows]

    def with_status(self, status: str) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT * FROM dbops.approval_requests WHERE status = %s ORDER BY id", (status,)).fetchall()
        return [ApprovalRequest(**r) for r in rows]

    def recent(self, limit: int = 30) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT * FROM dbops.approval_requests ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
        return [ApprovalRequest(**r) for r in rows]

    # An event id is recorded only together with what it did (the vote's own transaction, or after
    # an ignored event was handled): a delivery whose processing failed is processed again when
    # Slack redelivers it.
    def seen(self, event_id: str) -> bool:
        with self.store.pool.connection() as conn:
            return conn.execute("SELECT 1 FROM dbops.slack_events WHERE event_id = %s", (event_id,)).fetchone() is not None

    @staticmethod
    def _record_event(conn, event_id: str | None) -> bool:
        """False when this event id was recorded already (a repeated delivery)."""
        if not event_id:
            return True
        return conn.execute("INSERT INTO dbops.slack_events (event_id) VALUES (%s) ON CONFLICT DO NOTHING"
                            " RETURNING 1", (event_id,)).fetchone() is not None

    def record_event(self, event_id: str | None) -> bool:
        with self.store.pool.connection() as conn:
            return self._record_event(conn, event_id)

    def approvers_of(self, request_id: int) -> list[str]:
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT voter FROM dbops.approval_votes WHERE request_id = %s AND vote = 'approve'"
                                " AND withdrawn_at IS NULL ORDER BY at", (request_id,)).fetchall()
        return [r["voter"] for r in rows]

    def vote(self, request_id: int, voter: str, vote: str, added: bool, now: datetime,
             event_id: str | None = None) -> tuple[ApprovalRequest, str | None]:
        """Records a vote (or its withdrawal) and moves the request; returns it and what changed:
        None (nothing), "duplicate" (this event id was handled before), "counted", "approved",
        "rejected", "withdrawn", "expired". The event id is recorded in the same transaction."""
        with self.store.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT * FROM dbops.approval_requests WHERE id = %s FOR UPDATE", (request_id,)).fetchone()
            req = ApprovalRequest(**row)
            if not self._record_event(conn, event_id):
                return req, "duplicate"
            if req.status not in ("pending", "approved", "applying"):
                return req, None
            if req.expired(now):
                conn.execute("UPDATE dbops.approval_requests SET status = 'expired', decided_at = %s WHERE id = %s",
                             (now, request_id))
                req.status = "expired"
                return req, "expired"
            if added:
                changed = conn.execute(
                    "INSERT INTO dbops.approval_votes (request_id, voter, vote, at) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (request_id, voter, vote) DO UPDATE SET withdrawn_at = NULL, at = EXCLUDED.at"
                    " WHERE approval_votes.withdrawn_at IS NOT NULL RETURNING 1", (request_id, voter, vote, now)).fetchone()
                if not changed:
                    return req, None
                if vote == "reject":
                    if req.status == "applying":
                        return req, None  # too late to reject: it is running
                    conn.execute("UPDATE dbops.approval_requests SET status = 'rejected', decided_at = %s,"
                                 " status_detail = %s WHERE id = %s", (now, f"rejected by {voter}", request_id))
                    req.status = "rejected"
                    return req, "rejected"
                count = self._count(conn, request_id)
                if req.status == "pending" and count >= req.required_approvals:
                    conn.execute("UPDATE dbops.approval_requests SET status = 'approved', decided_at = %s WHERE id = %s",
                                 (now, request_id))
                    req.status = "approved"
                    return req, "approved"
                return req, "counted"
            removed = conn.execute(
                "UPDATE dbops.approval_votes SET withdrawn_at = %s WHERE request_id = %s AND voter = %s AND vote = %s"
                " AND withdrawn_at IS NULL RETURNING 1", (now, request_id, voter, vote)).fetchone()
            if not removed or vote != "approve":
                return req, None
            if req.status == "approved" and self._count(conn, request_id) < req.required_approvals:
                conn.execute("UPDATE dbops.approval_requests SET status = 'pending', decided_at = NULL WHERE id = %s",
                             (request_id,))
                req.status = "pending"
            return req, "withdrawn"

    @staticmethod
    def _count(conn, request_id: int) -> int:
        return conn.execute("SELECT count(*) AS n FROM dbops.approval_votes WHERE request_id = %s AND vote = 'approve'"
                            " AND withdrawn_at IS NULL", (request_id,)).fetchone()["n"]

    def approvals_count(self, request_id: int) -> int:
        with self.store.pool.connection() as conn:
            return self._count(conn, request_id)

    def move(self, request_id: int, from_status: tuple[str, ...], to_status: str, detail: str | None = None) -> bool:
        """Compare-and-set on the status: True when this caller made the change."""
        extra = ", applied_at = now()" if to_status == "applied" else ""
        with self.store.pool.connection() as conn:
            row = conn.execute(
                f"UPDATE dbops.approval_requests SET status = %s, status_detail = coalesce(%s, status_detail){extra}"
                " WHERE id = %s AND status = ANY(%s) RETURNING 1", (to_status, detail, request_id, list(from_status))
            ).fetchone()
        return row is not None

    def expire_due(self, now: datetime) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute(
                "UPDATE dbops.approval_requests SET status = 'expired', decided_at = %s"
                " WHERE status IN ('pending', 'approved') AND expires_at <= %s RETURNING *", (now, now)).fetchall()
        return [ApprovalRequest(**r) for r in rows]


# -- rendering the request message -------------------------------------------------
def report_to_dict(report: Report) -> dict:
    data = dataclasses.asdict(report)
    data["outcome"] = report.outcome.value
    return data


def report_from_dict(data: dict) -> Report:
    sections = [Section(s["title"], s.get("text", ""), Table(**s["table"]) if s.get("table") else None)
                for s in data.get("sections", [])]
    return Report(title=data["title"], summary=data["summary"], outcome=Outcome(data["outcome"]),
                  sections=sections, data=data.get("data", {}))


STATUS_LINE = {
    "pending": ":hourglass: *Waiting for approval*",
    "approved": ":white_check_mark: *Approved*: applying next",
    "applying": ":gear: *Applying*",
    "applied": ":white_check_mark: *Applied*",
    "rejected": ":no_entry: *Rejected*",
    "expired": ":alarm_clock: *Expired*",
    "failed": ":x: *Apply failed*",
}


def _mrkdwn(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def sql_blocks(req: ApprovalRequest) -> list[dict]:
    """What the approvers approve: the full UP and DOWN (or where to read them) and the hashes."""
    payload = req.payload
    if "up" not in payload:
        return []
    blocks = []
    if sql_inline(payload):
        for label, text in (("UP", payload["up"]), ("DOWN", payload.get("down"))):
            if text is None:
                blocks.append(_mrkdwn(f"*{label} SQL*: none given"))
            else:
                blocks.append(_mrkdwn(f"*{label} SQL*\n```{_slack_escape(text.rstrip()) or ' '}```"))
    else:
        names = ", ".join(f"`{name}`" for name, _ in sql_files(req))
        sizes = " and ".join(f"{label} {len(text.splitlines())} lines" for label, text in
                             (("UP", payload["up"]), ("DOWN", payload.get("down"))) if text is not None)
        blocks.append(_mrkdwn(f"*UP and DOWN SQL* ({sizes}): too long to show here, attached in full in this "
                              f"message's thread as {names}. Read them before approving."))
    down_sha = text_sha256(payload.get("down"))
    blocks.append(_mrkdwn(f"*SHA-256 of UP+DOWN* (what an approval binds): `{req.sha256}`\n"
                          f"UP `{text_sha256(payload['up'])}`\nDOWN " + (f"`{down_sha}`" if down_sha else "none")))
    return blocks


def request_blocks(req: ApprovalRequest, settings: ApprovalSettings, approvers: list[str]) -> list[dict]:
    status = STATUS_LINE[req.status]
    if req.status == "approved" and req.apply_by == "pipeline":
        status = ":white_check_mark: *Approved*: the deploy pipeline applies it (`dbops migrate gate`)"
    head = [_mrkdwn(f"{status} — request `{req.code}` ({req.kind} `{req.name}` on `{req.target}`)"
                    + (f"\n{req.status_detail}" if req.status_detail else ""))]
    if not req.requester_slack:
        head.append(_mrkdwn(f":warning: The requester {mention(req.requested_by)} is *unverified*: no Slack user is "
                            "mapped to that login under [identities] in dbops.toml, so they could approve their own "
                            f"request as someone else. It needs one approval more than usual ({req.required_approvals})."))
    head += sql_blocks(req)
    body = []
    if req.analysis.get("report"):
        body = render.report_blocks(report_from_dict(req.analysis["report"]))[1:]  # the header is ours
    attested = mention(req.attested_by, slack_identity(req.attested_by, {}) or (
        req.requester_slack if req.attested_by == req.requested_by else None)) if req.attested_by else "*not attested*"
    votes = ", ".join(f"<@{a}>" for a in approvers) or "none yet"
    footer = (f"Requested by {mention(req.requested_by, req.requester_slack)} · tested on staging: {attested} · "
              f"applied by: {'the bot' if req.apply_by == 'bot' else 'the deploy pipeline'}\n"
              f"Approvals: {votes} ({len(approvers)} of {req.required_approvals} needed) · "
              f"expires {req.expires_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC")
    if req.status == "pending":
        footer += (f"\nTo approve, an approver (not the requester) reacts with :{settings.approve_reaction}: on this "
                   f"message; :{settings.reject_reaction}: rejects.")
    foot = {"type": "context", "elements": [{"type": "mrkdwn", "text": footer[:3000]}]}
    return head + body[:max(0, 49 - len(head))] + [foot]


# -- reactions ---------------------------------------------------------------------
# Applying an approved request, per kind: set by the area that creates such requests.
APPLIERS: dict[str, Callable[["BotService", ApprovalRequest], None]] = {}


class Approvals:
    """Reaction events and the thread/message/audit side of every change."""

    def __init__(self, svc: "BotService") -> None:
        self.svc = svc
        self.book = ApprovalBook(svc.store)
        self.settings = ApprovalSettings.from_dict(svc.settings.section("approvals"))
        self._bot_users: dict[str, bool] = {}

    def refresh_message(self, req: ApprovalRequest) -> None:
        if req.channel and req.message_ts:
            fresh = self.book.get(req.id) or req
            self.svc.notifier.update(req.channel, req.message_ts, f"{fresh.kind} request {fresh.code}: {fresh.status}",
                                     request_blocks(fresh, self.settings, self.book.approvers_of(req.id)))

    def tell(self, req: ApprovalRequest, text: str, actor: str, action: str, outcome: str) -> None:
        if req.channel and req.message_ts:
            self.svc.notifier.post(req.channel, text, thread_ts=req.message_ts)
        self.refresh_message(req)
        self.svc.store.audit(actor, action, outcome, channel=req.channel, subcommand=f"{req.kind} {req.code}",
                             target=req.target, detail=text[:500])

    def _is_bot(self, user: str) -> bool:
        if user not in self._bot_users:
            answer = self.svc.notifier.call("users.info", user=user)
            self._bot_users[user] = bool(answer and answer.get("user", {}).get("is_bot"))
        return self._bot_users[user]

    def on_reaction(self, event: dict, event_id: str | None, added: bool, now: datetime | None = None) -> str:
        """Returns what happened (for logs and tests)."""
        now = now or datetime.now(timezone.utc)
        item = event.get("item") or {}
        if item.get("type") != "message":
            return "not a message"
        reaction, user = event.get("reaction"), event.get("user", "")
        if reaction not in (self.settings.approve_reaction, self.settings.reject_reaction):
            return "other reaction"
        req = self.book.by_message(item.get("channel"), item.get("ts"))
        if req is None:
            return "not a request"
        if event_id and self.book.seen(event_id):
            return "duplicate delivery"
        if self._is_bot(user):
            self.book.record_event(event_id)
            return "bot"
        vote = "approve" if reaction == self.settings.approve_reaction else "reject"
        if self.is_requester(req, user) and vote == "approve":
            if added and self.book.record_event(event_id):
                self.svc.notifier.ephemeral(req.channel, user, f"You asked for `{req.code}`: someone else must approve it.")
                self.svc.store.audit(user, "approve-ignored", "refused", channel=req.channel,
                                     subcommand=f"{req.kind} {req.code}", target=req.target, detail="own request")
            return "own request"
        if not self.svc.is_approver(user):
            if self.book.record_event(event_id):
                self.svc.store.audit(user, f"{vote}-ignored", "refused", channel=req.channel,
                                     subcommand=f"{req.kind} {req.code}", target=req.target, detail="not an approver")
            return "not an approver"
        req, change = self.book.vote(req.id, user, vote, added, now, event_id=event_id)
        if change == "duplicate":
            return "duplicate delivery"
        if change is None:
            return "no change"
        if change == "expired":
            self.tell(req, f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied. "
                           "Send the request again.", user, "expire", "expired")
        elif change == "rejected":
            self.tell(req, f":no_entry: <@{user}> rejected `{req.code}`. Nothing will be applied.", user, "reject", "rejected")
        elif change == "withdrawn":
            self.tell(req, f":leftwards_arrow_with_hook: <@{user}> withdrew their approval of `{req.code}`.", user,
                      "withdraw", "withdrawn")
        elif change == "counted":
            self.tell(req, f":ballot_box_with_check: <@{user}> approved `{req.code}` "
                           f"({self.book.approvals_count(req.id)} of {req.required_approvals}).", user, "approve", "counted")
        elif change == "approved":
            self.tell(req, f":white_check_mark: <@{user}> approved `{req.code}`: it is approved and will be applied now.",
                      user, "approve", "approved")
            self.start_apply(req)
        return change

    def is_requester(self, req: ApprovalRequest, user: str) -> bool:
        """The requester under any of their names: the Slack user who asked, the Slack user mapped to
        the `cli:<login>` that asked (when asked, or now)."""
        known = identities(self.svc.settings)
        return user in (req.requested_by, req.requester_slack, slack_identity(req.requested_by, known))

    def post_request(self, req: ApprovalRequest) -> bool:
        """Posts the request message (with the approve/reject reactions as a hint) and remembers it."""
        channel = self.svc.settings.channel or req.channel
        if not channel:
            log.error("request %s cannot be posted: DBOPS_CHANNEL is not set", req.code)
            return False
        req.channel = channel
        ts = self.svc.notifier.post(channel, f"{req.kind} request {req.code}: {req.name} ({req.status})",
                                    request_blocks(req, self.settings, []))
        if ts is None:
            return False
        self.book.set_message(req.id, channel, ts)
        req.message_ts = ts
        if "up" in req.payload and not sql_inline(req.payload):
            self._attach_sql(req)
        note = req.payload.get("requester_note")
        if note and _SLACK_ID.fullmatch(req.requested_by):  # a terminal requester saw it on the terminal
            self.svc.notifier.ephemeral(channel, req.requested_by, note)
        if req.status == "pending":
            self.svc.notifier.react(channel, ts, self.settings.approve_reaction)
            self.svc.notifier.react(channel, ts, self.settings.reject_reaction)
        elif req.status == "approved":  # nothing forbidden: recorded, and applied without a vote
            self.start_apply(req)
        return True

    def _attach_sql(self, req: ApprovalRequest) -> None:
        failed = [name for name, content in sql_files(req)
                  if not self.svc.notifier.upload(req.channel, req.message_ts, name, content,
                                                  f"{req.code} {name.rsplit('-', 1)[-1]} (SHA-256 {text_sha256(content)})")]
        if failed:
            self.svc.notifier.post(req.channel, f":warning: {', '.join(failed)} could not be attached here. Do not "
                                                "approve what you have not read: ask the requester for the files and "
                                                "compare their SHA-256 with the message.", thread_ts=req.message_ts)

    def post_unposted(self) -> int:
        """Requests recorded from a terminal or CI: this replica claims and posts them."""
        channel = self.svc.settings.channel
        if not channel:
            return 0
        with self.svc.store.pool.connection() as conn:
            rows = conn.execute(
                "UPDATE dbops.approval_requests SET channel = %s WHERE id IN (SELECT id FROM dbops.approval_requests"
                " WHERE message_ts IS NULL AND channel IS NULL AND status IN ('pending', 'approved')"
                " FOR UPDATE SKIP LOCKED) RETURNING *", (channel,)).fetchall()
        for row in rows:
            req = ApprovalRequest(**row)
            if not self.post_request(req):
                with self.svc.store.pool.connection() as conn:  # let a later tick try again
                    conn.execute("UPDATE dbops.approval_requests SET channel = NULL WHERE id = %s AND message_ts IS NULL",
                                 (req.id,))
        return len(rows)

    def start_apply(self, req: ApprovalRequest) -> None:
        applier = APPLIERS.get(req.kind)
        if applier is None:
            log.error("no applier for %s requests", req.kind)
            return
        self.svc.runner.submit(lambda: applier(self.svc, req))

    def expire(self, now: datetime | None = None) -> list[ApprovalRequest]:
        expired = self.book.expire_due(now or datetime.now(timezone.utc))
        for req in expired:
            self.tell(req, f":alarm_clock: `{req.code}` expired before it was approved; nothing was applied.",
                      "bot", "expire", "expired")
        return expired


def expires_at(settings: ApprovalSettings, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) + timedelta(hours=settings.expires_hours)


def register_listeners(app, svc: "BotService") -> None:
    @app.event("reaction_added")
    def reaction_added(event: dict, body: dict) -> None:
        svc.approvals.on_reaction(event, body.get("event_id"), added=True)

    @app.event("reaction_removed")
    def reaction_removed(event: dict, body: dict) -> None:
        svc.approvals.on_reaction(event, body.get("event_id"), added=False)


def _register_settings_check() -> None:
    from . import config

    checks = getattr(config, "SETTINGS_CHECKS", None)
    if checks is not None and not any(name == "identities" for name, _ in checks):
        checks.append(("identities", identities))


_register_settings_check()
