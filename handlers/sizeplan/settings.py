"""The `[sizeplan]` section of dbops.toml: the limits the size plan projects against."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import config_values as cv

SIZEPLAN = (
    cv.number("backup_window_minutes", 60.0, "the nightly backup must finish within this", low=1),
    cv.whole("warn_days", 90, "status and the digest warn this long before a limit is reached", low=1),
    cv.whole("trend_days", 90, "growth is measured over this much history", low=7),
    cv.whole("min_history_days", 7, "no growth is projected from less history than this", low=1),
)


@dataclass
class SizePlanSettings:
    backup_window_minutes: float = 60.0
    warn_days: int = 90
    trend_days: int = 90
    min_history_days: int = 7

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SizePlanSettings":
        return cls(**cv.read("sizeplan", SIZEPLAN, d))
