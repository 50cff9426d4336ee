"""Restore drills: restore the latest backup into a throwaway instance, verify it, delete it, report.

The public API the bot wires into `drill`, `drill history`, `drill report <id>`, `drill schedule`,
`/db status` and the start-up cleanup.
"""
from .instance import cleanup_leftovers, register_instance_kind, register_leftover_cleaner
from .result import DrillResult
from .runner import run_drill
from .schedule import DrillSchedule
from .settings import DrillSettings, ExpectedIndex, SmokeQuery
from .store import DrillStore, drill_alarm, schedule_report

__all__ = ["DrillResult", "DrillSettings", "DrillStore", "DrillSchedule", "ExpectedIndex", "SmokeQuery",
           "cleanup_leftovers", "drill_alarm", "register_instance_kind", "register_leftover_cleaner", "run_drill",
           "schedule_report"]
