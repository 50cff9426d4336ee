"""The storage is the catalog: every backup in storage describes itself, so the backups can be
listed, verified, drilled and restored with the state database gone.

A backup in storage is its archive `<id>_<target>_<stamp>.<ext>` and, next to it, the sealed
manifest `<archive>.manifest.json` (manifest.seal: counts, checksums, schema, versions, encryption
parameters, the archive's SHA-256, and a SHA-256 of the manifest itself). The archive is written
first and the manifest last, each durable before the next step, so a backup is listed only once all
of it is there. `dbops-index.json` lists the storage's backups as of the last write: a manifest that
vanishes (deleted by hand, a lifecycle rule) is then noticed rather than silently forgotten.

Layout: the local folder holds every target's files; in S3 they are under `<prefix>/<target>/`,
the index at `<prefix>/dbops-index.json`. Quarantined files go to `quarantine/` beside them.

The newest verification of a backup is `<archive>.verified.json` beside it (status, detail, time,
and the SHA-256 of the archive it checked): a catalog rebuilt from storage, or the bot answering
from storage alone, knows which backups were verified, so `restore latest` picks the same one.

Both files are sealed with the key derived from DBOPS_BACKUP_KEY (seal.py). With a key here, a
manifest or a verification record not sealed with it is not taken on its word: a backup planted in
the storage, or a record copied beside another archive, is listed as untrusted, never as good.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UsageError
from . import crypto
from .catalog import BackupRecord
from .manifest import BackupManifest
from .seal import ManifestDamaged, Seal, future_dated, unseal, untrusted_because
from .settings import BackupSettings
from .storage import S3Store, StorageError, fsync_dir

MANIFEST_SUFFIX = ".manifest.json"
VERIFIED_SUFFIX = ".verified.json"
VERIFICATION_STATUSES = ("verified", "failed", "unrestorable", "no_key")
INDEX_NAME = "dbops-index.json"
QUARANTINE = "quarantine"
ARCHIVE_RE = re.compile(r"^([ab]\d+)_.+\.(dump|tar)(\.enc)?$")


class Storage:
    """Where a backup's files live, by name (a file name in the folder, or an S3 key)."""

    kind = ""

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def write(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def location(self, name: str) -> str:
        raise NotImplementedError

    def quarantine(self, name: str) -> str:
        raise NotImplementedError

    @property
    def index_name(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        try:
            return sorted(e.name for e in os.scandir(self.folder) if e.is_file() and not e.name.startswith("."))
        except OSError as exc:
            raise StorageError(f"cannot list the backup folder {self.folder}: {exc.strerror}") from None

    def read(self, name: str) -> bytes:
        try:
            return (self.folder / name).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {self.folder / name}: {exc.strerror}") from None

    def write(self, name: str, data: bytes) -> None:
        write_durably(self.folder / name, data)

    def delete(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {self.folder / name}: {exc.strerror}") from None
        fsync_dir(self.folder)

    def location(self, name: str) -> str:
        return str((self.folder / name).resolve())

    def quarantine(self, name: str) -> str:
        into = self.folder / QUARANTINE
        into.mkdir(mode=0o700, exist_ok=True)
        os.replace(self.folder / name, into / name)
        fsync_dir(into)
        fsync_dir(self.folder)
        return str(into / name)

    @property
    def index_name(self) -> str:
        return INDEX_NAME

    def describe(self) -> str:
        return str(self.folder)


class S3Storage(Storage):
    kind = "s3"

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.prefix = store.settings.prefix.strip("/")

    def names(self) -> list[str]:
        found = []
        try:
            pages = self.store.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.store.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
            for page in pages:
                found += [o["Key"] for o in page.get("Contents", [])]
        except Exception as exc:
            raise StorageError(f"cannot list s3://{self.store.bucket}/{self.prefix}: "
                               f"{type(exc).__name__}") from None
        return sorted(k for k in found if f"/{QUARANTINE}/" not in f"/{k}")

    def read(self, name: str) -> bytes:
        try:
            return self.store.client.get_object(Bucket=self.store.bucket, Key=name)["Body"].read()
        except Exception as exc:
            raise StorageError(f"cannot read {self.store.url(name)}: {type(exc).__name__}") from None

    def write(self, name: str, data: bytes) -> None:
        self.store.put_bytes(name, data)  # an object appears whole or not at all

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def location(self, name: str) -> str:
        return self.store.url(name)

    def quarantine(self, name: str) -> str:
        head, _, base = name.rpartition("/")
        dest = "/".join(p for p in (head, QUARANTINE, base) if p)
        try:
            self.store.client.copy_object(Bucket=self.store.bucket, Key=dest,
                                          CopySource={"Bucket": self.store.bucket, "Key": name})
        except Exception as exc:
            raise StorageError(f"cannot move {self.store.url(name)} to quarantine: {type(exc).__name__}") from None
        self.store.delete(name)
        return self.store.url(dest)

    @property
    def index_name(self) -> str:
        return "/".join(p for p in (self.prefix, INDEX_NAME) if p)

    def describe(self) -> str:
        return f"s3://{self.store.bucket}/{self.prefix}"


def storage_for(settings: BackupSettings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(S3Store(settings.s3))
    return LocalStorage(Path(settings.dir))


def write_durably(path: Path, data: bytes) -> None:
    """Write under a hidden partial name, fsync, rename, fsync the folder: all of it or nothing."""
    tmp = path.with_name(f".{path.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# -- reading what storage holds ----------------------------------------------------------

@dataclass
class StoredVerification:
    status: str  # one of VERIFICATION_STATUSES
    detail: str
    at: datetime


@dataclass
class StoredBackup:
    backup_id: str
    archive: str  # the archive's name in the storage
    manifest: BackupManifest | None  # None when the manifest is damaged
    seal: Seal | None  # what its manifest's seal proves (None: damaged)
    problem: str | None  # why the manifest is damaged
    archive_present: bool
    location: str
    verification: StoredVerification | None = None  # the newest, if it checked this very archive
    untrusted: str | None = None  # why the manifest, intact, cannot be taken on its word (seal, date)


def _record_body(doc: dict) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if k != "hmac_sha256"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()


def write_verification(storage: Storage, archive: str, archive_sha256: str, status: str, detail: str,
                       key: bytes | None = None, at: datetime | None = None) -> None:
    """Records a verification beside the archive it checked (replacing the previous one), sealed
    with `key` (BackupSettings.seal_key) when there is one; `at`: when it was made (the catalog's time)."""
    doc = {"dbops_verification": 1, "status": status, "detail": detail,
           "verified_at": (at or datetime.now(timezone.utc)).isoformat(), "archive_sha256": archive_sha256}
    if key is not None:
        doc["hmac_sha256"] = crypto.mac(key, _record_body(doc))
    storage.write(archive + VERIFIED_SUFFIX, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def read_verification(storage: Storage, archive: str, archive_sha256: str,
                      key: bytes | None = None) -> StoredVerification | None:
    """The recorded verification, or None when there is none, it is unreadable, it checked another
    archive than this SHA-256 (then it says nothing about this one), it is dated in the future, or
    (with a key here) it is not sealed with that key: a copied or written record counts for nothing."""
    try:
        doc = json.loads(storage.read(archive + VERIFIED_SUFFIX))
        if doc.get("archive_sha256") != archive_sha256 or doc.get("status") not in VERIFICATION_STATUSES:
            return None
        if key is not None and not crypto.mac_matches(key, _record_body(doc), doc.get("hmac_sha256")):
            return None
        if future_dated(doc["verified_at"]):
            return None
        at = datetime.fromisoformat(doc["verified_at"])
        return StoredVerification(doc["status"], str(doc.get("detail") or ""), at)
    except (StorageError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class StorageScan:
    backups: list[StoredBackup]
    orphans: list[str]  # archives under their final names without a manifest
    index_missing: list[str]  # ids the index lists whose manifest is gone


def scan(storage: Storage, key: bytes | None = None) -> StorageScan:
    """Every backup in storage, newest first; damaged manifests are listed with their problem, and
    intact ones that cannot be taken on their word (`untrusted_because`, `future_dated`) say why.
    `key`: the seal key (BackupSettings.seal_key) the seals are checked with."""
    names = storage.names()
    present = set(names)
    backups, orphans = [], []
    for name in names:
        base = basename(name)
        if base.endswith(MANIFEST_SUFFIX):
            archive = name[:-len(MANIFEST_SUFFIX)]
            match = ARCHIVE_RE.match(basename(archive))
            if not match:
                continue
            label = f"the manifest {storage.location(name)}"
            untrusted = None
            try:
                manifest, sealed = unseal(storage.read(name), label, key)
                problem = None
                if manifest.backup_id != match.group(1):
                    problem, manifest = f"{label} names backup {manifest.backup_id}, not {match.group(1)}", None
                else:
                    untrusted = untrusted_because(sealed, key is not None) or future_dated(manifest.created_at)
            except ManifestDamaged as exc:
                manifest, sealed, problem = None, None, str(exc)
            verification = (read_verification(storage, archive, manifest.archive.sha256, key)
                            if manifest is not None and archive + VERIFIED_SUFFIX in present else None)
            backups.append(StoredBackup(match.group(1), archive, manifest, sealed, problem, archive in present,
                                        storage.location(archive), verification, untrusted))
        elif ARCHIVE_RE.match(base) and name + MANIFEST_SUFFIX not in present:
            orphans.append(name)
    backups.sort(key=lambda b: (b.manifest.created_at if b.manifest else "", b.backup_id), reverse=True)
    listed = {b.backup_id for b in backups}
    index_missing = [i for i in read_index(storage) if i not in listed]
    return StorageScan(backups, orphans, index_missing)


def read_index(storage: Storage) -> list[str]:
    if storage.index_name.rsplit("/", 1)[-1] not in {basename(n) for n in storage.names()}:
        return []
    try:
        doc = json.loads(storage.read(storage.index_name))
        return [str(b["id"]) for b in doc.get("backups", [])]
    except (StorageError, ValueError, KeyError, TypeError, AttributeError):
        return []  # a damaged index is rewritten at the next write; the manifests are the truth


def write_index(storage: Storage) -> None:
    """The index as the manifests now say; written after every backup and every prune."""
    found = scan(storage)
    doc = {"dbops_index": 1, "written_at": datetime.now(timezone.utc).isoformat(),
           "backups": [{"id": b.backup_id, "target": b.manifest.target, "created_at": b.manifest.created_at,
                        "archive": basename(b.archive), "sha256": b.manifest.archive.sha256}
                       for b in found.backups if b.manifest is not None]}
    storage.write(storage.index_name, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def record_from_storage(b: StoredBackup) -> BackupRecord:
    """A catalog row as the storage alone tells it: completed, verification not known here; failed
    when its manifest is damaged or cannot be taken on its word."""
    if b.manifest is None or b.untrusted:
        why = b.problem or b.untrusted
        return BackupRecord(
            id=b.backup_id, target="?", database=None, scheduled=b.backup_id.startswith("a"), requested_by="?",
            status="failed", phase=None, error=f"its manifest cannot be trusted: {why}", owner=None,
            heartbeat_at=None, started_at=datetime.fromtimestamp(0, timezone.utc), finished_at=None,
            duration_s=None, format=None, compression=None, encrypted=False, storage=None, location=b.location,
            size_bytes=None, sha256=None, integrity_level=None, tables=None, total_rows=None,
            verify_status="failed", verified_at=None, verify_detail=why, deleted_at=None)
    m, a, v = b.manifest, b.manifest.archive, b.verification
    started = datetime.fromisoformat(m.created_at)
    return BackupRecord(
        id=m.backup_id, target=m.target, database=m.database, scheduled=m.scheduled,
        requested_by=m.requested_by or "?", status="completed", phase="done", error=None, owner=None,
        heartbeat_at=None, started_at=started, finished_at=None, duration_s=m.duration_s, format=a.format,
        compression=a.compression, encrypted=a.encrypted, storage=a.storage, location=b.location, size_bytes=a.size,
        sha256=a.sha256, integrity_level=m.integrity_level, tables=len(m.tables), total_rows=m.total_rows,
        verify_status=v.status if v else "pending", verified_at=v.at if v else None,
        verify_detail=(v.detail if v else None) if b.archive_present else "the archive is missing from storage",
        deleted_at=None)


class StorageCatalog:
    """The read side of BackupCatalog, answered from storage alone (the state database is down).
    Verification results are written beside the archives (by `backup verify`, whichever catalog)."""

    from_storage = True

    def __init__(self, settings: BackupSettings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage or storage_for(settings)
        self._scan: StorageScan | None = None

    def _found(self) -> list[StoredBackup]:
        if self._scan is None:
            self._scan = scan(self.storage, self.settings.seal_key())
        return self._scan.backups

    def _fix(self, b: StoredBackup) -> StoredBackup:
        if b.manifest is not None and self.storage.kind == "s3":
            b.manifest.archive.key = b.archive  # where it is now, whatever the prefix was then
        return b

    def list(self, target: str | None = None, include_deleted: bool = False, limit: int = 1000) -> list[BackupRecord]:
        records = [record_from_storage(self._fix(b)) for b in self._found()]
        return [r for r in records if target is None or r.target in (target, "?")][:limit]

    def get(self, backup_id: str) -> BackupRecord | None:
        for b in self._found():
            if b.backup_id == backup_id:
                return record_from_storage(self._fix(b))
        return None

    def require(self, backup_id: str) -> BackupRecord:
        record = self.get(backup_id.strip().lower()) if backup_id else None
        if record is None:
            raise UsageError(f"no backup with id `{backup_id}` in {self.storage.describe()}; "
                             "`backup list` shows the ids")
        return record

    def manifest(self, backup_id: str) -> BackupManifest | None:
        for b in self._found():
            if b.backup_id == backup_id:
                return None if b.untrusted else self._fix(b).manifest
        return None

    def set_verification(self, backup_id: str, status: str, detail: str, at: datetime | None = None) -> None:
        self._scan = None  # the next read sees the verification `backup verify` wrote beside the archive

    def running_ids(self) -> set[str]:
        return set()


def archive_name_for(record: BackupRecord, manifest: BackupManifest | None) -> str | None:
    """The storage name of a catalogued backup's archive."""
    if record.storage == "s3":
        return manifest.archive.key if manifest and manifest.archive.key else None
    return basename(record.location) if record.location else None


def storage_of(record: BackupRecord, settings: BackupSettings) -> Storage:
    """The storage that holds a catalogued backup (the settings may have moved on since)."""
    if record.storage == "s3":
        return S3Storage(S3Store(settings.s3))
    return LocalStorage(Path(record.location).parent if record.location else Path(settings.dir))


def record_verification(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings,
                        status: str, detail: str, at: datetime | None = None) -> str | None:
    """Writes a verification beside its archive; the reason when that could not be done."""
    archive = archive_name_for(record, manifest)
    if archive is None or status not in VERIFICATION_STATUSES:
        return None
    try:
        write_verification(storage_of(record, settings), archive, manifest.archive.sha256, status, detail,
                           settings.seal_key(), at)
    except (StorageError, OSError) as exc:
        return f"the verification could not be written to storage: {exc}"
    return None
