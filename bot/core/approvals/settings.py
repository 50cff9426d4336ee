"""[approvals] in dbops.toml: the reactions, how many approvals, when a request expires."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from handlers.errors import ConfigError


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


def expires_at(settings: ApprovalSettings, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) + timedelta(hours=settings.expires_hours)
