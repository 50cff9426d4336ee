"""Restore a backup into a configured target, from the catalog or from the backup storage alone,
and prove the result with the restore drill's checks against the backup's manifest.

- restore_backup(catalog, backup_settings, RestoreOptions, into, source, progress, cancel, backup_after) -> Report
- RestoreRefused: the target is in the way (not empty, or the source itself) and --overwrite was not given
"""
from .runner import RestoreOptions, next_steps, restore_backup
from .target import RestoreRefused, inspect_target, refusals

__all__ = ["RestoreOptions", "RestoreRefused", "inspect_target", "next_steps", "refusals", "restore_backup"]
