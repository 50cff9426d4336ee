"""Getting a backup out of the bot: `backup download ID [--to FILE]` (streamed from its storage,
decrypted on the way, its SHA-256 checked against the catalog before the file gets its name) and
`backup url ID` (a pre-signed S3 link that expires soon, handed to the requester only).

A download is written under a hidden `.NAME.partial` name and renamed only once every byte was read,
every encrypted chunk authenticated and the stored archive's SHA-256 matched: a damaged, truncated
or cancelled download leaves nothing that looks like a backup."""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .. import fmt
from ..errors import Cancelled, ConfigError, UsageError
from ..report import Progress, ProgressFn, Report, key_values, no_progress
from . import crypto
from .catalog import BackupRecord
from .settings import BackupSettings, MiB, encryption_key_from_env
from .storage import S3Store, StorageError
from .verify import ArchiveDamaged, require_sha256

BLOCK = 4 * MiB


@dataclass
class _Stream:
    """The stored archive as it is read: hashed (the catalog's SHA-256 is of these bytes), counted for
    the progress line, and stopped on cancel."""

    raw: BinaryIO
    total: int
    progress: ProgressFn
    cancel: threading.Event
    label: str
    read_bytes: int = 0
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def read(self, n: int = -1) -> bytes:
        if self.cancel.is_set():
            raise Cancelled("the download was cancelled; its partial file was removed")
        data = self.raw.read(BLOCK if n is None or n < 0 else n)
        self.digest.update(data)
        self.read_bytes += len(data)
        self.progress(Progress("downloading", self.read_bytes / self.total if self.total else None,
                               f"{self.label}: {fmt.size(self.read_bytes)} of {fmt.size(self.total)}"))
        return data


