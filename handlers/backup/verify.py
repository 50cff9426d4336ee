"""Proving an archive can be restored, and handing a restorable copy to the restore drill.

`verify` checks, in order: the manifest in storage (its seal, and that it describes this archive);
the stored bytes against the catalog's SHA-256; that it decrypts with the current key (a backup
whose key is gone is reported *unrestorable*; with `backup.encrypt = true` an archive that is not
encrypted, read from its own bytes, is refused); that its table of contents has the data of every
table in the manifest; and finally a full read of the archive (`pg_restore -f /dev/null`), because
`pg_restore --list` passes truncated and corrupted archives.

What could not be checked here (no key, storage out of reach) is said and recorded nowhere: the
catalog keeps what the last check that could be made found.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import fmt
from ..errors import ConfigError, DbopsError, UsageError
from ..postgres import (
    PgToolError,
    full_read,
    full_read_piped,
    missing_table_data,
    read_listing,
    tables_without_data,
    toc_listing,
)
from ..report import Outcome, Progress, ProgressFn, Report, Section, Table, no_progress
from . import crypto, views
from .catalog import BackupCatalog, BackupRecord
from .manifest import BackupManifest
from .seal import ManifestDamaged, Seal, future_dated, seal, unseal, untrusted_because
from .settings import BackupSettings, MiB, encryption_key_from_env
from .storage import S3Store, StorageError, _reason, prepare_dir, sha256_file
from .storage_catalog import MANIFEST_SUFFIX, archive_name_for, record_verification, storage_of


class Unrestorable(DbopsError):
    """The archive can never be restored as things stand (e.g. its encryption key is gone)."""


class ArchiveDamaged(DbopsError):
    """The archive is missing, changed, truncated or corrupted."""


class NotEncrypted(ArchiveDamaged):
    """The archive is not encrypted where it must be (backup.encrypt is on, or its manifest says so)."""


class NoKey(Unrestorable):
    """Encrypted (or its manifest sealed with a key), and this process has no DBOPS_BACKUP_KEY: not
    checkable *here*, which says nothing about the archive (verify records nothing)."""


NO_KEY_LABEL = views.NO_KEY_LABEL
NOT_ENCRYPTED = ("backup.encrypt is on and this archive is not encrypted: dbops with encryption on never writes one "
                 "so (it was taken before encryption was turned on, or put in the storage by someone else); it is "
                 "not used")
RECORDED = ("verified", "failed", "unrestorable")  # what a check found; "no_key" and "error" found nothing


@dataclass
class VerifyOutcome:
    status: str  # verified | failed | unrestorable | no_key, error (could not check here: nothing recorded)
    detail: str
    checks: list[list[str]] = field(default_factory=list)  # [check, result]
    reseal: bool = False  # verified, and its manifest in storage is not sealed with the key held here


def verify_backup(catalog: BackupCatalog, settings: BackupSettings, backup_id: str,
                  progress: ProgressFn = no_progress) -> Report:
    record = catalog.require(backup_id)
    if not record.usable:
        why = f"it was pruned on {record.deleted_at:%Y-%m-%d}" if record.deleted_at else \
            f"it is {record.status}" + (f" ({record.error})" if record.error else "")
        return Report(title=f"Verify backup {record.id}", outcome=Outcome.FAILED,
                      summary=f"Backup {record.id} has no archive to verify: {why}.",
                      data={"backup_id": record.id, "verify_status": "none"})
    outcome = _verify(catalog, settings, record, progress)
    summary = {
        "verified": f"Backup {record.id} is verified: {outcome.detail}.",
        "unrestorable": f"Backup {record.id} is UNRESTORABLE: {outcome.detail}",
        "no_key": f"Backup {record.id}: {NO_KEY_LABEL}: {outcome.detail}",
        "failed": f"Backup {record.id} FAILED verification: {outcome.detail}",
        "error": f"Backup {record.id} could not be verified now: {outcome.detail}",
    }[outcome.status]
    if outcome.status in ("no_key", "error"):
        summary += f" Nothing was recorded: its verification stays \"{views.verified_label(record)}\"."
    return Report(title=f"Verify backup {record.id}", summary=summary,
                  outcome=Outcome.OK if outcome.status == "verified" else Outcome.FAILED,
                  sections=[Section("Checks", table=Table(["check", "result"], outcome.checks))],
                  data={"backup_id": record.id, "verify_status": outcome.status, "detail": outcome.detail,
                        "checks": outcome.checks})


def verify_record(catalog: BackupCatalog, settings: BackupSettings, record: BackupRecord,
                  progress: ProgressFn = no_progress) -> tuple[str, str]:
    outcome = _verify(catalog, settings, record, progress)
    return outcome.status, outcome.detail


def _verify(catalog: BackupCatalog, settings: BackupSettings, record: BackupRecord,
            progress: ProgressFn) -> VerifyOutcome:
    manifest = catalog.manifest(record.id)
    # A row of the state database's catalog vouches for its archive (the bot wrote it when the backup
    # completed); read from storage alone, the manifest must vouch for itself.
    outcome = check_backup(record, manifest, settings, progress, vouched=not getattr(catalog, "from_storage", False))
    if outcome.status not in RECORDED:
        return outcome
    if outcome.reseal and manifest is not None:
        outcome.checks.append(["manifest", reseal_manifest(record, manifest, settings)])
    at = datetime.now(timezone.utc)  # one time for both: a later read of storage learns nothing new
    catalog.set_verification(record.id, outcome.status, outcome.detail, at=at)
    unrecorded = manifest and record_verification(record, manifest, settings, outcome.status, outcome.detail, at)
    if unrecorded:
        outcome.checks.append(["storage", unrecorded])
    return outcome


def check_backup(record: BackupRecord, manifest: BackupManifest | None, settings: BackupSettings,
                 progress: ProgressFn = no_progress, vouched: bool = True) -> VerifyOutcome:
    """Every check of `verify`, recording nothing. `vouched`: the state database's catalog knows
    this archive (else the manifest in storage must prove itself with its seal)."""
    checks: list[list[str]] = []
    try:
        if manifest is None:
            raise ArchiveDamaged("the catalog has no manifest for it")
        state = check_stored_manifest(record, manifest, settings, checks, vouched)
        if record.storage == "s3" and manifest.archive.format == "custom":
            verify_streamed(record, manifest, settings, progress, checks)  # never whole on this disk
        else:
            verify_on_disk(record, manifest, settings, progress, checks)
        decrypted = any(name == "decryption" for name, _ in checks)
        detail = f"SHA-256 matches, {'decrypts, ' if decrypted else ''}all {len(manifest.tables)} tables' data " \
                 "present, full read OK"
        return VerifyOutcome("verified", detail, checks,
                             reseal=settings.seal_key() is not None and state is not Seal.KEYED)
    except NoKey as exc:
        checks.append(["result", f"{NO_KEY_LABEL}: {exc}"])
        return VerifyOutcome("no_key", str(exc), checks)
    except Unrestorable as exc:
        checks.append(["result", f"unrestorable: {exc}"])
        return VerifyOutcome("unrestorable", str(exc), checks)
    except (ArchiveDamaged, PgToolError) as exc:
        checks.append(["result", f"failed: {exc}"])
        return VerifyOutcome("failed", str(exc), checks)
    except StorageError as exc:
        checks.append(["result", f"could not check: {exc}"])
        return VerifyOutcome("error", str(exc), checks)  # storage out of reach: says nothing about the archive


_SEAL_CHECK = {
    Seal.KEYED: "sealed with the key, intact, describes this archive",
    Seal.OTHER_KEY: "sealed with another key than the one held here (it was replaced since): describes the "
                    "archive the catalog knows",
    Seal.UNKEYED: "sealed without a key: intact, describes this archive",
    Seal.PLAIN: "written by an older dbops without a seal: describes this archive",
}


def verify_on_disk(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings, progress: ProgressFn,
                   checks: list[list[str]]) -> None:
    work_parent = prepare_dir(Path(settings.dir))
    with tempfile.TemporaryDirectory(prefix=f".{record.id}.verify-", suffix=".partial", dir=work_parent) as work:
        plain = fetch_plain(record, manifest, settings, Path(work), progress, checks, copy=False)
        progress(Progress("verifying", None, f"{record.id}: table of contents"))
        require_table_data(missing_table_data(plain, manifest.tables), checks, len(manifest.tables))
        progress(Progress("verifying", None, f"{record.id}: full read of the archive"))
        ok, reason = full_read(plain)
        if not ok:
            raise ArchiveDamaged(f"a full read of the archive failed: {reason}")
        checks.append(["full read", reason])


def require_table_data(missing: list[str], checks: list[list[str]], tables: int) -> None:
    if missing:
        raise ArchiveDamaged(f"the archive has no data for {fmt.plural(len(missing), 'table')}: "
                             f"{', '.join(missing[:5])}")
    checks.append(["table of contents", f"data for all {tables} tables listed"])


def check_stored_manifest(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings,
                          checks: list[list[str]], vouched: bool = True) -> Seal:
    """The manifest file in storage is intact (its seal) and describes this archive; unless the
    catalog vouches for the archive, its seal must also prove that this dbops wrote it."""
    if record.storage == "s3":
        key = (manifest.archive.key or "") + MANIFEST_SUFFIX
        where = S3Store(settings.s3).url(key)
        try:
            data = S3Store(settings.s3).client.get_object(Bucket=settings.s3.bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore's NoSuchKey, or the storage out of reach
            if type(exc).__name__ in ("NoSuchKey",) or "NoSuchKey" in str(exc) or "404" in str(exc):
                raise ArchiveDamaged(f"its manifest {where} is missing from storage") from None
            raise StorageError(f"cannot read {where}: {type(exc).__name__}") from None
    else:
        path = Path((record.location or "") + MANIFEST_SUFFIX)
        where = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArchiveDamaged(f"its manifest {where} is missing from storage") from None
        except OSError as exc:
            raise StorageError(f"cannot read {where}: {exc.strerror}") from None
    key = settings.seal_key()
    try:
        stored, state = unseal(data, f"its manifest {where}", key)
    except ManifestDamaged as exc:
        raise ArchiveDamaged(str(exc)) from None
    if stored.backup_id != record.id or stored.archive.sha256 != (record.sha256 or manifest.archive.sha256):
        raise ArchiveDamaged(f"its manifest {where} describes another archive (backup {stored.backup_id}, "
                             f"SHA-256 {stored.archive.sha256[:16]}…)")
    if state is Seal.UNCHECKED:
        raise NoKey("its manifest is sealed with a key and DBOPS_BACKUP_KEY is not set here (nor DBOPS_SEAL_KEY): "
                    "its seal cannot be checked without it")
    why = None if vouched else untrusted_because(state, key is not None) or future_dated(stored.created_at)
    if why:
        raise ArchiveDamaged(f"its manifest {where} cannot be taken on its word: {why}")
    checks.append(["manifest", _SEAL_CHECK[state]])
    return state


def reseal_manifest(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings) -> str:
    """Writes the catalog's manifest of a verified backup back to storage sealed with the key held
    here (it was sealed without one, or with a replaced one); returns what was done."""
    archive = archive_name_for(record, manifest)
    key = settings.seal_key()
    if archive is None or key is None:
        return "not re-sealed: its place in storage is not known"
    try:
        storage_of(record, settings).write(archive + MANIFEST_SUFFIX, seal(manifest, key))
    except (StorageError, OSError) as exc:
        return f"could not be re-sealed with the key: {exc}"
    return "re-sealed with the key held here: storage alone now vouches for it"


def materialize(catalog: BackupCatalog, settings: BackupSettings, backup_id: str, dest_dir: Path,
                progress: ProgressFn = no_progress) -> tuple[Path, BackupManifest]:
    """A restorable copy of a backup under `dest_dir`: downloaded, checked and decrypted as needed.

    Returns (path, manifest): the path is a custom-format file or a directory-format folder, ready
    for `pg_restore`. Raises UsageError (unknown id, no archive), Unrestorable or ArchiveDamaged.
    """
    record = catalog.require(backup_id)
    if not record.usable:
        raise UsageError(f"backup {record.id} has no archive to restore (it is "
                         f"{'pruned' if record.deleted_at else record.status})")
    manifest = catalog.manifest(record.id)
    if manifest is None:
        raise ArchiveDamaged(f"backup {record.id} has no manifest in the catalog")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    return fetch_plain(record, manifest, settings, dest_dir, progress, [], copy=True), manifest


def fetch_plain(record: BackupRecord, manifest: BackupManifest, settings: BackupSettings, work: Path,
                progress: ProgressFn, checks: list[list[str]], copy: bool) -> Path:
    """The archive as pg_restore reads it: fetched, SHA-256 checked, decrypted, unpacked.

    With copy=False a local, plain, custom-format archive is used where it is (read only).
    """
    stored = checked_archive(record, manifest, settings, work, progress, checks)
    return restorable_archive(stored, record.id, settings.encrypt or record.encrypted, manifest.archive.format,
                              work, progress, checks, copy, encrypt_setting=settings.encrypt)


def checked_archive(record: BackupRecord, manifest: BackupManifest | None, settings: BackupSettings, work: Path,
                    progress: ProgressFn = no_progress, checks: list[list[str]] | None = None) -> Path:
    """The archive as stored, on this disk, its SHA-256 the catalog's (else ArchiveDamaged)."""
    stored, digest = stored_archive(record, manifest, settings, work, progress)
    if digest is None:
        progress(Progress("verifying", None, f"{record.id}: SHA-256 of {stored.name}"))
        digest = sha256_file(stored)
    require_sha256(digest, record.sha256)
    if checks is not None:
        checks.append(["sha256", f"matches the catalog ({digest[:16]}…)"])
    return stored


