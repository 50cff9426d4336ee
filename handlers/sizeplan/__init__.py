"""The size plan: the database's size and its Render disk recorded daily with the backup and drill
durations (`history`), and when, at the recorded growth, the nightly backup outgrows its window, the
local disk can no longer hold a drill copy, or Render's disk fills, with the move to make (`plan`)."""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .history import RenderDisk, SizeSample, history, measure, record
    from .plan import Disks, Limit, SizePlan, make_plan
    from .settings import SizePlanSettings

__all__ = ["Disks", "Limit", "RenderDisk", "SizePlan", "SizePlanSettings", "SizeSample", "history", "make_plan",
           "measure", "record"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".history": ("RenderDisk", "SizeSample", "history", "measure", "record"),
    ".plan": ("Disks", "Limit", "SizePlan", "make_plan"),
    ".settings": ("SizePlanSettings",),
})
