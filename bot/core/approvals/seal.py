"""Seals on approval requests and their votes, so that writing the state store is not approving.

The state store is writable by more than the bot (by default it is production's database, open to the
application's role). The SHA-256 a request binds lives in the same row as the SQL it binds, so someone
who rewrites both, or inserts a vote, or moves a request to `approved`, would pass a check that reads
only the store. With DBOPS_SEAL_KEY set, the bot seals (HMAC-SHA256, key derived with HKDF) what it
decides, when it decides it:
- a request when it posts it: its id, kind, target, the SHA-256 it binds, whether it needs approval,
  how many, who asked, who applies it (bot or pipeline), until when, and the message the approvers read;
- a vote when it counts it: the request's id and SHA-256, the voter, the vote and when.
The applier, right before a request's first change, and `migrate gate` accept a request only if its
seal holds and enough approvals with holding seals remain. A key nobody stores cannot be forged with.

Known limit: a withdrawn vote's earlier row, saved by someone who reads the store, can be put back (a
seal cannot tell an old state from the current one without state kept elsewhere)."""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Mapping, Protocol

from handlers.sealing import APPROVALS, SEAL_KEY_VARIABLE, derived_key


class Sealed(Protocol):
    """What a seal covers of a request (book.ApprovalRequest; not imported: the book imports this)."""

    id: int
    kind: str
    target: str
    sha256: str
    requires_approval: bool
    required_approvals: int
    requested_by: str
    apply_by: str
    expires_at: datetime
    channel: str | None
    message_ts: str | None
    seal: str | None

    @property
    def code(self) -> str: ...


class Votes(Protocol):
    def approving_votes(self, request_id: int) -> list[dict]: ...


def approval_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key approvals are sealed with, derived from DBOPS_SEAL_KEY; None when it is not set."""
    return derived_key(APPROVALS, env)


def _mac(key: bytes, *fields: object) -> str:
    # One field per line, each written by repr: no two different field lists give the same bytes.
    return hmac.new(key, "\n".join(repr(f) for f in fields).encode(), hashlib.sha256).hexdigest()


def _utc(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


class Sealer:
    """Makes and checks seals with one key (None: nothing is sealed, nothing can be checked)."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    @classmethod
    def from_environment(cls) -> "Sealer":
        return cls(approval_key())

    def request(self, req: Sealed) -> str | None:
        if self.key is None:
            return None
        return _mac(self.key, "request", req.id, req.kind, req.target, req.sha256, req.requires_approval,
                    req.required_approvals, req.requested_by, req.apply_by, _utc(req.expires_at), req.channel,
                    req.message_ts)

    def vote(self, request_id: int, sha256: str, voter: str, vote: str, at: datetime) -> str | None:
        if self.key is None:
            return None
        return _mac(self.key, "vote", request_id, sha256, voter, str(vote), _utc(at))

    def holds(self, expected: str | None, found: str | None) -> bool:
        return expected is not None and found is not None and hmac.compare_digest(expected, found)

    def unverifiable(self, req: Sealed) -> str | None:
        """Why `req`'s seals cannot be checked here (a check not made: it says nothing about the request)."""
        if self.key is None and req.seal is not None:
            return (f"refused: `{req.code}` is sealed and {SEAL_KEY_VARIABLE} is not set here, so its approval "
                    f"cannot be checked: set the same {SEAL_KEY_VARIABLE} as the bot's")
        return None

    def problem(self, book: Votes, req: Sealed) -> str | None:
        """Why `req` must not run as the store has it; None when its seals hold (or nothing is sealed
        and no key is held here: the setup runs unsealed, and `status` says so)."""
        if self.key is None:
            return self.unverifiable(req)
        if not self.holds(self.request(req), req.seal):
            return (f"refused: the seal of `{req.code}` does not hold (it was posted before {SEAL_KEY_VARIABLE} was "
                    "set, with another key, or its row was changed in the state store after it was posted). "
                    "Nothing was applied; ask again, and find out who can write to the state database")
        if not req.requires_approval:
            return None
        sealed = {vote["voter"] for vote in book.approving_votes(req.id)
                  if self.holds(self.vote(req.id, req.sha256, vote["voter"], vote["vote"], vote["at"]), vote["seal"])}
        sealed.discard(req.requested_by)
        if len(sealed) < req.required_approvals:
            return (f"refused: `{req.code}` has {len(sealed)} approval(s) the bot sealed, of "
                    f"{req.required_approvals} needed: the others were not counted by the bot (written into "
                    "the state store by someone else). Nothing was applied; ask again, and find out who can "
                    "write to the state database")
        return None
