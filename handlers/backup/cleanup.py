"""At start-up: finish off what a killed process left behind."""
from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

from .catalog import BackupCatalog
from .settings import BackupSettings
from .storage import StorageError
from .sync import sync_catalog
from .take import PARTIAL_RE


def cleanup_incomplete(state_dsn: str, settings: BackupSettings, thorough: bool = True) -> list[str]:
    """Mark dead `running` backups failed and remove partial files no live backup is writing.

    Returns one line per thing done, for the start-up log. `thorough` (the bot's start-up) also
    brings the catalog up to storage, verifying in full what it does not know; without it (before
    each terminal command) storage is read only when a backup was just found dead, to adopt what
    it finished writing.
    """
    catalog = BackupCatalog(state_dsn)
    dead = catalog.fail_stale_running(timedelta(minutes=settings.stale_after_minutes))
    done = [f"backup {i} marked failed: interrupted before it finished" for i in dead]
    folder = Path(settings.dir)
    if folder.is_dir():
        # What is on disk first, then which backups run: a backup's catalog row is made before its
        # first file, so one that starts meanwhile is running by the time it is asked about.
        partials = [(entry, match.group(1)) for entry in sorted(folder.iterdir())
                    if (match := PARTIAL_RE.match(entry.name))]
        running = catalog.running_ids() if partials else set()
        for entry, backup_id in partials:
            if backup_id in running:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                try:
                    os.unlink(entry)
                except FileNotFoundError:
                    continue
            done.append(f"removed the unfinished file {entry.name}")
    if settings.storage == "s3" and settings.s3.bucket:
        done += _abort_orphan_uploads(settings, catalog)
    if not thorough and not dead:
        return done
    try:  # then the catalog catches up with storage: adopt, quarantine, add what it lacks
        done += sync_catalog(catalog, settings, adopt=True, verify_unknown=thorough).lines()
    except StorageError as exc:
        done.append(f"could not compare the catalog with storage ({exc}); will try at the next start")
    return done


def _abort_orphan_uploads(settings: BackupSettings, catalog: BackupCatalog) -> list[str]:
    from .storage import S3Store

    store = S3Store(settings.s3)
    done = []
    try:
        listing = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=settings.s3.prefix)
    except Exception:
        return ["could not list unfinished S3 uploads (storage unreachable); will try at the next start"]
    uploads = listing.get("Uploads", [])
    # Asked after the listing, as for the files: a backup starting meanwhile (its row is made
    # before its upload) is running by now, and its upload is not someone's leftover.
    running = catalog.running_ids() if uploads else set()
    for upload in uploads:
        backup_id = upload["Key"].rsplit("/", 1)[-1].split("_", 1)[0]
        if backup_id not in running:
            store.abort(upload["Key"], upload["UploadId"])
            done.append(f"aborted the unfinished upload {store.url(upload['Key'])}")
    return done
