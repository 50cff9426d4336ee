"""Restore a backup into a configured target, from the catalog or from the backup storage alone,
and prove the result with the restore drill's checks against the backup's manifest.

- restore_backup(catalog, backup_settings, RestoreOptions, into, source, progress, cancel, backup_after) -> Report
- RestoreRefused: the target is in the way (not empty, or the source itself) and --overwrite was not given
- restore_mark(target) -> str | None: what an unfinished (killed or failed) restore left marked in the target
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .marks import restore_mark
    from .runner import RestoreOptions, next_steps, restore_backup
    from .target import RestoreRefused, inspect_target, refusals

__all__ = ["RestoreOptions", "RestoreRefused", "inspect_target", "next_steps", "refusals", "restore_backup",
           "restore_mark"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".marks": ("restore_mark",),
    ".runner": ("RestoreOptions", "next_steps", "restore_backup"),
    ".target": ("RestoreRefused", "inspect_target", "refusals"),
})
