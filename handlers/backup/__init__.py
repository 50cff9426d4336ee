"""Backups: consistent pg_dump archives with a manifest that proves what they contain.

The public API (what the bot's commands call):
- BackupSettings.from_dict(section)             the [backup] section of dbops.toml (+ environment)
- BackupCatalog(state_dsn)                      the catalog in dbops.backups
- take_backup(target, settings, catalog, requested_by, scheduled=False, progress, cancel) -> BackupResult
- list_backups / backup_info / verify_backup / prune / schedule_report -> Report
- delete_backup / download_backup -> Report; download_link -> (Report, DownloadLink)   `backup delete|download|url`
- next_run, claim_scheduled_run, schedule_slot  for the scheduler
- latest_verified, materialize                  for the restore drill
- freshness                                     for /db status, the digest and the staleness alarm
- cleanup_incomplete                            at start-up
- capture_manifest / compare_manifests / BackupManifest   (manifest.py; its sealed file: seal.py)
- StorageCatalog(settings)                      the same reads, from storage alone (state database down)
- sync_catalog / sync_report                    the catalog rebuilt from storage (storage_catalog.py, sync.py)
- state_shares_target / state_placement_warning the state store on a database it protects
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .catalog import BackupCatalog, BackupRecord
    from .cleanup import cleanup_incomplete
    from .download import download_backup, download_link
    from .manifest import ArchiveInfo, BackupManifest, capture_manifest, compare_manifests
    from .placement import state_placement_warning, state_shares_target
    from .retention import delete_backup, plan_retention, prune
    from .schedule import claim_scheduled_run, next_run, schedule_report, schedule_slot
    from .seal import ManifestDamaged
    from .settings import BackupSettings, RetentionSettings, S3Settings
    from .storage import StorageError
    from .storage_catalog import StorageCatalog, storage_for
    from .sync import sync_catalog, sync_report
    from .take import BackupCancelled, BackupFailed, BackupResult, take_backup
    from .verify import ArchiveDamaged, NoKey, Unrestorable, materialize, verify_backup
    from .views import backup_info, freshness, latest_verified, list_backups

__all__ = [
    "ManifestDamaged", "NoKey", "StorageCatalog", "StorageError", "state_placement_warning", "state_shares_target",
    "storage_for", "sync_catalog", "sync_report",
    "ArchiveDamaged", "ArchiveInfo", "BackupCancelled", "BackupCatalog", "BackupFailed", "BackupManifest",
    "BackupRecord", "BackupResult", "BackupSettings", "RetentionSettings", "S3Settings", "Unrestorable",
    "backup_info", "capture_manifest", "claim_scheduled_run", "cleanup_incomplete", "compare_manifests",
    "delete_backup", "download_backup", "download_link",
    "freshness", "latest_verified", "list_backups", "materialize", "next_run", "plan_retention", "prune",
    "schedule_report", "schedule_slot", "take_backup", "verify_backup",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".catalog": ("BackupCatalog", "BackupRecord"),
    ".cleanup": ("cleanup_incomplete",),
    ".download": ("download_backup", "download_link"),
    ".manifest": ("ArchiveInfo", "BackupManifest", "capture_manifest", "compare_manifests"),
    ".placement": ("state_placement_warning", "state_shares_target"),
    ".retention": ("delete_backup", "plan_retention", "prune"),
    ".schedule": ("claim_scheduled_run", "next_run", "schedule_report", "schedule_slot"),
    ".seal": ("ManifestDamaged",),
    ".settings": ("BackupSettings", "RetentionSettings", "S3Settings"),
    ".storage": ("StorageError",),
    ".storage_catalog": ("StorageCatalog", "storage_for"),
    ".sync": ("sync_catalog", "sync_report"),
    ".take": ("BackupCancelled", "BackupFailed", "BackupResult", "take_backup"),
    ".verify": ("ArchiveDamaged", "NoKey", "Unrestorable", "materialize", "verify_backup"),
    ".views": ("backup_info", "freshness", "latest_verified", "list_backups"),
})
