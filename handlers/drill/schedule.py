"""When drills run on their own: "daily HH:MM", "weekly <day>[,<day>...] HH:MM" or "off" (UTC).

`time_of_day` and `weekdays` are what bot.scheduler.Schedule takes (`at`, `weekdays`), so the bot's
scheduler claims each run once across replicas; `next_run` is for `drill schedule`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FORM = re.compile(r"^(?P<every>daily|weekly\s+(?P<days>[a-z,\s]+?))\s+(?P<h>\d{1,2}):(?P<m>\d{2})$")
_HINT = "write e.g. \"weekly sun 03:00\", \"weekly mon,thu 02:30\", \"daily 04:00\" or \"off\" (UTC)"


@dataclass(frozen=True)
class DrillSchedule:
    every: str  # "off" | "daily" | "weekly"
    days: frozenset[int] = frozenset()  # weekly: 0 = Monday
    hour: int = 3
    minute: int = 0

    @classmethod
    def parse(cls, text: str) -> "DrillSchedule":
        if not isinstance(text, str):
            raise ValueError(_HINT)
        spec = " ".join(text.strip().lower().split())
        if spec in ("off", "never", ""):
            return cls("off")
        match = _FORM.match(spec)
        if not match:
            raise ValueError(f"{text!r} is not a schedule; {_HINT}")
        hour, minute = int(match["h"]), int(match["m"])
        if hour > 23 or minute > 59:
            raise ValueError(f"{text!r}: the time must be HH:MM between 00:00 and 23:59 (UTC)")
        if match["every"] == "daily":
            return cls("daily", frozenset(), hour, minute)
        days = set()
        for name in re.split(r"[,\s]+", match["days"].strip()):
            full = [d for d in _FULL_DAYS if len(name) >= 3 and d.startswith(name)]
            if not full:
                raise ValueError(f"{text!r}: {name!r} is not a day; use {', '.join(DAYS)}")
            days.add(_FULL_DAYS.index(full[0]))
        return cls("weekly", frozenset(days), hour, minute)

    def __str__(self) -> str:
        if self.every == "off":
            return "off (on demand only)"
        at = f"{self.hour:02d}:{self.minute:02d} UTC"
        if self.every == "daily":
            return f"daily at {at}"
        return f"weekly on {', '.join(DAYS[d].capitalize() for d in sorted(self.days))} at {at}"

    @property
    def time_of_day(self) -> time | None:
        return None if self.every == "off" else time(self.hour, self.minute, tzinfo=timezone.utc)

    @property
    def weekdays(self) -> frozenset[int] | None:
        return self.days if self.every == "weekly" else None

    def next_run(self, after: datetime) -> datetime | None:
        """The first run strictly after `after` (aware), or None when off."""
        if self.every == "off":
            return None
        after = after.astimezone(timezone.utc)
        candidate = after.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if candidate <= after:
            candidate += timedelta(days=1)
        while self.every == "weekly" and candidate.weekday() not in self.days:
            candidate += timedelta(days=1)
        return candidate
