"""The approval book: requests and votes in the state store (SQL), and what an approval binds."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Callable

from handlers.errors import UsageError

from ..state.store import StateStore
from .identity import slack_identity
from .seal import Sealer


def text_sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def migration_sha256(up_sql: str, down_sql: str | None) -> str:
    """What an approval binds: UP and DOWN together. Computable from the files' own hashes
    (`sha256sum up.sql down.sql`), and no pair of different files shares it."""
    parts = f"dbops-migration-v1\nup {text_sha256(up_sql)}\ndown {text_sha256(down_sql) or 'none'}\n"
    return hashlib.sha256(parts.encode()).hexdigest()



class RequestStatus(StrEnum):
    """Where a request is. Stored as these strings in dbops.approval_requests.status."""

    PENDING = "pending"  # waiting for approvals
    APPROVED = "approved"  # enough approvals; the applier (or the deploy pipeline) has not started
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def open(self) -> bool:
        """Still moving: a vote can change it."""
        return self in OPEN


OPEN = frozenset({RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.APPLYING})
WAITING = (RequestStatus.PENDING, RequestStatus.APPROVED)  # not started: these expire


class Vote(StrEnum):
    """A vote, as stored in dbops.approval_votes.vote."""

    APPROVE = "approve"
    REJECT = "reject"


class VoteChange(StrEnum):
    """What a vote (or its withdrawal) changed."""

    NONE = "no change"
    DUPLICATE = "duplicate"  # this event id was handled before
    COUNTED = "counted"  # an approval, not yet enough
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"  # it expired before this vote


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
    status: RequestStatus
    status_detail: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    applied_at: datetime | None
    seal: str | None = None  # the bot's, made when it posted the request (seal.py); None: made without a key
    told_status: str | None = None  # last told in its thread for the pipeline (`take_untold_by_pipeline`)

    def __post_init__(self) -> None:
        self.status = RequestStatus(self.status)

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
        return self.status in WAITING and now >= self.expires_at


class ApprovalBook:
    """The approval tables of the state store.

    `on_move(request_id)` is called after every status change `move` makes, whoever asked for it:
    the request's message then shows the new state without each applier remembering to redraw it.
    `sealer`: seals what this book records for the bot (a posted request, a counted vote; seal.py)."""

    def __init__(self, store: StateStore, on_move: Callable[[int], None] | None = None,
                 sealer: Sealer | None = None) -> None:
        self.store = store
        self.on_move = on_move
        self.sealer = sealer or Sealer(None)

    def _one(self, sql: str, params: tuple) -> ApprovalRequest | None:
        with self.store.pool.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        return ApprovalRequest(**row) if row else None

    def create(self, *, kind: str, name: str, target: str, sha256: str, payload: dict, analysis: dict,
               requires_approval: bool, required: int, requested_by: str, attested_by: str | None,
               channel: str | None, expires_at: datetime) -> ApprovalRequest:
        from psycopg.types.json import Jsonb  # here, not at the top: command declarations import this module

        with self.store.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO dbops.approval_requests (kind, name, target, sha256, payload, analysis, requires_approval,"
                " required_approvals, requested_by, attested_by, channel, expires_at, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (kind, name, target, sha256, Jsonb(payload), Jsonb(analysis), requires_approval, required,
                 requested_by, attested_by, channel, expires_at,
                 RequestStatus.PENDING if requires_approval else RequestStatus.APPROVED),
            ).fetchone()
        return ApprovalRequest(**row)

    def set_message(self, request_id: int, channel: str, ts: str) -> None:
        with self.store.pool.connection() as conn:
            row = conn.execute("SELECT * FROM dbops.approval_requests WHERE id = %s FOR UPDATE",
                               (request_id,)).fetchone()
            self._record_message(conn, ApprovalRequest(**row), channel, ts)

    def _record_message(self, conn, req: ApprovalRequest, channel: str, ts: str) -> None:
        """Where the request was posted, and its seal over what the approvers read there."""
        req.channel, req.message_ts = channel, ts
        req.seal = self.sealer.request(req)
        conn.execute("UPDATE dbops.approval_requests SET channel = %s, message_ts = %s, seal = %s WHERE id = %s",
                     (channel, ts, req.seal, req.id))

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

    def with_status(self, status: RequestStatus) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT * FROM dbops.approval_requests WHERE status = %s ORDER BY id",
                                (status,)).fetchall()
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
            return conn.execute("SELECT 1 FROM dbops.slack_events WHERE event_id = %s",
                                (event_id,)).fetchone() is not None

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
            rows = conn.execute("SELECT voter FROM dbops.approval_votes WHERE request_id = %s AND vote = %s"
                                " AND withdrawn_at IS NULL ORDER BY at", (request_id, Vote.APPROVE)).fetchall()
        return [r["voter"] for r in rows]

    def approving_votes(self, request_id: int) -> list[dict]:
        """The approvals not withdrawn, with when they were counted and their seals (seal.py checks them)."""
        with self.store.pool.connection() as conn:
            return conn.execute("SELECT voter, vote, at, seal FROM dbops.approval_votes WHERE request_id = %s"
                                " AND vote = %s AND withdrawn_at IS NULL", (request_id, Vote.APPROVE)).fetchall()

    def active_votes(self, request_id: int) -> set[tuple[str, Vote]]:
        """(voter, vote) of every vote on the request not withdrawn."""
        with self.store.pool.connection() as conn:
            rows = conn.execute("SELECT voter, vote FROM dbops.approval_votes WHERE request_id = %s"
                                " AND withdrawn_at IS NULL", (request_id,)).fetchall()
        return {(r["voter"], Vote(r["vote"])) for r in rows}

    def vote(self, request_id: int, voter: str, vote: Vote, added: bool, now: datetime,
             event_id: str | None = None) -> tuple[ApprovalRequest, VoteChange]:
        """Records a vote (or its withdrawal) and moves the request; returns it and what changed.
        The event id is recorded in the same transaction."""
        with self.store.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT * FROM dbops.approval_requests WHERE id = %s FOR UPDATE",
                               (request_id,)).fetchone()
            req = ApprovalRequest(**row)
            if not self._record_event(conn, event_id):
                return req, VoteChange.DUPLICATE
            if not req.status.open:
                return req, VoteChange.NONE
            if req.expired(now):
                self._set_status(conn, req, RequestStatus.EXPIRED, decided_at=now)
                return req, VoteChange.EXPIRED
            if added:
                changed = conn.execute(
                    "INSERT INTO dbops.approval_votes (request_id, voter, vote, at, seal) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (request_id, voter, vote) DO UPDATE SET withdrawn_at = NULL, at = EXCLUDED.at,"
                    " seal = EXCLUDED.seal WHERE approval_votes.withdrawn_at IS NOT NULL RETURNING 1",
                    (request_id, voter, vote, now, self.sealer.vote(request_id, req.sha256, voter, vote, now))
                ).fetchone()
                if not changed:
                    return req, VoteChange.NONE
                if vote is Vote.REJECT:
                    if req.status is RequestStatus.APPLYING:
                        return req, VoteChange.NONE  # too late to reject: it is running
                    self._set_status(conn, req, RequestStatus.REJECTED, decided_at=now, detail=f"rejected by {voter}")
                    return req, VoteChange.REJECTED
                if req.status is RequestStatus.PENDING and self._count(conn, request_id) >= req.required_approvals:
                    self._set_status(conn, req, RequestStatus.APPROVED, decided_at=now)
                    return req, VoteChange.APPROVED
                return req, VoteChange.COUNTED
            removed = conn.execute(
                "UPDATE dbops.approval_votes SET withdrawn_at = %s WHERE request_id = %s AND voter = %s AND vote = %s"
                " AND withdrawn_at IS NULL RETURNING 1", (now, request_id, voter, vote)).fetchone()
            if not removed or vote is not Vote.APPROVE:
                return req, VoteChange.NONE
            if req.status is RequestStatus.APPROVED and self._count(conn, request_id) < req.required_approvals:
                self._set_status(conn, req, RequestStatus.PENDING, decided_at=None)
            return req, VoteChange.WITHDRAWN

    @staticmethod
    def _set_status(conn, req: ApprovalRequest, status: RequestStatus, decided_at: datetime | None,
                    detail: str | None = None) -> None:
        conn.execute("UPDATE dbops.approval_requests SET status = %s, decided_at = %s,"
                     " status_detail = coalesce(%s, status_detail) WHERE id = %s", (status, decided_at, detail, req.id))
        req.status = status
        if detail is not None:
            req.status_detail = detail

    @staticmethod
    def _count(conn, request_id: int) -> int:
        return conn.execute("SELECT count(*) AS n FROM dbops.approval_votes WHERE request_id = %s AND vote = %s"
                            " AND withdrawn_at IS NULL", (request_id, Vote.APPROVE)).fetchone()["n"]

    def approvals_count(self, request_id: int) -> int:
        with self.store.pool.connection() as conn:
            return self._count(conn, request_id)

    def move(self, request_id: int, from_status: tuple[RequestStatus, ...], to_status: RequestStatus,
             detail: str | None = None) -> bool:
        """Compare-and-set on the status: True when this caller made the change."""
        extra = ", applied_at = now()" if to_status is RequestStatus.APPLIED else ""
        with self.store.pool.connection() as conn:
            row = conn.execute(
                f"UPDATE dbops.approval_requests SET status = %s, status_detail = coalesce(%s, status_detail){extra}"
                " WHERE id = %s AND status = ANY(%s) RETURNING 1",
                (RequestStatus(to_status), detail, request_id, [RequestStatus(s) for s in from_status])
            ).fetchone()
        if row is not None and self.on_move is not None:
            self.on_move(request_id)
        return row is not None

    def post_next(self, post: Callable[[ApprovalRequest], str | None], tried: list[int],
                  only: int | None = None) -> ApprovalRequest | None:
        """The next request not posted yet (recorded from a terminal, CI or a Slack command; `only`: that
        one), posted by `post(req) -> its message ts` and recorded with its message in one transaction
        that holds its row: another replica skips it meanwhile, and one whose recording fails stays
        unposted, to be posted again (nothing is claimed ahead of posting). Its id goes in `tried`;
        its message_ts stays None when Slack did not take it. None when there is no other."""
        with self.store.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT * FROM dbops.approval_requests WHERE message_ts IS NULL AND status = ANY(%s)"
                " AND id <> ALL(%s) AND (%s::bigint IS NULL OR id = %s) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (list(WAITING), tried, only, only)).fetchone()
            if row is None:
                return None
            req = ApprovalRequest(**row)
            tried.append(req.id)
            ts = post(req)
            if ts is not None:
                self._record_message(conn, req, req.channel, ts)
        return req

    def take_untold_by_pipeline(self) -> list[ApprovalRequest]:
        """Pipeline requests the gate ended (refused, or applied with --mark-applied) that their thread
        was not told of, each marked told here: one replica tells each outcome once."""
        with self.store.pool.connection() as conn:
            rows = conn.execute(
                "UPDATE dbops.approval_requests SET told_status = status WHERE payload->>'apply_by' = 'pipeline'"
                " AND status = ANY(%s) AND told_status IS DISTINCT FROM status AND message_ts IS NOT NULL"
                " RETURNING *", ([RequestStatus.APPLIED, RequestStatus.FAILED],)).fetchall()
        return [ApprovalRequest(**r) for r in sorted(rows, key=lambda r: r["id"])]

    def expire_due(self, now: datetime) -> list[ApprovalRequest]:
        with self.store.pool.connection() as conn:
            rows = conn.execute(
                "UPDATE dbops.approval_requests SET status = %s, decided_at = %s"
                " WHERE status = ANY(%s) AND expires_at <= %s RETURNING *",
                (RequestStatus.EXPIRED, now, list(WAITING), now)).fetchall()
        return [ApprovalRequest(**r) for r in rows]

