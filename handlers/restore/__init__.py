"""Restore a backup into a configured target, from the catalog or from the backup storage alone,
and prove the result with the restore drill's checks against the backup's manifest.

- restore_backup(catalog, backup_settings, RestoreOptions, into, source, progress, cancel, backup_after) -> Report
- restore_foreign(ForeignArchive.of(path, url), into, options, backup_settings, ...) -> Report: an archive
  made elsewhere (`--from-file`, `--from-url`), marked as not from the catalog
- RestoreRefused: the target is in the way (not empty, or the source itself) and --overwrite was not given
- restore_mark(target) -> str | None: what an unfinished (killed or failed) restore left marked in the target
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .foreign import ForeignArchive, restore_foreign
    from .marks import restore_mark
    from .runner import RestoreOptions, next_steps, restore_backup
    from .target import RestoreRefused, inspect_target, refusals

__all__ = ["ForeignArchive", "RestoreOptions", "RestoreRefused", "inspect_target", "next_steps", "refusals",
           "restore_backup", "restore_foreign", "restore_mark"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".foreign": ("ForeignArchive", "restore_foreign"),
    ".marks": ("restore_mark",),
    ".runner": ("RestoreOptions", "next_steps", "restore_backup"),
    ".target": ("RestoreRefused", "inspect_target", "refusals"),
})