class _Written:
    """The file being written, hashed as it is: the SHA-256 of what the reader gets."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


def _usable(catalog, backup_id: str) -> tuple[BackupRecord, object]:
    record = catalog.require(backup_id)
    if not record.usable:
        raise UsageError(f"backup {record.id} has no archive (it is {'deleted' if record.deleted_at else record.status}"
                         + (f": {record.error}" if record.error else "") + ")")
    manifest = catalog.manifest(record.id)
    if manifest is None:
        raise ArchiveDamaged(f"backup {record.id} has no manifest in the catalog")
    return record, manifest


def _stored_name(record: BackupRecord, manifest) -> str:
    stored = manifest.archive.key if record.storage == "s3" else record.location
    return Path(stored or f"{record.id}.dump").name


def _open_stored(record: BackupRecord, manifest, settings: BackupSettings) -> BinaryIO:
    if record.storage == "s3":
        store = S3Store(settings.s3)
        key = manifest.archive.key or ""
        try:
            return store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
        except Exception as exc:  # botocore's NoSuchKey, or the storage out of reach
            if "NoSuchKey" in f"{type(exc).__name__} {exc}":
                raise ArchiveDamaged(f"the archive {store.url(key)} is missing from storage") from None
            raise StorageError(f"cannot read {store.url(key)}: {type(exc).__name__}") from None
    try:
        return open(record.location or "", "rb")
    except FileNotFoundError:
        raise ArchiveDamaged(f"the archive file {record.location} is missing") from None


def download_backup(catalog, settings: BackupSettings, backup_id: str, to: Path | None = None,
                    progress: ProgressFn = no_progress, cancel: threading.Event | None = None) -> Report:
    """Write a backup's archive, decrypted, to `to` (a file, or a folder for its own name; default: the
    current folder). `catalog` is a BackupCatalog or, with the state database down, a StorageCatalog."""
    record, manifest = _usable(catalog, backup_id)
    key = None
    if record.encrypted:
        key = encryption_key_from_env()
        if key is None:
            raise ConfigError(f"backup {record.id} is encrypted and DBOPS_BACKUP_KEY is not set here: set it to "
                              "the key it was made with")
    name = _stored_name(record, manifest).removesuffix(".enc")
    dest = Path(to) if to is not None else Path.cwd() / name
    if dest.is_dir():
        dest = dest / name
    if dest.exists():
        raise UsageError(f"{dest} exists already: give another --to, or move it away")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent} is not a folder: --to needs an existing folder")
    partial = dest.with_name(f".{dest.name}.partial")
    raw = _open_stored(record, manifest, settings)
    stream = _Stream(raw, record.size_bytes or 0, progress, cancel or threading.Event(), record.id)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            written = _Written(out)
            if key is not None:
                try:
                    crypto.decrypt_stream(stream, written, key)
                except crypto.WrongKey as exc:
                    raise ConfigError(f"backup {record.id}: {exc}") from None
                except crypto.DecryptionError as exc:
                    raise ArchiveDamaged(f"backup {record.id}: {exc}") from None
            while block := stream.read(BLOCK):  # the rest (all of a plain archive): every byte is hashed
                written.write(block)
            out.flush()
            os.fsync(out.fileno())
        require_sha256(stream.digest.hexdigest(), record.sha256)
        os.replace(partial, dest)
    finally:
        raw.close()
        partial.unlink(missing_ok=True)
    fmt_name = manifest.archive.format or "custom"
    how = (f"pg_restore --no-owner -d DATABASE_URL {dest}" if fmt_name == "custom" else
           f"mkdir {record.id}.d && tar -xf {dest} -C {record.id}.d && pg_restore -Fd --no-owner -d DATABASE_URL "
           f"{record.id}.d")
    facts = [["backup", f"{record.id} of {record.target} ({fmt.when(record.started_at)})"],
             ["written to", str(dest)], ["size", fmt.size(written.size)],
             ["stored SHA-256", f"{stream.digest.hexdigest()[:16]}… matches the catalog"],
             ["file SHA-256", written.digest.hexdigest()],
             ["decrypted", "yes, every chunk authenticated" if key is not None else "no (stored unencrypted)"],
             ["format", fmt_name + (" (a tar of the directory-format dump)" if fmt_name == "directory" else "")],
             ["restore it with", how]]
    return Report(title=f"Download of backup {record.id}",
                  summary=f"Backup {record.id} written to {dest} ({fmt.size(written.size)}"
                          f"{', decrypted' if key is not None else ''}); its SHA-256 matches the catalog.",
                  facts=key_values(facts),
                  data={"backup_id": record.id, "path": str(dest), "size": written.size,
                        "stored_sha256": stream.digest.hexdigest(), "file_sha256": written.digest.hexdigest(),
                        "decrypted": key is not None, "format": fmt_name})


@dataclass
class DownloadLink:
    """A pre-signed URL: whoever holds it downloads the archive until it expires. Never in a report,
    a log line or the audit; the front end hands `text()` to the requester only."""

    backup_id: str
    minutes: int
    url: str = field(repr=False)

    def text(self) -> str:
        return (f"Download link for backup {self.backup_id} (valid {self.minutes} minutes, only for you: anyone "
                f"holding it can download the database):\n{self.url}")

    def __str__(self) -> str:
        return f"DownloadLink(backup_id={self.backup_id!r})"


def download_link(catalog, settings: BackupSettings, backup_id: str) -> tuple[Report, DownloadLink]:
    """A pre-signed GET of the stored archive (S3 storage only), valid [backup.s3] url_minutes."""
    record, manifest = _usable(catalog, backup_id)
    if record.storage != "s3":
        raise UsageError(f"backup {record.id} is on the bot's own disk, not in S3: `dbops backup download "
                         f"{record.id}` on the bot's machine (a Render shell) gets it")
    store = S3Store(settings.s3)
    key, minutes = manifest.archive.key or "", settings.s3.url_minutes
    try:
        url = store.client.generate_presigned_url("get_object", Params={"Bucket": store.bucket, "Key": key},
                                                  ExpiresIn=minutes * 60)
    except Exception as exc:  # botocore: no credentials, a bad endpoint
        raise StorageError(f"cannot sign a link to {store.url(key)}: {type(exc).__name__}") from None
    stored = ("encrypted (AES-256-GCM, dbops's format): `dbops backup download` with DBOPS_BACKUP_KEY decrypts it"
              if record.encrypted else "not encrypted: a pg_dump archive as it is")
    facts = [["backup", f"{record.id} of {record.target} ({fmt.when(record.started_at)})"],
             ["object", store.url(key)], ["size", fmt.size(record.size_bytes)], ["valid", f"{minutes} minutes"],
             ["SHA-256", record.sha256 or "-"], ["archive", stored]]
    report = Report(title=f"Download link for backup {record.id}",
                    summary=f"A download link for backup {record.id} ({fmt.size(record.size_bytes)}), valid "
                            f"{minutes} minutes", facts=key_values(facts),
                    data={"backup_id": record.id, "object": store.url(key), "minutes": minutes,
                          "sha256": record.sha256, "encrypted": record.encrypted})
    return report, DownloadLink(record.id, minutes, url)
