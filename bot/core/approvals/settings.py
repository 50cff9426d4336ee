"""[approvals] in dbops.toml: the reactions, how many approvals, when a request expires."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from handlers import config_values as cv


def _emoji(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or ":" in raw or " " in raw:
        raise ValueError("")
    return raw


EMOJI = "an emoji name without colons, e.g. white_check_mark"

APPROVALS = (
    cv.custom("reaction", "white_check_mark", _emoji, EMOJI,
              "an approver's reaction on the request message approves it", attr="approve_reaction"),
    cv.custom("reject_reaction", "x", _emoji, EMOJI, "an approver's reaction rejects it"),
    cv.whole("required", 1, "approvals needed before anything is applied (one more for an unverified requester)",
             low=1),
    cv.number("expires_hours", 24.0, "a request not approved by then expires", above=True),
    cv.flag("auto_apply_clean", False, "true: a rehearsed request with no finding at all (not even a warning) "
                                       "from a verified requester is applied without an approval"),
)


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
        return cls(**cv.read("approvals", APPROVALS, section))


def expires_at(settings: ApprovalSettings, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) + timedelta(hours=settings.expires_hours)
