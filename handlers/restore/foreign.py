"""`restore --from-file PATH` / `--from-url URL`: an archive dbops did not make (a Render export, a
colleague's `pg_dump -Fc`), restored into a configured target and proven as far as it can be.

It has no manifest, so nothing says what rows it should hold: it is checked by what it is (its table of
contents, a full read of every byte), then the restored database by what it must be (restored without
errors, every table of the archive there, constraints and indexes valid, pg_amcheck, the drill's
smoke queries). The report says so, and says it is not from the catalog. The file is hostile input:
a tar is unpacked by the export drill's safe extractor, a URL is fetched with a size limit and shown
by its host and path only (signed query strings are secrets).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import fmt
from ..drill.result import check_headline, headline_list, short_error
from ..errors import DbopsError, UsageError
from ..postgres import (
    PgBinariesError,
    VersionError,
    full_read,
    list_archive,
    major_version,
    restore_major,
    short_version,
)
from ..report import Check, Outcome, Progress, Report, Section, Verdict
from ..verification import plan
from ..verification.steps import StepFailed
from .runner import RestoreResult, _Restore
from .target import RestoreRefused, inspect_target, refusals

_PGDMP = b"PGDMP"
NOT_FROM_CATALOG = ("not a dbops backup: it has no manifest, so its rows and checksums cannot be compared with "
                    "the source")


@dataclass
class ForeignArchive:
    """Where the archive is: a file or folder on this machine, or an http(s) URL (a secret: a signed
    link downloads the database; `label` is what may be shown)."""

    path: Path | None = None
    url: str | None = field(default=None, repr=False)
    max_bytes: int = 20 * 1024 ** 3  # [render] export_max_bytes: downloaded, and again unpacked
    max_files: int = 100_000

    @property
    def label(self) -> str:
        if self.url is not None:
            parts = urlsplit(self.url)
            return f"{parts.scheme}://{parts.hostname or '?'}{parts.path}" + (" (query hidden)" if parts.query else "")
        return str(self.path)

    @classmethod
    def of(cls, path: str | None, url: str | None, **limits: Any) -> "ForeignArchive":
        if (path is None) == (url is None):
            raise UsageError("give one of --from-file PATH and --from-url URL")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError("--from-url takes an http:// or https:// URL of an archive")
            return cls(url=url, **limits)
        return cls(path=Path(path).expanduser(), **limits)


def restore_foreign(archive: ForeignArchive, into, options, settings, progress=None, cancel=None) -> Report:
    """Restore an archive made elsewhere into `into`, verified by the plan as FOREIGN_RESTORE runs it (the
    smoke queries and pg_amcheck as `options` say). Raises RestoreRefused (nothing done) when the target is
    in the way; else returns the report, which says the archive is not from the catalog."""
    import threading

    from ..report import no_progress

    run = _ForeignRestore(None, settings, options, into, None, progress or no_progress, cancel or threading.Event())
    run.foreign = archive
    return run.execute_foreign()


class _ForeignRestore(_Restore):
    foreign: ForeignArchive
    caller = plan.FOREIGN_RESTORE
    contents = None
    reference: plan.AgainstArchive | None = None

    def execute_foreign(self) -> Report:
        if self._step("check target", self._check_target, passes=(DbopsError,)):
            self._load(lambda work: [("fetch archive", lambda: self._fetch_foreign(work)),
                                     ("read archive", self._read)])
            self._settle_mark()
        if self.interrupted:
            raise KeyboardInterrupt
        return self._report()

    # -- steps ---------------------------------------------------------------------------
    def _check_target(self) -> str:
        self.state = inspect_target(self.into)
        why = refusals(self.into, self.state, "(the archive)", None, self.options.overwrite)
        if why:
            raise RestoreRefused("restore refused, nothing was changed: " + "; ".join(why))
        self.result.target_version = short_version(self.state.server_version)
        self._target_major = self.state.server_version_num // 10000
        return f"{self.state.database} on PostgreSQL {self.state.server_version}, " + (
            f"{fmt.plural(len(self.state.tables), 'table')} to drop (--overwrite)" if self.state.tables else "empty")

    def _fetch_foreign(self, work: Path) -> str:
        a = self.foreign
        if a.url is not None:
            download = work / "download"
            size = _download(a, download, self._tick)
            self.archive = self._restorable(download, work)
            return f"downloaded {fmt.size(size)} from {a.label}"
        path = a.path
        if path is None or not path.exists():
            raise UsageError(f"{a.label} does not exist")
        if path.is_dir():
            if not (path / "toc.dat").is_file():
                raise UsageError(f"{a.label} is a folder without toc.dat: not a directory-format pg_dump archive")
            self.archive = path
            return f"{a.label}, a directory-format archive"
        self.archive = self._restorable(path, work)
        return f"{a.label}, {fmt.size(path.stat().st_size)}"

    def _restorable(self, file: Path, work: Path) -> Path:
        """A custom-format file as it is; a tar (a Render export, any compression) safely unpacked."""
        from ..render.export import safe_extract  # the export drill's extractor: links, `..`, sizes refused

        try:
            with open(file, "rb") as f:
                if f.read(5) == _PGDMP:
                    return file
        except OSError as exc:
            raise UsageError(f"cannot read {self.foreign.label}: {exc.strerror}") from None
        return safe_extract(file, work / "unpacked", self.foreign.max_bytes, self.foreign.max_files)

    def _read(self) -> str:
        contents = self.contents = list_archive(self.archive)
        if contents.errors:
            raise StepFailed(f"{self.foreign.label} is not an archive pg_restore can read: "
                             f"{contents.errors[-1][:300]}")
        try:  # the target's own major's pg_restore must read it (and be installed here)
            restore_major(self._target_major, major_version(contents.dumped_by))
        except (VersionError, PgBinariesError) as exc:
            raise StepFailed(f"`{self.into.name}` runs PostgreSQL {short_version(self.state.server_version)}: "
                             f"{exc}") from None
        self._check(Check("archive: table of contents", Verdict.OK,
                          f"{contents.format or '?'} format, {contents.entries} entries, data of "
                          f"{fmt.plural(contents.table_data, 'table')}; dumped from PostgreSQL "
                          f"{contents.dumped_from or '?'} by pg_dump {contents.dumped_by or '?'}"))
        self.progress(Progress("read archive", 0.5, "full read of every byte"))
        ok, reason = full_read(self.archive)
        if not ok:
            raise StepFailed(f"a full read of {self.foreign.label} failed: {reason}")
        self._check(Check("archive: full read", Verdict.OK, reason))
        self.archive_format = "directory" if (contents.format or "").upper() == "DIRECTORY" else "custom"
        self.table_count = contents.table_data
        self._before_load(contents, None)
        return f"{contents.entries} entries, data of {fmt.plural(contents.table_data, 'table')}"

    def _reference(self) -> plan.Reference:
        self.reference = plan.AgainstArchive(self.contents.table_data_lines, self.foreign.label,
                                             self.contents.dumped_from)
        return self.reference

    def _tick(self, done: int, total: int | None) -> None:
        self.progress(Progress("fetch archive", done / total if total else None,
                               f"{fmt.size(done)}" + (f" of {fmt.size(total)}" if total else "") + " downloaded"))

    # -- the report ----------------------------------------------------------------------
    def _report(self) -> Report:
        r: RestoreResult = self.result
        report = r.to_report()
        label = self.foreign.label
        report.title = f"Restore into {r.into} from {label} (not from the catalog)"
        total = sum(s["seconds"] for s in r.steps)
        failed = [c for c in r.checks if not c.ok]
        made = [c for c in r.checks if c.verdict is not Verdict.NOT_RUN]
        rows = self.reference.rows if self.reference is not None else None
        not_run = f" ({len(r.checks) - len(made)} not run)" if len(made) < len(r.checks) else ""
        if r.ok:
            report.summary = (f"Restored {label} into `{r.into}` in {fmt.duration(total)}: {len(made)} checks "
                              f"passed{not_run}, {rows or 0:,} rows. It is {NOT_FROM_CATALOG}: checked are its "
                              "table of contents, a full read, and the restored database itself.")
        elif r.error:
            report.summary = f"Restore of {label} into `{r.into}` FAILED: {short_error(r.error)}"
        elif r.cancelled:
            report.summary = (f"Restore of {label} into `{r.into}` cancelled: it may hold a partial or unverified "
                              "restore. Do not point the application at it.")
        else:
            report.summary = (f"Restore of {label} into `{r.into}` FAILED its checks: {len(failed)} of "
                              f"{len(made)} failed ({headline_list([check_headline(c) for c in failed])}). Do not "
                              "point the application at it.")
        report.sections.insert(0, Section("Not from the catalog", text=(
            f"{label} is {NOT_FROM_CATALOG}. What could be proven: pg_restore reads all of it, every table it "
            "holds data for is in the restored database, and that database is sound (the checks below say "
            "which ran, and why any did not).")))
        report.outcome = Outcome.OK if r.ok else Outcome.FAILED
        report.data |= {"from_catalog": False, "archive": label, "rows": rows}
        return report


def _download(archive: ForeignArchive, dest: Path, tick) -> int:
    """Stream the URL to `dest` (0600), at most `max_bytes`; errors name the host, never the query."""
    import httpx

    where = urlsplit(archive.url or "").hostname or "the URL"
    size = 0
    try:
        with httpx.stream("GET", archive.url or "", timeout=httpx.Timeout(300.0, connect=15.0),
                          follow_redirects=True) as answer:
            if answer.status_code != 200:
                raise UsageError(f"downloading the archive from {where} failed: HTTP {answer.status_code}"
                                 + (" (a signed link that expired?)" if answer.status_code in (403, 404, 410) else ""))
            total = int(answer.headers.get("Content-Length") or 0) or None
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as out:
                for chunk in answer.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > archive.max_bytes:
                        raise UsageError(f"the archive at {where} is larger than the limit of "
                                         f"{archive.max_bytes:,} bytes ([render] export_max_bytes)")
                    out.write(chunk)
                    tick(size, total)
    except httpx.HTTPError as exc:
        raise UsageError(f"downloading the archive from {where} failed: {type(exc).__name__}") from None
    return size
