"""The restore drill: instance, restore, verify, delete, report. The instance is deleted whatever happens.

The archive is read (SHA-256, decrypting and unpacking as the backup area does, its table of contents)
in a background thread while the instance starts, so checking the stored bytes costs next to nothing
on the recovery time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import psutil
import psycopg

from .. import fmt
from ..backup.storage import sha256_file
from ..backup.verify import restorable_archive
from ..errors import Cancelled
from ..postgres import (
    MARKER_FILE,
    ArchiveContents,
    copy_major,
    list_archive,
    major_version,
    restore_command,
    run_pg_restore,
    short_version,
    tool_version,
)
from ..report import Check, Progress, ProgressFn, no_progress
from ..target import dsn_secrets, scrub
from ..verification import plan
from ..verification.steps import Failed, StepFailed, checks_outcome, run_step, run_steps
from . import checks as C
from .instance import DRILL_PURPOSE, DrillInstance, make_instance
from .result import DrillResult
from .settings import DrillSettings


@dataclass
class PreparedArchive:
    sha256: str | None  # of the stored bytes; None when given an unpacked folder
    restorable: Path | None  # what pg_restore reads
    contents: ArchiveContents
    problem: str | None = None  # could not be made restorable (decryption, unpacking)


class DrillInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the drill. The instance is already deleted; `result` is the cancelled drill, for
    the caller to record. Still a KeyboardInterrupt: a caller that does not know it stops as on Ctrl-C."""

    def __init__(self, result: DrillResult) -> None:
        super().__init__("interrupted")
        self.result = result


def run_drill(manifest: Any, archive_path: Path | str, settings: DrillSettings,
              expected_indexes: Iterable[Any] | None = None, progress: ProgressFn = no_progress,
              cancel: threading.Event | None = None, allow_newer_major: bool = False) -> DrillResult:
    """Restore `archive_path` (the archive as stored: what the manifest's sha256 is of) into a fresh
    instance of the backup's source major and verify it against `manifest` (a BackupManifest or its dict).

    An encrypted archive is decrypted with DBOPS_BACKUP_KEY, as `backup verify` and `restore` do.
    `cancel` stops it with a cancelled result; Ctrl-C (KeyboardInterrupt) stops it too, deletes the
    instance and raises DrillInterrupted, never a report of checks that did not all run.
    `allow_newer_major`: when that major is not installed (or cannot read the archive), run on the
    oldest newer one installed; the report says it proved restorability on that major only.
    """
    doc = manifest.to_dict() if hasattr(manifest, "to_dict") else dict(manifest)
    return RestoreDrill(doc, Path(archive_path), settings, expected_indexes, progress, cancel,
                        allow_newer_major=allow_newer_major).run()


