"""`restore`: a backup into a configured target, proven against its manifest with the drill's checks.

The order, and why:
1. choose the backup: the id given, or `latest`: the newest verified backup of the source (from
   storage alone: the newest whose archive still matches its sealed manifest);
2. check the target: reachable, of the backup's source major or newer (a newer one is an upgrade,
   said in the report; an older one is refused), with pg_restore of its major here, and empty and
   not the source itself unless --overwrite (restoring is destructive: anything unsure refuses,
   before any byte moves);
3. fetch the archive: SHA-256 against the manifest, decrypted with DBOPS_BACKUP_KEY alone, unpacked;
   a damaged `latest` is skipped for the next one, and the report says so;
4. with --overwrite, drop the target's application schemas;
5. pg_restore --jobs, credentials in the environment only, the bot's own `dbops` schema left out;
6. prove it: the one verification plan every drill runs (handlers/verification/plan.py: rows,
   checksums, schema, sequences, constraints, indexes, the expected indexes, the smoke queries,
   pg_amcheck) against the manifest, then the report: the time of every step, the roles to create,
   what to do next on Render, and with --backup-after a fresh backup of the target.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import fmt
from ..backup.catalog import BackupRecord
from ..backup.manifest import BackupManifest
from ..backup.seal import FUTURE_SKEW
from ..backup.settings import BackupSettings
from ..backup.storage import StorageError, prepare_dir
from ..backup.verify import ArchiveDamaged, fetch_plain
from ..drill import checks as C
from ..drill.result import check_headline, headline_list, short_error
from ..errors import Cancelled, DbopsError, UsageError
from ..postgres import (
    PgBinariesError,
    VersionError,
    left_out_on_restore,
    list_archive,
    major_version,
    majors_line,
    restore_major,
    run_pg_restore,
    short_version,
)
from ..report import Check, Outcome, ProgressFn, Report, Section, Table, Verdict, no_progress
from ..target import Target, dsn_secrets, scrub
from ..verification import plan
from ..verification.steps import Failed, StepFailed, checks_outcome, run_step, run_steps
from .marks import mark_unfinished, settle_mark
from .target import (
    RestoreRefused,
    clear_target,
    extension_entries,
    extensions_of_others,
    inspect_target,
    missing_roles,
    refusals,
)


@dataclass
class RestoreOptions:
    backup: str = "latest"  # an id, or "latest"
    source: str = "prod"  # whose backups `latest` picks from
    overwrite: bool = False
    jobs: int = 2
    amcheck: bool = True
    # What the verification plan asks besides ([drill] smoke queries, [indexes] expected), as drills do.
    expected_indexes: tuple[Any, ...] | None = None
    smoke_queries: tuple[Any, ...] = ()
    smoke_timeout_s: int = 60

    def verification(self) -> plan.Options:
        return plan.Options(jobs=self.jobs, amcheck=self.amcheck, expected_indexes=self.expected_indexes,
                            smoke_queries=self.smoke_queries, smoke_timeout_s=self.smoke_timeout_s)


@dataclass
class RestoreResult:
    into: str
    backup_id: str | None = None
    steps: list[dict] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # newer backups passed over, and why
    roles: list[tuple[str, str]] = field(default_factory=list)
    dropped_schemas: list[str] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False
    backup_after: dict | None = None
    manifest: dict | None = None
    target_version: str = ""  # the PostgreSQL restored into, "16.15"

    @property
    def ok(self) -> bool:
        return (self.error is None and not self.cancelled and all(c.ok for c in self.checks)
                and not self.restore_errors)

    @property
    def majors(self) -> str:
        """"prod: PostgreSQL 16.4 · restored into 17.2 (...)": the source's major and the target's."""
        m = self.manifest or {}
        if not self.target_version or not m.get("server_version"):
            return ""
        return majors_line(str(m.get("target")), m.get("server_version"), self.target_version, "restored into",
                           newer="a major upgrade")

    def to_report(self) -> Report:
        m = self.manifest or {}
        failed = [c for c in self.checks if not c.ok]
        made = [c for c in self.checks if c.verdict is not Verdict.NOT_RUN]
        not_run = len(self.checks) - len(made)
        total = sum(s["seconds"] for s in self.steps)
        if self.error:
            summary = f"Restore into `{self.into}` FAILED: {short_error(self.error)}"
        elif self.cancelled:
            summary = (f"Restore into `{self.into}` cancelled: it may hold a partial or unverified restore. Do not "
                       "point the application at it.")
        elif failed or self.restore_errors:
            summary = (f"Restore of {self.backup_id} into `{self.into}` FAILED its checks: {len(failed)} of "
                       f"{len(made)} failed ({headline_list([check_headline(c) for c in failed])}). Do not point "
                       "the application at it.")
        else:
            summary = (f"Restored {self.backup_id} of `{m.get('target')}` ({fmt.when_written(m.get('created_at'))}) "
                       f"into `{self.into}` in {fmt.duration(total)}: {len(made)} checks passed"
                       f"{f' ({not_run} not run)' if not_run else ''}, "
                       f"{sum(int(t.get('rows', 0)) for t in m.get('tables', [])):,} rows.")
        if self.majors:
            summary += f" {self.majors}."
        cut = self.error is not None and short_error(self.error) != self.error
        sections = [Section("Error", self.error, problem=True)] if cut else []
        sections += [Section("Steps", table=Table(["step", "seconds", "outcome", "detail"],
                                                 [[s["step"], s["seconds"], s["outcome"], s["detail"]]
                                                  for s in self.steps]))]
        if self.skipped:
            sections.append(Section("Newer backups passed over", text="\n".join(self.skipped)))
        if self.checks:
            sections.append(Section("Checks", checks=self.checks))
        if self.roles:
            sections.append(Section("Roles the archive's objects belong to, missing here", text=(
                "The restored objects are owned by the target's own user (pg_restore --no-owner). To give them "
                "their original owners, create these roles and reassign:\n```\n"
                + "\n".join(statement for _, statement in self.roles) + "\n```")))
        if self.ok:
            sections.append(Section("Next steps on Render", text=next_steps(self.into)))
        if self.backup_after is not None:
            sections.append(Section("Backup of the restored database", text=self.backup_after.get("summary")
                                    or f"FAILED: {self.backup_after.get('error')}"))
        ok = self.ok and not (self.backup_after or {}).get("error")
        return Report(title=f"Restore into {self.into}" + (f" (backup {self.backup_id})" if self.backup_id else ""),
                      summary=summary, outcome=Outcome.OK if ok else Outcome.FAILED, sections=sections,
                      data={"into": self.into, "backup_id": self.backup_id, "steps": self.steps,
                            "checks": [c.to_dict() for c in self.checks],
                            "skipped": self.skipped, "missing_roles": [n for n, _ in self.roles],
                            "role_statements": [s for _, s in self.roles], "dropped_schemas": self.dropped_schemas,
                            "restore_errors": self.restore_errors, "error": self.error, "cancelled": self.cancelled,
                            "total_s": round(total, 3),
                            "backup_after": self.backup_after, "target_version": self.target_version,
                            "source_version": short_version(m.get("server_version")) if m else None,
                            "size": (m.get("archive") or {}).get("size"),
                            "size_text": fmt.size((m.get("archive") or {}).get("size"))})


def restore_backup(catalog: Any, settings: BackupSettings, options: RestoreOptions, into: Target,
                   source: Target | None, progress: ProgressFn = no_progress,
                   cancel: threading.Event | None = None,
                   backup_after: Callable[[], Report] | None = None) -> Report:
    """Restore a backup into `into`. `catalog` is a BackupCatalog or a StorageCatalog (state database
    down). Raises RestoreRefused (nothing done) when the target is in the way; else returns the report."""
    run = _Restore(catalog, settings, options, into, source, progress, cancel or threading.Event())
    return run.execute(backup_after)


class _Restore:
    def __init__(self, catalog, settings, options, into, source, progress, cancel) -> None:
        self.catalog, self.settings, self.options = catalog, settings, options
        self.into, self.source, self.progress, self.cancel = into, source, progress, cancel
        self.result = RestoreResult(into=into.name)
        self._target_major: int | None = None  # the target's PostgreSQL major: pg_restore and pg_amcheck run it
        self.secrets = dsn_secrets(into.dsn) + (dsn_secrets(source.dsn) if source else [])
        self._marked = False  # the target holds this restore's mark (marks.py)
        self._chosen: list[BackupRecord] = []
        self.state = None  # the target as "check target" found it
        self.manifest: BackupManifest | None = None
        self.archive: Path | None = None  # what pg_restore reads
        self.archive_format = "custom"
        self.table_count = 0  # tables with data in the archive, for pg_restore's progress
        self.kept: tuple[str, ...] = ()  # extension entries the target has, owned by another role
        self.interrupted = False

    def _step(self, name: str, work, passes: tuple[type[BaseException], ...] = ()) -> bool:
        return run_step(self.result, name, work, self.progress, self._clean, self._interrupted, passes)

    def _interrupted(self) -> None:
        self.interrupted = self.result.cancelled = True
        self.cancel.set()

    def _clean(self, text: str) -> str:
        return scrub(text, self.secrets)[:2000]

    def _check(self, check: Check) -> None:
        check.detail = self._clean(check.detail)
        self.result.checks.append(check)

    # -- the whole restore ---------------------------------------------------------------
    def execute(self, backup_after: Callable[[], Report] | None) -> Report:
        # Nothing is done before the target is checked: what stops these two is an error (or a refusal),
        # raised as it is, not a report of a restore.
        if not (self._step("choose backup", self._candidates, passes=(DbopsError,))
                and self._step("check target", self._check_target, passes=(DbopsError,))):
            return self._finished()
        self._load(lambda work: [("fetch archive", lambda: self._fetch(work))])
        self._settle_mark()
        if backup_after is not None and self.result.ok:
            self._step("backup after", lambda: self._backup_after(backup_after))
        return self._finished()

    def _load(self, fetch: Callable[[Path], list[tuple[str, Callable]]]) -> None:
        """The steps that change the target, the same for every archive: `fetch` (its steps get the archive
        into a private folder and end with _before_load), clear the target when it holds tables, restore,
        verify. Once one cannot go on, the rest are skipped."""
        work = Path(tempfile.mkdtemp(prefix=".restore-", suffix=".partial", dir=prepare_dir(Path(self.settings.dir))))
        try:
            steps = fetch(work)
            if self.state.tables or self.options.overwrite:
                steps.append(("clear target", self._clear))
            steps += [("restore", self._pg_restore), ("verify", self._verify)]
            run_steps(self.result, steps, self._step, self.cancel)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _before_load(self, contents, backup_id: str | None, advice: str = "") -> None:
        """What the archive holds that the target must know before the restore (roles, entries left out,
        extensions the target keeps), and the target marked unfinished: the last thing before a change."""
        self.result.roles = missing_roles(self.into, contents.owners)
        skipped = left_out_on_restore(contents)
        if skipped:
            self._check(Check("left out of the restore", Verdict.WARNING, f"{C.listed(skipped)}: a copy must not "
                              f"replicate or label as its source does{advice}"))
        self._mark_unfinished(backup_id)  # before the first change to the target
        theirs = extensions_of_others(self.into)
        self.kept = extension_entries(contents.entry_lines, theirs)
        if self.kept:
            self._check(Check("extensions the target keeps", Verdict.WARNING, (
                f"{C.listed(sorted({e.rsplit(' ', 1)[-1] for e in self.kept}))}: already there, owned by "
                f"{C.listed(sorted({theirs[e.rsplit(' ', 1)[-1]] for e in self.kept}))}; restored as the target has "
                "them (only their owner may change them or their comments)")))

    def _finished(self) -> Report:
        if self.interrupted:  # Ctrl-C: the mark says the target is unfinished; stop as on Ctrl-C
            raise KeyboardInterrupt
        return self.result.to_report()

    def _backup_after(self, backup_after: Callable[[], Report]) -> str | Failed:
        """A fresh backup of the restored target; its failure is the backup's, not the proven restore's."""
        try:
            report = backup_after()
        except DbopsError as exc:
            self.result.backup_after = {"error": self._clean(str(exc))}
            return Failed(self.result.backup_after["error"])
        self.result.backup_after = {"summary": report.summary, "backup_id": report.data.get("backup_id"),
                                    "ok": report.ok}
        return report.summary if report.ok else Failed(report.summary)

    def _check_target(self) -> str:
        state = self.state = inspect_target(self.into)
        why = refusals(self.into, state, self.options.source, self.source, self.options.overwrite)
        first = self.catalog.manifest(self._chosen[0].id) if self._chosen else None
        if first is not None:
            why += self._major_refusals(state, first)
        if why:
            raise RestoreRefused("restore refused, nothing was changed: " + "; ".join(why))
        self.result.target_version = short_version(state.server_version)
        self._target_major = state.server_version_num // 10000
        return f"{state.database} on PostgreSQL {state.server_version}, " + (
            f"{fmt.plural(len(state.tables), 'table')} to drop (--overwrite)" if state.tables else "empty")

    def _mark_unfinished(self, backup_id: str | None) -> None:
        self._marked = mark_unfinished(self.into, backup_id) is None
        if not self._marked:
            self._check(Check("target marked while restoring", Verdict.WARNING, (
                "could not write dbops.restore_marks in the target: if this restore stops half-way, the target "
                "will not say so itself")))

    def _settle_mark(self) -> None:
        """The mark goes once the restore finished with every check passed; else it says why."""
        if self._marked:
            settle_mark(self.into, self.result.ok, self.result.error or "its checks failed")

    # -- steps ---------------------------------------------------------------------------
    def _candidates(self) -> str:
        wanted = (self.options.backup or "latest").strip().lower()
        if wanted != "latest":
            record = self.catalog.require(wanted)
            if not record.usable:
                raise UsageError(f"backup {record.id} has no archive to restore (it is "
                                 f"{'pruned' if record.deleted_at else record.status}"
                                 + (f": {record.error}" if record.error else "") + ")")
            self._chosen = [record]
            return f"{record.id}, as asked"
        records = [r for r in self.catalog.list(self.options.source) if r.usable and r.target == self.options.source]
        latest_true = datetime.now(timezone.utc) + FUTURE_SKEW
        self.result.skipped += [f"{r.id}: dated {fmt.when(r.started_at)}, in the future (a wrong clock, or a "
                                "planted backup)" for r in records if r.started_at > latest_true]
        records = [r for r in records if r.started_at <= latest_true]
        from_storage = getattr(self.catalog, "from_storage", False)
        # From storage alone nothing is marked verified: each is checked when fetched, newest first.
        chosen = records if from_storage else [r for r in records if r.verified]
        if not chosen:
            raise UsageError(f"no {'' if from_storage else 'verified '}backup of `{self.options.source}` to restore"
                             + ("" if from_storage else "; `backup list` shows them, `backup verify ID` checks one,"
                                " or give an id"))
        self._chosen = chosen
        return f"newest {'intact' if from_storage else 'verified'} backup of `{self.options.source}`"

    def _fetch(self, work: Path) -> str:
        """The archive, checked against its manifest; what it holds that the target must know before the
        restore (roles, entries left out, extensions the target keeps); the target marked unfinished."""
        record, manifest, archive = self._fetched(work)
        self.manifest, self.archive = manifest, archive
        self.archive_format, self.table_count = manifest.archive.format or "custom", len(manifest.tables)
        self.result.manifest = manifest.to_dict()
        self._before_load(list_archive(archive), record.id,
                          "; if this database replaces the source, create them again by hand")
        return f"backup {record.id}, {fmt.size(manifest.archive.size)}"

    def _fetched(self, work: Path) -> tuple[BackupRecord, BackupManifest, Path]:
        for record in self._chosen:
            manifest = self.catalog.manifest(record.id)
            if manifest is None:
                self.result.skipped.append(f"{record.id}: no manifest")
                continue
            refused = self._major_refusals(self.state, manifest)
            if refused:
                raise StepFailed(f"backup {record.id}: " + "; ".join(refused))
            checks: list[list[str]] = []
            try:
                archive = fetch_plain(record, manifest, self.settings, work, self.progress, checks, copy=True)
            except ArchiveDamaged as exc:
                if len(self._chosen) == 1:
                    raise
                self.result.skipped.append(f"{record.id}: {exc}")
                continue
            except StorageError as exc:
                raise StepFailed(f"the backup storage cannot be read: {exc}") from None
            self.result.backup_id = record.id
            for name, detail in checks:
                self._check(Check(f"archive: {name}", Verdict.OK, detail))
            return record, manifest, archive
        raise StepFailed("no intact backup to restore: " + "; ".join(self.result.skipped))

    def _major_refusals(self, state, manifest: BackupManifest) -> list[str]:
        """Why the target's PostgreSQL major cannot take this backup; [] when it can. The source's major
        or a newer one (an upgrade); with pg_restore of the target's own major, which must read the
        archive, and is installed here (else the reason says how to install it)."""
        target_major = state.server_version_num // 10000
        source_major = major_version(manifest.server_version_num or manifest.server_version) or None
        if source_major is not None and target_major < source_major:
            return [f"`{self.into.name}` runs PostgreSQL {short_version(state.server_version)}, an older major than "
                    f"the backup's source (PostgreSQL {short_version(manifest.server_version)}): a restore into an "
                    f"older major is refused (what pg_dump wrote for {source_major} may not load into {target_major}, "
                    f"and the drill's checks could not prove it); restore into PostgreSQL {source_major} or newer"]
        try:
            restore_major(target_major, major_version(manifest.pg_dump_version))
        except (VersionError, PgBinariesError) as exc:
            return [f"`{self.into.name}` runs PostgreSQL {short_version(state.server_version)}: {exc}"]
        return []

    def _clear(self) -> str:
        self.result.dropped_schemas = clear_target(self.into)
        dropped = self.result.dropped_schemas
        return f"dropped {'schema' if len(dropped) == 1 else 'schemas'} {', '.join(dropped) or '(none)'}"

    def _pg_restore(self) -> str | Failed:
        # The bot's own `dbops` schema is never restored over the target's: it is the state store's.
        try:
            # The target's own major's pg_restore (checked in "check target").
            outcome = run_pg_restore(self.archive, self.into.dsn, self.archive_format, self.options.jobs,
                                     self.table_count, self.progress, self.cancel, exclude_schemas=("dbops",),
                                     major=self._target_major, leave_out=self.kept)
        except Cancelled:
            raise StepFailed("cancelled while pg_restore ran: the target holds a partial restore") from None
        self.result.restore_errors = [self._clean(e) for e in outcome.errors]
        ok = outcome.ok
        self._check(Check.of("pg_restore errors", ok, "pg_restore reported no errors" if ok else
                             f"{fmt.plural(outcome.error_count, 'error')}: {C.listed(self.result.restore_errors)}",
                             headline="" if ok else f"pg_restore: {fmt.plural(outcome.error_count, 'error')}"))
        # With errors it goes on into verification all the same: the checks name what is missing.
        done = f"{outcome.tables_loaded} tables loaded with {outcome.jobs} jobs"
        return done if ok else Failed(f"{done}; {fmt.plural(outcome.error_count, 'restore error')}")

    def _verify(self) -> str | Failed:
        before = len(self.result.checks)
        plan.verify(self.into.dsn, self._reference(), self.caller, self.options.verification(), record=self._check,
                    major=self._target_major, progress=self.progress, cancel=self.cancel, name=self.into.name)
        return checks_outcome(self.result.checks[before:])

    caller = plan.RESTORE

    def _reference(self) -> plan.Reference:
        return plan.AgainstManifest(self.manifest.to_dict())


def next_steps(into: str) -> str:
    return (f"1. Point the application at `{into}`: in the Render dashboard, set the web service's DATABASE_URL "
            f"to this database's Internal Database URL (Environment tab), and redeploy.\n"
            "2. Suspend the old database rather than delete it: it may still hold what the backup does not "
            "(writes after the backup), and a deleted Render database cannot be brought back.\n"
            f"3. Point dbops at it too: DATABASE_URL for the bot, and DBOPS_STATE_URL at a database of its own; "
            f"then `dbops backup sync` and a fresh `dbops backup --target {into}` (or use --backup-after).")
