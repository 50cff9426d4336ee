"""The catalog as a cache of the storage: rebuilt from it, and what a killed backup left adopted or
quarantined.

- A backup in storage (archive + sealed manifest) the catalog has no row for is added once its
  seal proves this dbops wrote it (with DBOPS_BACKUP_KEY or DBOPS_SEAL_KEY: sealed with a key) and a full verify
  passes: a new bot pointed at the same storage with an empty state database lists every backup,
  and an archive someone copied into the storage with a manifest of their own is refused.
- A row that never became `completed` while storage holds its whole backup (the process died after
  writing the manifest, before the catalog update) is adopted once the archive's SHA-256 matches
  its manifest; if it does not match, both files are quarantined.
- An archive under its final name without a manifest (killed between the two) cannot be proven to
  be anything: it is moved to `quarantine/`, never listed, and never silently left to fill the disk.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import fmt
from ..report import Outcome, Report, Section, Table
from .catalog import BackupCatalog
from .seal import Seal
from .settings import BackupSettings
from .storage import S3Store, StorageError, prepare_dir, sha256_file
from .storage_catalog import (
    ARCHIVE_RE,
    MANIFEST_SUFFIX,
    S3Storage,
    Storage,
    StoredBackup,
    basename,
    record_from_storage,
    record_verification,
    scan,
    storage_for,
)


@dataclass
class SyncResult:
    added: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # in storage, not catalogued: not verified in this run
    unkeyed: list[str] = field(default_factory=list)  # of `added`: sealed without a key (none is set)
    seen: int = 0

    def lines(self) -> list[str]:
        out = []
        if self.added:
            out.append(f"catalogued {fmt.plural(len(self.added), 'backup')} found in storage, each after a full "
                       f"verify: {', '.join(self.added)}")
        if self.unkeyed:
            out.append(f"{', '.join(self.unkeyed)}: sealed without a key (neither DBOPS_BACKUP_KEY nor DBOPS_SEAL_KEY "
                       "is set), so nothing proves dbops wrote them: anyone who can write to the storage could have "
                       "put them there")
        out += [f"backup {i} adopted: its process stopped after writing it whole (SHA-256 checked)"
                for i in self.adopted]
        out += [f"quarantined {q}" for q in self.quarantined]
        return out + self.problems


def sync_catalog(catalog: BackupCatalog, settings: BackupSettings, adopt: bool = True,
                 storage: Storage | None = None, verify_unknown: bool | None = None) -> SyncResult:
    """Bring the catalog up to what storage holds. `adopt` (start-up, `backup sync`) also adopts or
    quarantines what killed backups left; without it only verifications are learnt (cheap, before
    a read). `verify_unknown` (default: `adopt`): backups the catalog does not know are verified in
    full and catalogued if they pass; else they are only counted (`pending`)."""
    storage = storage or storage_for(settings)
    verify_unknown = adopt if verify_unknown is None else verify_unknown
    result = SyncResult()
    found = scan(storage, settings.seal_key())  # StorageError: nothing is changed
    result.seen = len(found.backups)
    running = catalog.running_ids() if adopt else set()
    for b in found.backups:
        if b.manifest is None:
            result.problems.append(f"backup {b.backup_id} is not catalogued: {b.problem}")
            continue
        if b.backup_id in running:
            continue  # being written right now (cleanup marks a dead one failed before this runs)
        if storage.kind == "s3":
            b.manifest.archive.key = b.archive
        if not b.archive_present:
            result.problems.append(f"backup {b.backup_id} has a manifest but no archive in storage ({b.location})")
            continue
        record = catalog.get(b.backup_id)
        if record is None:
            if b.untrusted:
                result.problems.append(f"backup {b.backup_id} in storage is not catalogued: {b.untrusted}")
            elif verify_unknown:
                _catalogue_after_verify(catalog, settings, b, result)
            else:
                result.pending.append(b.backup_id)
            continue
        # A verification storage knows and the catalog does not (the catalog was rebuilt, or the
        # backup was verified from storage alone while the state database was down) is learnt, when
        # it checked the very archive the catalog knows.
        v = b.verification
        if (v is not None and record.status == "completed" and record.sha256 == b.manifest.archive.sha256
                and (record.verified_at is None or record.verified_at < v.at)):
            catalog.set_verification(b.backup_id, v.status, v.detail, at=v.at)
        if record.status == "completed" or not adopt:
            continue
        if b.untrusted:
            result.problems.append(f"backup {b.backup_id} stopped before it was catalogued and storage holds it, "
                                   f"but it is not adopted: {b.untrusted}")
            continue
        problem = _archive_problem(storage, b, settings)
        if problem:
            for name in (b.archive + MANIFEST_SUFFIX, b.archive):
                try:
                    result.quarantined.append(f"{storage.quarantine(name)} ({problem})")
                except (StorageError, OSError) as exc:
                    result.problems.append(f"could not quarantine {name}: {exc}")
            continue
        if catalog.add_from_storage(b.manifest, b.location, adopt=True) == "adopted":
            result.adopted.append(b.backup_id)
    if adopt:
        for name in found.orphans:
            match = ARCHIVE_RE.match(basename(name))
            if match and match.group(1) in running:
                continue
            try:
                result.quarantined.append(f"{storage.quarantine(name)} (an archive without its manifest: a "
                                          "backup killed before it finished writing)")
            except (StorageError, OSError) as exc:
                result.problems.append(f"could not quarantine {name}: {exc}")
    result.problems += [f"backup {i} is in the storage's index but its manifest is gone from storage"
                        for i in found.index_missing]
    return result


def _catalogue_after_verify(catalog: BackupCatalog, settings: BackupSettings, b: StoredBackup,
                            result: SyncResult) -> None:
    """A backup the catalog never knew: catalogued only once a full verify (seal, SHA-256, decryption,
    table of contents, full read) passes on the manifest's own word."""
    from .verify import check_backup  # the verification imports pg_restore's helpers: only when needed

    record = record_from_storage(b)
    outcome = check_backup(record, b.manifest, settings, vouched=False)
    if outcome.status != "verified":
        found = (f"a full verify found it {outcome.status}" if outcome.status in ("failed", "unrestorable")
                 else "it could not be verified here")
        result.problems.append(f"backup {b.backup_id} in storage is not catalogued: {found}: {outcome.detail}")
        return
    if catalog.add_from_storage(b.manifest, b.location, adopt=False) != "added":
        return  # catalogued meanwhile by another process
    catalog.set_verification(b.backup_id, outcome.status, outcome.detail)
    record_verification(record, b.manifest, settings, outcome.status, outcome.detail)
    result.added.append(b.backup_id)
    if b.seal is not Seal.KEYED:
        result.unkeyed.append(b.backup_id)


