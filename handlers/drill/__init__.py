"""Restore drills: restore the latest backup into a throwaway instance, verify it, delete it, report.

The public API the bot wires into `drill`, `drill history`, `drill report <id>`, `drill schedule`,
`/db status` and the start-up cleanup.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .instance import cleanup_leftovers, register_instance_kind, register_leftover_cleaner
    from .result import DrillResult
    from .runner import run_drill
    from .schedule import DrillSchedule
    from .settings import DrillSettings, ExpectedIndex, SmokeQuery
    from .store import DrillStore, drill_alarm, schedule_report

__all__ = ["DrillResult", "DrillSettings", "DrillStore", "DrillSchedule", "ExpectedIndex", "SmokeQuery",
           "cleanup_leftovers", "drill_alarm", "register_instance_kind", "register_leftover_cleaner", "run_drill",
           "schedule_report"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".instance": ("cleanup_leftovers", "register_instance_kind", "register_leftover_cleaner"),
    ".result": ("DrillResult",),
    ".runner": ("run_drill",),
    ".schedule": ("DrillSchedule",),
    ".settings": ("DrillSettings", "ExpectedIndex", "SmokeQuery"),
    ".store": ("DrillStore", "drill_alarm", "schedule_report"),
})
