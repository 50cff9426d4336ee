"""Render's own backups, through Render's public API: the recovery window and exports checked
(`render status`), drills on a real Render point-in-time recovery, and drills of Render's exports.

Handlers only: they take settings, a client and a target, and return plain results.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .client import ConnectionInfo, RenderClient, RetryPolicy
    from .drill import RenderDrillOutcome, run_render_drill
    from .errors import RenderAuthError, RenderError, RenderNotFound, RenderUnavailable, UnsafeArchive
    from .export import mirror_export, run_export_drill, safe_extract
    from .recovery import (
        BACKUP_PREFIX,
        DRILL_PREFIX,
        InstanceNotDeleted,
        RecoveryCopy,
        cleanup_leftover_instances,
        delete_with_retries,
    )
    from .recovery_backup import RecoveryBackupOutcome, backup_from_recovery_copy
    from .settings import RenderSettings, postgres_id_for
    from .status import RenderStatus, check_status, status_report

__all__ = ["BACKUP_PREFIX", "ConnectionInfo", "DRILL_PREFIX", "RecoveryBackupOutcome", "RecoveryCopy",
           "backup_from_recovery_copy", "InstanceNotDeleted", "RenderAuthError", "RenderClient",
           "RenderDrillOutcome", "RenderError", "RenderNotFound", "RenderSettings", "RenderStatus",
           "RenderUnavailable", "RetryPolicy", "UnsafeArchive", "check_status", "cleanup_leftover_instances",
           "delete_with_retries", "mirror_export", "postgres_id_for", "run_export_drill", "run_render_drill",
           "safe_extract", "status_report"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".client": ("ConnectionInfo", "RenderClient", "RetryPolicy"),
    ".drill": ("RenderDrillOutcome", "run_render_drill"),
    ".recovery": ("BACKUP_PREFIX", "DRILL_PREFIX", "InstanceNotDeleted", "RecoveryCopy", "cleanup_leftover_instances",
                  "delete_with_retries"),
    ".recovery_backup": ("RecoveryBackupOutcome", "backup_from_recovery_copy"),
    ".errors": ("RenderAuthError", "RenderError", "RenderNotFound", "RenderUnavailable", "UnsafeArchive"),
    ".export": ("mirror_export", "run_export_drill", "safe_extract"),
    ".settings": ("RenderSettings", "postgres_id_for"),
    ".status": ("RenderStatus", "check_status", "status_report"),
})