def _archive_problem(storage: Storage, b: StoredBackup, settings: BackupSettings) -> str | None:
    want = b.manifest.archive.sha256 if b.manifest else ""
    if isinstance(storage, S3Storage):
        work = prepare_dir(Path(settings.dir))
        with tempfile.TemporaryDirectory(prefix=f".{b.backup_id}.adopt-", suffix=".partial", dir=work) as tmp:
            digest = S3Store(settings.s3).download(b.archive, Path(tmp) / "archive")
    else:
        digest = sha256_file(Path(b.location))
    if digest != want:
        return f"its SHA-256 {digest[:16]}… differs from its manifest's {want[:16]}…"
    return None


def sync_report(catalog: BackupCatalog, settings: BackupSettings) -> Report:
    storage = storage_for(settings)
    result = sync_catalog(catalog, settings, adopt=True, storage=storage)
    done = result.added + result.adopted
    summary = (f"{fmt.plural(result.seen, 'backup')} in {storage.describe()}; "
               + (f"{len(result.added)} added to the catalog, {len(result.adopted)} adopted"
                  if done else "the catalog already had them all")
               + (f", {fmt.plural(len(result.quarantined), 'file')} quarantined" if result.quarantined else "")
               + (f"; {fmt.plural(len(result.problems), 'problem')}" if result.problems else "") + ".")
    return Report(title="Backup catalog sync", summary=summary,
                  outcome=Outcome.FAILED if result.problems else Outcome.OK,
                  sections=[Section("Done", table=Table(["what"], [[line] for line in result.lines()]))],
                  data={"added": result.added, "adopted": result.adopted, "quarantined": result.quarantined,
                        "problems": result.problems, "seen": result.seen, "unkeyed": result.unkeyed})
