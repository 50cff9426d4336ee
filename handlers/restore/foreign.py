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
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import psycopg

from .. import fmt
from ..backup.storage import prepare_dir
from ..drill import checks as C
from ..errors import Cancelled, DbopsError, UsageError
from ..postgres import (
    PgBinariesError,
    VersionError,
    full_read,
    list_archive,
    major_version,
    restore_major,
    run_pg_restore,
    short_version,
    toc_entry,
)
from ..report import Outcome, Progress, Report, Section
from .runner import RestoreResult, _Failed, _Restore
from .target import RestoreRefused, inspect_target, missing_roles, refusals

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


def restore_foreign(archive: ForeignArchive, into, options, settings, smoke_queries: Iterable[Any] = (),
                    smoke_timeout_s: int = 60, progress=None, cancel=None) -> Report:
    """Restore an archive made elsewhere into `into`. Raises RestoreRefused (nothing done) when the
    target is in the way; else returns the report, which says the archive is not from the catalog."""
    import threading

    from ..report import no_progress

    run = _ForeignRestore(None, settings, options, into, None, progress or no_progress, cancel or threading.Event())
    run.archive, run.smoke, run.smoke_timeout_s = archive, list(smoke_queries), smoke_timeout_s
    return run.execute_foreign()


class _ForeignRestore(_Restore):
    archive: ForeignArchive
    smoke: list
    smoke_timeout_s: int

    def execute_foreign(self) -> Report:
        state = self._step("check target", lambda: self._check_target())
        work = Path(tempfile.mkdtemp(prefix=".restore-foreign-", suffix=".partial",
                                     dir=prepare_dir(Path(self.settings.dir))))
        try:
            restorable = self._step("fetch archive", lambda: self._fetch_foreign(work))
            contents = self._step("read archive", lambda: self._read(restorable))
            self.result.roles = missing_roles(self.into, contents.owners)
            self._load(contents, state, None, lambda kept: self._restore(restorable, contents, kept))
        except DbopsError as exc:
            self.result.error = self._clean(str(exc))
            self._settle_mark()
            return self._report()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        try:
            self._step("verify", lambda: self._verify_foreign(contents))
        except DbopsError as exc:
            self.result.error = self._clean(str(exc))
        self._settle_mark()
        return self._report()

    # -- steps ---------------------------------------------------------------------------
    def _check_target(self):
        self.state = inspect_target(self.into)
        why = refusals(self.into, self.state, "(the archive)", None, self.options.overwrite)
        if why:
            raise RestoreRefused("restore refused, nothing was changed: " + "; ".join(why))
        self.result.target_version = short_version(self.state.server_version)
        self._target_major = self.state.server_version_num // 10000
        return self.state

    def _fetch_foreign(self, work: Path) -> Path:
        a = self.archive
        if a.url is not None:
            download = work / "download"
            size = _download(a, download, self._tick)
            found = self._restorable(download, work)
            self.result.steps[-1]["detail"] = f"downloaded {fmt.size(size)} from {a.label}"
            return found
        path = a.path
        if path is None or not path.exists():
            raise UsageError(f"{a.label} does not exist")
        if path.is_dir():
            if not (path / "toc.dat").is_file():
                raise UsageError(f"{a.label} is a folder without toc.dat: not a directory-format pg_dump archive")
            return path
        found = self._restorable(path, work)
        self.result.steps[-1]["detail"] = f"{a.label}, {fmt.size(path.stat().st_size)}"
        return found

    def _restorable(self, file: Path, work: Path) -> Path:
        """A custom-format file as it is; a tar (a Render export, any compression) safely unpacked."""
        from ..render.export import safe_extract  # the export drill's extractor: links, `..`, sizes refused

        try:
            with open(file, "rb") as f:
                if f.read(5) == _PGDMP:
                    return file
        except OSError as exc:
            raise UsageError(f"cannot read {self.archive.label}: {exc.strerror}") from None
        return safe_extract(file, work / "unpacked", self.archive.max_bytes, self.archive.max_files)

    def _read(self, restorable: Path):
        contents = list_archive(restorable)
        if contents.errors:
            raise _Failed(f"{self.archive.label} is not an archive pg_restore can read: {contents.errors[-1][:300]}")
        try:  # the target's own major's pg_restore must read it (and be installed here)
            restore_major(self._target_major, major_version(contents.dumped_by))
        except (VersionError, PgBinariesError) as exc:
            raise _Failed(f"`{self.into.name}` runs PostgreSQL {short_version(self.state.server_version)}: "
                          f"{exc}") from None
        self._check(C.Check("archive: table of contents", True,
                            f"{contents.format or '?'} format, {contents.entries} entries, data of "
                            f"{fmt.plural(contents.table_data, 'table')}; dumped from PostgreSQL "
                            f"{contents.dumped_from or '?'} by pg_dump {contents.dumped_by or '?'}"))
        self.progress(Progress("read archive", 0.5, "full read of every byte"))
        ok, reason = full_read(restorable)
        if not ok:
            raise _Failed(f"a full read of {self.archive.label} failed: {reason}")
        self._check(C.Check("archive: full read", True, reason))
        return contents

    def _restore(self, restorable: Path, contents, kept: tuple[str, ...]) -> str:
        fmt_name = "directory" if contents.format.upper() == "DIRECTORY" else "custom"
        try:
            outcome = run_pg_restore(restorable, self.into.dsn, fmt_name, self.options.jobs, contents.table_data,
                                     self.progress, self.cancel, exclude_schemas=("dbops",),
                                     major=self._target_major, leave_out=kept)
        except Cancelled:
            raise _Failed("cancelled while pg_restore ran: the target holds a partial restore") from None
        self.result.restore_errors = [self._clean(e) for e in outcome.errors]
        self._check(C.Check("restore without errors", outcome.ok, "pg_restore reported no errors" if outcome.ok else
                            f"{fmt.plural(outcome.error_count, 'error')}: {C.listed(self.result.restore_errors)}"))
        return f"{outcome.tables_loaded} tables loaded with {outcome.jobs} jobs"

    def _verify_foreign(self, contents) -> str:
        def as_the_archive_says(conn: psycopg.Connection) -> None:
            self.progress(Progress("verify", 0.1, "the archive's tables, constraints and indexes"))
            restored = C.capture_restored(conn, "counts")["tables"]
            self.rows = sum(int(t.get("rows", 0)) for t in restored)
            self._check(_tables_check(contents.table_data_lines, restored))
            self._check(C.constraints_valid_check(conn))
            self._check(C.indexes_valid_check(conn))
            for query in self.smoke:
                self._check(C.smoke_query_check(conn, query, self.smoke_timeout_s))

        return self._verify_with(as_the_archive_says)

    def _tick(self, done: int, total: int | None) -> None:
        self.progress(Progress("fetch archive", done / total if total else None,
                               f"{fmt.size(done)}" + (f" of {fmt.size(total)}" if total else "") + " downloaded"))

    # -- the report ----------------------------------------------------------------------
    def _report(self) -> Report:
        r: RestoreResult = self.result
        report = r.to_report()
        label = self.archive.label
        report.title = f"Restore into {r.into} from {label} (not from the catalog)"
        total = sum(s["seconds"] for s in r.steps)
        failed = [c for c in r.checks if not c["ok"]]
        if r.ok:
            report.summary = (f"Restored {label} into `{r.into}` in {fmt.duration(total)}: {len(r.checks)} checks "
                              f"passed, {getattr(self, 'rows', 0):,} rows. It is {NOT_FROM_CATALOG}: checked are "
                              "its table of contents, a full read, and the restored database itself.")
        elif not r.error:
            report.summary = (f"Restore of {label} into `{r.into}` FAILED its checks: {len(failed)} of "
                              f"{len(r.checks)} failed ({'; '.join(c['name'] for c in failed[:3])}). Do not point "
                              "the application at it.")
        else:
            report.summary = f"Restore of {label} into `{r.into}` FAILED: {r.error}"
        report.sections.insert(0, Section("Not from the catalog", text=(
            f"{label} is {NOT_FROM_CATALOG}. What could be proven: pg_restore reads all of it, every table it "
            "holds data for is in the restored database, and that database is sound (constraints, indexes, "
            "pg_amcheck, the smoke queries). Take a backup of the target once it is in use.")))
        report.outcome = Outcome.OK if r.ok else Outcome.FAILED
        report.data |= {"from_catalog": False, "archive": label, "rows": getattr(self, "rows", None)}
        return report


def _tables_check(table_data_lines: list[str], restored: list[dict]) -> C.Check:
    """Every table the archive holds data for is in the restored database (names matched on the
    table-of-contents line as pg_restore prints it: `TABLE DATA schema name owner`)."""
    entries = [toc_entry(line) for line in table_data_lines]
    have = [f"TABLE DATA {t['schema']} {t['name']} " for t in restored]
    missing = [e.split(" ", 2)[2].rsplit(" ", 1)[0] for e in entries if not any((e + " ").startswith(h) for h in have)]
    name = f"the archive's {fmt.plural(len(entries), 'table')} restored"
    if missing:
        return C.Check(name, False, f"missing after the restore: {C.listed(missing)}")
    rows = sum(int(t.get("rows", 0)) for t in restored)
    return C.Check(name, True, f"every one is there, {rows:,} rows in all (no manifest to compare the counts with)")


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