class RestoreDrill:
    def __init__(self, manifest: dict, archive: Path, settings: DrillSettings, expected_indexes,
                 progress: ProgressFn, cancel: threading.Event | None, allow_newer_major: bool = False) -> None:
        self.manifest, self.archive, self.settings = manifest, archive, settings
        self.allow_newer_major = allow_newer_major
        # The major the copy must run (the source's), and the one it runs (set when it starts).
        self.source_major = major_version(manifest.get("server_version_num") or manifest.get("server_version")) or None
        self.copy_major: int | None = None
        # What the copy is verified against, and how this kind of drill runs the plan (an export drill: others).
        self.reference: plan.Reference = plan.AgainstManifest(manifest)
        self.caller = plan.DRILL
        self.options = plan.Options.of(settings, expected_indexes)
        self.verified_head = "Verified the restored database"
        self.progress, self.cancel = _never_raising(progress), cancel or threading.Event()
        info = manifest.get("archive", {}) or {}
        self.archive_info = info
        self.result = DrillResult(
            backup_id=str(manifest.get("backup_id", "?")), target=str(manifest.get("target", "?")),
            instance_kind=settings.instance, started_at=time.time(),
            backup={"created_at": manifest.get("created_at"), "format": info.get("format", "custom"),
                    "compression": info.get("compression", ""), "size": int(info.get("size") or 0),
                    "encrypted": bool(info.get("encrypted")), "integrity_level": manifest.get("integrity_level"),
                    "tables": len(manifest.get("tables", [])),
                    "rows": sum(int(t.get("rows", 0)) for t in manifest.get("tables", []))})
        self.instance: DrillInstance | None = None
        self.files_dir: Path | None = None
        self._secrets: list[str] = []
        self._abandon = threading.Event()
        self.interrupted = False
        if settings.scratch_url:
            self._secrets += dsn_secrets(settings.scratch_url)

    # -- the frame ---------------------------------------------------------------------
    def run(self) -> DrillResult:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drill-archive")
        try:
            try:
                prepared = pool.submit(self._prepare_archive)
                run_steps(self.result, [("create instance", self._create_instance),
                                        ("restore", lambda: self._restore(prepared)),
                                        ("verify", self._verify)], self._step, self.cancel)
            except KeyboardInterrupt:  # between two steps; within one, _step has it
                self._interrupted()
        finally:
            self._abandon.set()  # stop hashing an archive nobody will restore
            # Ctrl-C now would leave the instance behind: it waits until the instance is gone.
            with _SigintDeferred() as deferred:
                self._step("delete instance", self._delete_instance)
            if deferred.caught:
                self._interrupted()
            pool.shutdown(wait=True, cancel_futures=True)
            if self.files_dir is not None:  # the background preparation may have made it after the delete step
                shutil.rmtree(self.files_dir, ignore_errors=True)
            self.result.finished_at = time.time()
            if not self.interrupted:  # an interrupted drill says "interrupted", and no verdict
                self.progress(Progress("done", 1.0, self.result.summary))
        if self.interrupted:
            raise DrillInterrupted(self.result)
        return self.result

    def _interrupted(self) -> None:
        self.interrupted = self.result.cancelled = True
        self.cancel.set()  # background work (hashing, pg_amcheck) stops too

    def _step(self, name: str, work) -> bool:
        """Run one step (steps.run_step); False when the drill cannot go on."""
        checks_before = len(self.result.checks)

        def interrupted() -> None:
            # Ctrl-C reaches the client programs too (one process group): pg_restore or pg_amcheck
            # dying of it is no finding about the backup. Nothing this step found counts.
            del self.result.checks[checks_before:]
            if name == "restore":
                self.result.restore_errors = []
            self._interrupted()

        return run_step(self.result, name, work, self.progress, self._clean, interrupted)

    def _clean(self, text: str) -> str:
        return scrub(text, self._secrets)[:2000]

    def _check(self, check: Check) -> Check:
        check.detail = self._clean(check.detail)
        self.result.checks.append(check)
        return check

    # -- step 1 --------------------------------------------------------------------------
    def _create_instance(self) -> str:
        wanted = None
        if self.source_major is not None:
            # The source's major; a backup written by a newer pg_dump cannot be restored on it.
            dumped_by = major_version(self.manifest.get("pg_dump_version")) or None
            wanted = copy_major(self.source_major, dumped_by, self.allow_newer_major)
        self.instance = make_instance(self.settings, wanted)
        self.instance.start()
        dsn = self.instance.database_dsn()
        self._secrets += dsn_secrets(dsn)
        self.result.instance = self.instance.describe()
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        self.server_version = version
        self.copy_major = major_version(version)
        self.result.versions["drill server"] = f"PostgreSQL {version}"
        self.result.copy_version = short_version(version)
        self.result.procedure.append(f"Created the drill instance: {self.result.instance}, PostgreSQL {version}.")
        if self.source_major is not None:
            self.result.source_version = short_version(self.manifest.get("server_version")
                                                       or self.manifest.get("server_version_num"))
            check = self._check(C.copy_major_check(self.result.target, self.result.source_version, version))
            if not check.ok or (self.copy_major != self.source_major and not self.allow_newer_major):
                raise StepFailed(f"{check.detail}: a drill runs on the backup's source major "
                                 f"(--allow-newer-major to run on a newer one)")
        return f"{self.result.instance}, PostgreSQL {version}"

    # -- step 2 --------------------------------------------------------------------------
    def _prepare_archive(self) -> PreparedArchive:
        """In the background: hash the stored bytes, decrypt/unpack if needed, read the table of contents."""
        stored = self.archive
        if not stored.exists():
            return PreparedArchive(None, None, ArchiveContents(), f"the archive {stored} does not exist")
        if stored.is_dir():  # an unpacked directory-format archive: nothing stored to hash
            sha, restorable = None, stored
        else:
            sha = sha256_file(stored, on_bytes=self._stop_hashing)
            try:
                # Any name for the files made: "archive" keeps the manifest's text out of paths.
                restorable = restorable_archive(stored, "archive", bool(self.archive_info.get("encrypted")),
                                                str(self.archive_info.get("format") or "custom"), self._files(),
                                                copy=False)
            except Exception as exc:  # noqa: BLE001 -- reported as the restore step's failure
                return PreparedArchive(sha, None, ArchiveContents(), f"could not prepare the archive: {exc}")
        return PreparedArchive(sha, restorable, list_archive(restorable))

    def _stop_hashing(self, _: int) -> None:
        if self.cancel.is_set() or self._abandon.is_set():
            raise Cancelled("the drill was cancelled while the archive was hashed")

    def _files(self) -> Path:
        """A private folder for decrypted/unpacked archives, with pginstance's marker so a crash's
        leftovers go with the instances at the next start."""
        if self.files_dir is None:
            self.settings.work_dir.mkdir(parents=True, exist_ok=True)
            self.files_dir = Path(tempfile.mkdtemp(prefix="dbops-drillfiles-", dir=self.settings.work_dir))
            pid = os.getpid()
            (self.files_dir / MARKER_FILE).write_text(json.dumps(
                {"purpose": DRILL_PURPOSE, "pid": pid, "pid_started": psutil.Process(pid).create_time(),
                 "created": time.time()}))
        return self.files_dir

    def _restore(self, prepared_future: Future) -> str:
        self.progress(Progress("restore", None, "checking the archive"))
        prepared: PreparedArchive = prepared_future.result()
        if self.cancel.is_set():
            raise Cancelled("the drill was cancelled")
        want = (self.archive_info.get("sha256") or "").lower()
        sha_check = "archive SHA-256 against the catalog"
        if prepared.sha256 is None:
            self._check(Check.of(sha_check, bool(not want and prepared.problem is None),
                                "given an unpacked folder: the stored file's SHA-256 could not be checked"
                                if prepared.problem is None else prepared.problem,
                                headline="the archive could not be checked"))
        elif not want:
            self._check(Check.of(sha_check, False,
                                f"the catalog has no SHA-256 for this backup (the file's is {prepared.sha256[:16]}...)",
                                headline="the catalog has no SHA-256 for the archive"))
        else:
            same = prepared.sha256 == want
            self._check(Check.of(sha_check, same,
                                f"sha256 {want[:16]}..." if same else
                                f"the stored archive's SHA-256 is {prepared.sha256[:16]}..., the catalog says "
                                f"{want[:16]}...: the file changed after the backup",
                                headline="" if same else "the archive's SHA-256 differs from the catalog's"))
        size = self.archive_info.get("size")
        if size and self.archive.is_file() and self.archive.stat().st_size != int(size):
            self._check(Check.of("archive size against the catalog", False,
                                f"{self.archive.stat().st_size:,} bytes stored, the catalog says {int(size):,}",
                                headline="the archive's size differs from the catalog's"))
        if prepared.problem:
            raise StepFailed(prepared.problem)
        contents = prepared.contents
        readable = not contents.errors and contents.entries > 0
        self._check(Check.of("archive's table of contents (pg_restore --list)", readable,
                            f"{contents.entries} entries, {contents.table_data} with table data ({contents.format})"
                            if readable else C.listed(contents.errors or ["the archive lists no entries"]),
                            headline="" if readable else "pg_restore cannot read the archive"))
        if not readable:
            raise StepFailed("pg_restore cannot read the archive's table of contents")

        dumped_by = self.manifest.get("pg_dump_version") or contents.dumped_by
        self.result.versions["pg_dump (backup)"] = str(dumped_by or "?")
        source = self.manifest.get("server_version") or contents.dumped_from
        if source:
            self.result.versions["source server"] = f"PostgreSQL {source}"
        self.result.versions["pg_restore"] = ".".join(map(str, tool_version("pg_restore", self._client_major())))
        need, have = major_version(dumped_by), major_version(getattr(self, "server_version", None))
        fits = need is not None and have is not None and have >= need
        self._check(Check.of("drill server version >= archive's pg_dump version", fits,
                            f"PostgreSQL {have} for pg_dump {need}" if fits else
                            f"PostgreSQL {have} cannot take an archive from pg_dump {dumped_by or '(unknown)'}"))
        if not fits or major_version(self.result.versions["pg_restore"]) < (need or 0):
            raise StepFailed(f"the drill needs PostgreSQL >= {need} to restore this archive")

        created = _parse_time(self.manifest.get("created_at"))
        if created is not None:
            self.result.recovery_point_age_s = round(time.time() - created, 1)
        archive_format = (self.archive_info.get("format") or contents.format or "custom").lower()
        dsn = self.instance.database_dsn()
        cmd, jobs = restore_command(prepared.restorable, archive_format, self.settings.jobs,
                                    major=self._client_major())
        self.result.procedure.append(
            f"Checked the stored archive ({self.result.backup['size']:,} bytes) against the catalog's SHA-256 and read "
            f"its table of contents ({contents.entries} entries).")
        outcome = run_pg_restore(prepared.restorable, dsn, archive_format, self.settings.jobs, contents.table_data,
                                 self.progress, self.cancel, major=self._client_major())
        self.result.restore_errors = [self._clean(e) for e in outcome.errors]
        shown = " ".join(a for a in cmd[1:-1] if a != "--dbname=")
        self.result.procedure.append(f"Restored it with `pg_restore {shown}` "
                                     f"({fmt.plural(outcome.jobs, 'parallel job')}).")
        self._check(Check.of("pg_restore errors", outcome.ok,
                            "pg_restore reported no errors" if outcome.ok else
                            f"{fmt.plural(outcome.error_count, 'error')}: "
                            f"{C.listed(self.result.restore_errors)}",
                            headline="" if outcome.ok else f"pg_restore: {fmt.plural(outcome.error_count, 'error')}"))
        # The restore carries on into verification even with errors: the checks name what is missing.
        if not outcome.ok:
            return Failed(fmt.plural(outcome.error_count, 'restore error'))
        return loaded_text(contents.table_data, len(self.manifest.get("tables", [])), outcome.jobs)

    # -- step 3 --------------------------------------------------------------------------
    def _verify(self) -> str:
        before = len(self.result.checks)
        done = plan.verify(self.instance.database_dsn(), self.reference, self.caller, self.options,
                           record=self._check, major=self._client_major(), progress=self.progress,
                           cancel=self.cancel, name="the drill instance")
        if "pg_amcheck" in done.did:
            self.result.versions["pg_amcheck"] = ".".join(map(str, tool_version("pg_amcheck", self._client_major())))
        self.result.procedure.append(done.sentence(self.verified_head, self.reference))
        return checks_outcome(self.result.checks[before:])

    def _client_major(self) -> int | None:
        """The major of pg_restore and pg_amcheck: the drill server's own (a newer pg_restore sends
        settings an older server rejects); the default binaries' for a drill without a known source."""
        return self.copy_major if self.source_major is not None else None

    # -- step 4 --------------------------------------------------------------------------
    def _delete_instance(self) -> str:
        said = []
        if self.files_dir is not None:
            shutil.rmtree(self.files_dir, ignore_errors=True)
        if self.instance is not None:
            description = self.instance.describe()
            self.instance.remove()
            said.append(f"deleted {description}")
            self.result.procedure.append(f"Deleted the drill instance ({description}).")
        return "; ".join(said) or "nothing to delete"


def loaded_text(loaded: int, in_manifest: int, jobs: int) -> str:
    """"data of 26 tables loaded with 2 jobs; the manifest checks 9": pg_restore loads every table's
    data the archive has, the row checks cover the application's schemas that the manifest lists."""
    text = f"data of {fmt.plural(loaded, 'table')} loaded with {fmt.plural(jobs, 'job')}"
    if in_manifest and in_manifest != loaded:
        text += f"; the row checks cover the {in_manifest} the manifest lists (the application's schemas)"
    return text


def _never_raising(progress: ProgressFn) -> ProgressFn:
    """A failing progress display (say, Slack is down) must not fail the drill."""
    def tell(p: Progress) -> None:
        try:
            progress(p)
        except Exception:  # noqa: BLE001
            pass
    return tell


class _SigintDeferred:
    """Within it, Ctrl-C is noted (`caught`) instead of raised; only in the main thread, and only where
    Python's own handler is installed (nobody else's handler is replaced)."""

    def __init__(self) -> None:
        self.caught = False
        self._previous = None

    def __enter__(self) -> "_SigintDeferred":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, *_: Any) -> None:
        self.caught = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _parse_time(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