def stored_archive(record: BackupRecord, manifest: BackupManifest | None, settings: BackupSettings, work: Path,
                   progress: ProgressFn = no_progress) -> tuple[Path, str | None]:
    """The archive as stored (what the catalog's SHA-256 is of) on this disk: (path, its SHA-256 or None).

    A local archive is used where it is and not hashed (the caller may hash it while doing something
    else); an S3 one is downloaded into `work` and hashed as it arrives.
    """
    if record.storage == "s3":
        store = S3Store(settings.s3)
        key = (manifest.archive.key if manifest else None) or ""
        progress(Progress("verifying", None, f"{record.id}: downloading {store.url(key)}"))
        path = work / f"{record.id}.download"
        return path, store.download(key, path)
    path = Path(record.location or "")
    if not path.is_file():
        raise ArchiveDamaged(f"the archive file {path} is missing")
    return path, None


def require_sha256(digest: str, catalog_sha256: str | None) -> None:
    if digest != catalog_sha256:
        raise ArchiveDamaged(f"the archive's SHA-256 ({digest[:16]}…) differs from the catalog's "
                             f"({(catalog_sha256 or '')[:16]}…): it was changed or damaged after the backup")


def restorable_archive(stored: Path, backup_id: str, must_be_encrypted: bool, archive_format: str, work: Path,
                       progress: ProgressFn = no_progress, checks: list[list[str]] | None = None,
                       copy: bool = True, encrypt_setting: bool = False) -> Path:
    """What pg_restore reads, made under `work` from the stored archive: decrypted with DBOPS_BACKUP_KEY
    (the plaintext, 0600, only ever under `work`), a directory-format tar unpacked.

    Whether it is encrypted is read from the archive's own first bytes; one that is not, where it
    must be (`must_be_encrypted`: backup.encrypt is on, said by `encrypt_setting`, or its manifest
    says so), is refused. Intermediate files in `work` are removed on the way; the stored archive is
    left alone unless it is itself in `work` (a download). With copy=False a plain custom-format
    archive is used where it is.
    """
    checks = checks if checks is not None else []
    encrypted = crypto.is_encrypted_file(stored)
    if must_be_encrypted and not encrypted:
        raise NotEncrypted(NOT_ENCRYPTED if encrypt_setting else
                           "its manifest says it is encrypted and the archive is not: it was replaced or damaged")
    if encrypted:
        progress(Progress("verifying", None, f"{backup_id}: decrypting"))
        plain = work / f"{backup_id}.plain"
        decrypt_archive(stored, plain)
        checks.append(["decryption", "every chunk authenticated with the current DBOPS_BACKUP_KEY"])
        if stored.parent == work:
            stored.unlink()
        stored = plain
    if archive_format == "directory":
        target = unpack_directory(stored, work / f"{backup_id}.d")
        if stored.parent == work:
            stored.unlink()
        return target
    if copy and stored.parent != work:
        dest = work / f"{backup_id}.dump"
        try:
            os.link(stored, dest)  # same disk: instant, and deleting it leaves the backup alone
        except OSError:
            shutil.copyfile(stored, dest)
        return dest
    return stored


