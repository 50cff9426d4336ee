"""Verifying a custom-format archive in S3 as it downloads, never whole on local disk: the same
checks as on disk (SHA-256 of the stored bytes, decryption of every chunk, the table of contents,
a full read by pg_restore), made by one pass over the object. A custom-format archive written to
a pipe carries its table of contents first and its data in order, so pg_restore reads it from one.

Which failure is told: the SHA-256 first, as on disk (a changed object is "changed", whatever else
breaks in it), then decryption, then pg_restore's."""
from __future__ import annotations

import hashlib

from .. import fmt
from ..errors import DbopsError
from ..postgres import PgToolError, full_read_piped, read_listing, tables_without_data, toc_listing
from ..report import Progress, ProgressFn
from . import crypto
from .catalog import BackupRecord
from .manifest import BackupManifest
from .settings import BackupSettings, MiB
from .storage import S3Store, StorageError, _reason
from .verify import ArchiveDamaged, decryption_failure, decryption_key, require_sha256, require_table_data

PROGRESS_EVERY = 64 * MiB


class _Reading:
    """The object's body, hashed as it is read; a read error is a StorageError."""

    def __init__(self, body, url: str, progress: ProgressFn, backup_id: str) -> None:
        self.body, self.url, self.progress, self.backup_id = body, url, progress, backup_id
        self.digest = hashlib.sha256()
        self.size = 0
        self._told = 0

    def read(self, n: int = MiB) -> bytes:
        try:
            data = self.body.read(n)
        except Exception as exc:
            raise StorageError(f"cannot download {self.url}: {_reason(exc)}") from None
        self.digest.update(data)
        self.size += len(data)
        if self.size - self._told >= PROGRESS_EVERY:
            self._told = self.size
            self.progress(Progress("verifying", None, f"{self.backup_id}: {fmt.size(self.size)} read and checked"))
        return data

    def drain(self) -> None:
        while self.read(MiB):
            pass


class _Both:
    """Plaintext to both readers: the table of contents and the full read."""

    def __init__(self, *readers) -> None:
        self.readers = readers

    def write(self, data: bytes) -> int:
        for reader in self.readers:
            reader.feed(data)
        return len(data)


def verify_streamed(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings,
                    progress: ProgressFn, checks: list[list[str]]) -> None:
    """Raises ArchiveDamaged, NoKey, Unrestorable, PgToolError or StorageError, as the checks on disk."""
    key_problem: DbopsError | None = None
    key = None
    if record.encrypted:
        try:
            key = decryption_key()
        except DbopsError as exc:  # told once the SHA-256 is known to match
            key_problem = exc
    store = S3Store(settings.s3)
    object_key = manifest.archive.key or ""
    progress(Progress("verifying", None, f"{record.id}: reading {store.url(object_key)} as it downloads"))
    try:
        body = store.client.get_object(Bucket=store.bucket, Key=object_key)["Body"]
    except Exception as exc:
        raise StorageError(f"cannot download {store.url(object_key)}: {_reason(exc)}") from None
    reading = _Reading(body, store.url(object_key), progress, record.id)
    toc, full = toc_listing(), full_read_piped()
    damaged: crypto.DecryptionError | None = None
    try:
        readers = _Both(toc, full)
        if key is not None:
            try:
                crypto.decrypt_stream(reading, readers, key)
            except crypto.DecryptionError as exc:
                damaged = exc
        elif key_problem is None:
            while block := reading.read(MiB):
                readers.write(block)
        reading.drain()  # the rest, for the SHA-256 of every stored byte
    except BaseException:
        toc.stop()
        full.stop()
        raise
    listed, read = toc.finish(), full.finish()
    require_sha256(reading.digest.hexdigest(), record.sha256)
    checks.append(["sha256", f"matches the catalog ({record.sha256[:16]}…), read as it downloaded"])
    if key_problem is not None:
        raise key_problem
    if damaged is not None:
        raise decryption_failure(damaged)
    if record.encrypted:
        checks.append(["decryption", "every chunk authenticated with the current DBOPS_BACKUP_KEY"])
    contents = read_listing(listed)
    if contents.errors:
        raise PgToolError(f"pg_restore cannot read the archive's table of contents: {contents.errors[-1][:400]}")
    require_table_data(tables_without_data(contents.table_data_lines, manifest.tables), checks, len(manifest.tables))
    if read.returncode != 0:
        reason = next((line for line in reversed(read.lines) if line.strip()), f"status {read.returncode}")
        raise ArchiveDamaged(f"a full read of the archive failed: {reason[:400]}")
    checks.append(["full read", "every object and all table data read back"])
