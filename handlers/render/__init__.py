"""Render's own backups, through Render's public API: the recovery window and exports checked
(`render status`), drills on a real Render point-in-time recovery, and drills of Render's exports.

Handlers only: they take settings, a client and a target, and return plain results.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .client import ConnectionInfo, RenderClient, RetryPolicy
    from .drill import (
        DRILL_PREFIX,
        InstanceNotDeleted,
        RenderDrillOutcome,
        cleanup_leftover_instances,
        delete_with_retries,
        run_render_drill,
    )
    from .errors import RenderAuthError, RenderError, RenderNotFound, RenderUnavailable, UnsafeArchive
    from .export import mirror_export, run_export_drill, safe_extract
    from .settings import RenderSettings, postgres_id_for
    from .status import RenderStatus, check_status, status_report

__all__ = ["ConnectionInfo", "DRILL_PREFIX", "InstanceNotDeleted", "RenderAuthError", "RenderClient",
           "RenderDrillOutcome", "RenderError", "RenderNotFound", "RenderSettings", "RenderStatus",
           "RenderUnavailable", "RetryPolicy", "UnsafeArchive", "check_status", "cleanup_leftover_instances",
           "delete_with_retries", "mirror_export", "postgres_id_for", "run_export_drill", "run_render_drill",
           "safe_extract", "status_report"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".client": ("ConnectionInfo", "RenderClient", "RetryPolicy"),
    ".drill": ("DRILL_PREFIX", "InstanceNotDeleted", "RenderDrillOutcome", "cleanup_leftover_instances",
               "delete_with_retries", "run_render_drill"),
    ".errors": ("RenderAuthError", "RenderError", "RenderNotFound", "RenderUnavailable", "UnsafeArchive"),
    ".export": ("mirror_export", "run_export_drill", "safe_extract"),
    ".settings": ("RenderSettings", "postgres_id_for"),
    ".status": ("RenderStatus", "check_status", "status_report"),
})