def unpack_directory(stored: Path, into: Path) -> Path:
    """A directory-format backup is stored as one tar file: unpack it where pg_restore can read it.

    Returns the folder holding toc.dat: the tar holds either the folder's files or the folder itself.
    """
    try:
        with tarfile.open(stored) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveDamaged(f"the stored directory-format archive cannot be unpacked: {exc}") from None
    if (into / "toc.dat").exists():
        return into
    found = [p.parent for p in into.rglob("toc.dat")]
    if len(found) != 1:
        raise ArchiveDamaged(f"the stored directory-format archive holds {len(found)} toc.dat files, expected 1")
    return found[0]


def decryption_key() -> bytes:
    """DBOPS_BACKUP_KEY, to decrypt an archive: NoKey without one, Unrestorable when it is malformed."""
    try:
        key = encryption_key_from_env()
    except ConfigError as exc:
        raise Unrestorable(f"it is encrypted and {exc}") from None
    if key is None:
        raise NoKey("it is encrypted and DBOPS_BACKUP_KEY is not set here: without the key it was made with "
                    "it cannot be decrypted")
    return key


def decryption_failure(exc: crypto.DecryptionError) -> DbopsError:
    """Unrestorable for another key than the archive's, ArchiveDamaged for anything else."""
    if isinstance(exc, crypto.WrongKey):
        return Unrestorable(f"{exc}; the key it was made with is needed to restore it")
    return ArchiveDamaged(str(exc))


def decrypt_archive(src: Path, dst: Path) -> None:
    """Decrypt `src` into `dst` (0600) with DBOPS_BACKUP_KEY: NoKey without one, Unrestorable with another."""
    key = decryption_key()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(src, "rb") as s, os.fdopen(fd, "wb") as d:
            crypto.decrypt_stream(s, d, key)
    except crypto.DecryptionError as exc:
        dst.unlink(missing_ok=True)
        raise decryption_failure(exc) from None


# -- a custom-format archive in S3, verified as it downloads ------------------------------------
# Never whole on local disk: the same checks as on disk (SHA-256 of the stored bytes, decryption of
# every chunk, the table of contents, a full read by pg_restore), made by one pass over the object;
# a custom-format archive written to a pipe carries its table of contents first and its data in
# order, so pg_restore reads it from one. Which failure is told: the SHA-256 first, as on disk (a
# changed object is "changed", whatever else breaks in it), then decryption, then pg_restore's.

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
