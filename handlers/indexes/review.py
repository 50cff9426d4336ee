"""The index review: `/db indexes`. Read-only on the target; never drops, builds or resets anything."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from .. import fmt
from ..gcpause import gc_paused
from ..report import Outcome, Progress, ProgressFn, Report, Section, Table, no_progress
from . import history, system_catalog
from .checks import duplicates, expected, foreign_keys, invalid, seq_scans, slow_queries, unused
from .model import IndexFinding, IndexInfo, Usage
from .settings import IndexSettings

_LABELS = {  # (one, many) for the summary line
    "unused": ("unused index", "unused indexes"),
    "invalid": ("invalid index", "invalid indexes"),
    "duplicate": ("duplicate/redundant index", "duplicate/redundant indexes"),
    "foreign_key": ("foreign key without index", "foreign keys without index"),
    "seq_scan": ("large table read by seq scans", "large tables read by seq scans"),
}

NO_EXPECTED = ("No expected indexes are configured, so none was checked: list the indexes the application "
               "needs in dbops.toml (DBOPS_CONFIG, default ./dbops.toml), one [[indexes.expected]] entry each "
               "with table, columns and unique = true where required; dbops.example.toml shows one.")

EXPECTED_COVERED = ("Covered by another index but expected in dbops.toml, so no DROP is suggested (if the wider "
                    "index is the one the application needs, change its [[indexes.expected]] entry): ")

_SECTIONS = [  # (check, title, headers)
    ("invalid", "Invalid indexes", invalid.HEADERS),
    ("unused", "Unused indexes", unused.HEADERS),
    ("duplicate", "Duplicate and redundant indexes", duplicates.HEADERS),
    ("foreign_key", "Foreign keys without an index", foreign_keys.HEADERS),
    ("seq_scan", "Large tables read mostly by sequential scans", seq_scans.HEADERS),
]


@dataclass
class IndexReview:
    target: str
    database: str
    reviewed_at: datetime
    settings: IndexSettings
    expected: list[expected.ExpectedResult]
    findings: list[IndexFinding]  # problems, ignored ones included (marked)
    slow: slow_queries.SlowQueries
    history_days: int
    history_complete: bool
    resets: list[datetime]
    stats_reset: datetime | None
    unused_skipped: dict[str, int]
    expected_unused: list[IndexInfo]  # expected (dbops.toml) and not scanned in the whole window
    expected_covered: list[str]  # expected (dbops.toml) and covered by another index: said, never a DROP
    index_count: int
    table_count: int
    query_count: int  # catalog queries on the target: constant, whatever the number of tables
    state_queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    # -- what the digest and the bot read --------------------------------------
    @property
    def open_findings(self) -> list[IndexFinding]:
        return [f for f in self.findings if f.ignored_because is None]

    @property
    def ignored(self) -> list[IndexFinding]:
        return [f for f in self.findings if f.ignored_because is not None]

    @property
    def expected_problems(self) -> list[expected.ExpectedResult]:
        return [r for r in self.expected if not r.ok and not self._expected_ignored(r)]

    def _expected_ignored(self, r: expected.ExpectedResult) -> str | None:
        names = (r.expected.table, *((r.index.name,) if r.index else ()))
        for entry in self.settings.ignore:
            if entry.matches("expected", r.expected.schema, names):
                return entry.reason
        return None

    @property
    def problems(self) -> int:
        return len(self.expected_problems) + len(self.open_findings)

    def problem_keys(self) -> dict[str, list[str]]:
        """Stable keys per category, for the digest's comparison with the day before."""
        keys: dict[str, list[str]] = {
            "expected": sorted(f"{r.expected.key}: {r.status}" for r in self.expected_problems)}
        for f in self.open_findings:
            keys.setdefault(f.check, []).append(f.key)
        return {k: sorted(v) for k, v in keys.items()}

    def summary_line(self) -> str:
        if not self.problems:
            return "all good"
        counts: dict[tuple[str, str], int] = {}
        if self.expected_problems:
            counts[("expected index not satisfied", "expected indexes not satisfied")] = len(self.expected_problems)
        for f in self.open_findings:
            label = _LABELS[f.check]
            counts[label] = counts.get(label, 0) + 1
        parts = ", ".join(f"{n} {label[0] if n == 1 else label[1]}" for label, n in counts.items())
        return f"{fmt.plural(self.problems, 'problem')}: {parts}"

    # -- output ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "database": self.database, "reviewed_at": self.reviewed_at.isoformat(),
            "problems": self.problems, "window_days": self.settings.window_days,
            "history": {"snapshot_days": self.history_days, "covers_window": self.history_complete,
                        "stats_reset": self.stats_reset.isoformat() if self.stats_reset else None,
                        "resets_in_window": [r.isoformat() for r in self.resets]},
            "expected": [r.to_json() for r in self.expected],
            "findings": [f.to_json() for f in self.open_findings],
            "ignored": [f.to_json() for f in self.ignored] + [
                {"check": "expected", "key": r.expected.key, "ignored_because": self._expected_ignored(r)}
                for r in self.expected if not r.ok and self._expected_ignored(r)],
            "unused_not_judged": self.unused_skipped,
            "expected_unused": [f"{i.schema}.{i.name}" for i in self.expected_unused],
            "expected_covered": self.expected_covered,
            "slow_queries": self.slow.to_json(),
            "indexes": self.index_count, "tables": self.table_count,
            "catalog_queries": self.query_count, "state_queries": self.state_queries,
            "seconds": round(self.seconds, 3), "notes": self.notes,
        }

    def to_report(self) -> Report:
        window = self.settings.window_days
        sections = []
        wrong = [r for r in self.expected if not r.ok]
        if wrong:
            sections.append(Section(f"Expected indexes missing or unusable ({len(wrong)}, dbops.toml)", table=Table(
                expected.HEADERS, [
                    [r.expected.table, ", ".join(r.expected.columns), "yes" if r.expected.unique else "",
                     r.status + (f" ({r.note})" if r.note else "")
                     + (" [ignored]" if self._expected_ignored(r) else ""),
                     r.index.name if r.index else "-", r.usage.describe(window) if r.usage else "-"]
                    for r in wrong]), problem=bool(self.expected_problems)))
        in_place = [r for r in self.expected if r.ok]
        if in_place:  # one short line each: as a table the longest names would not fit 100 columns
            sections.append(Section(f"Expected indexes in place ({len(in_place)}, dbops.toml)", text="\n".join(
                f"{r.index.name if r.index else '-'} on {r.expected.table}({', '.join(r.expected.columns)})"
                + (", unique" if r.expected.unique else "")
                + (", as its prefix" if r.status == expected.PRESENT_AS_PREFIX else "")
                + (f": {r.usage.short(window)}" if r.usage else "")
                for r in in_place)))
        if not self.expected:
            sections.append(Section("Expected indexes", text=NO_EXPECTED))
        for check, title, headers in _SECTIONS:
            found = [f for f in self.open_findings if f.check == check]
            if check == "unused":
                sections.append(self._unused_section(found, headers))
                continue
            kept = self.expected_covered if check == "duplicate" else []
            if kept:  # an expected index is never suggested for dropping; that another covers it is said
                sections.append(Section(f"{title} ({len(found)})", text=EXPECTED_COVERED + "; ".join(kept) + ".",
                                        table=Table(headers, [f.row for f in found]) if found else None,
                                        problem=bool(found)))
            elif found:
                sections.append(Section(f"{title} ({len(found)})", table=Table(headers, [f.row for f in found]),
                                        problem=True))
        fixes = self._fixes_section()
        if fixes is not None:
            sections.append(fixes)
        sections.append(self._slow_section())
        if self.notes:
            sections.append(Section("Notes", text="\n".join(self.notes)))
        # The ignore list comes last, each entry with its reason.
        if self.ignored or any(not r.ok and self._expected_ignored(r) for r in self.expected):
            rows = [[f.check, f.summary, f.ignored_because] for f in self.ignored]
            rows += [["expected", r.expected.key, self._expected_ignored(r)]
                     for r in self.expected if not r.ok and self._expected_ignored(r)]
            sections.append(Section("Ignored (dbops.toml indexes.ignore)",
                                    table=Table(["Check", "IndexFinding", "Reason"], rows)))
        return Report(
            title=f"Index review: {self.target} ({self.database})",
            summary=self.summary_line(),
            outcome=Outcome.FAILED if self.problems else Outcome.OK,
            sections=sections,
            facts=self._facts(),
            data=self.to_json(),
        )

    def _fixes_section(self) -> Section | None:
        """Every suggested statement, one a line in one block (copy it whole), each under a comment
        saying what it fixes; SQL is never squeezed into a table cell, where it would wrap."""
        fixes = [(f"expected {r.expected.table}({', '.join(r.expected.columns)}): {r.status}", r.fix)
                 for r in self.expected_problems]
        fixes += [(f.summary, f.fix) for f in self.open_findings if f.fix]
        if not fixes:
            return None
        script = "\n\n".join(f"-- {' '.join(why.split())}\n{fix}" for why, fix in fixes)
        return Section("Suggested SQL (not run: the bot never creates or drops an index)", text=f"```{script}```")

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("Problems", str(self.problems))]
        if self.expected:
            satisfied = sum(1 for r in self.expected if r.ok)
            facts.append(("Expected indexes (dbops.toml)", f"{satisfied} of {len(self.expected)} in place"))
        else:
            facts.append(("Expected indexes", "none configured"))
        facts += [("Reviewed", f"{fmt.plural(self.index_count, 'index', 'indexes')} on "
                               f"{fmt.plural(self.table_count, 'table')}"),
                  ("Usage window", f"{fmt.plural(self.settings.window_days, 'day')}"
                                   + ("" if self.history_complete else f" ({self.history_days} d of history so far)"))]
        ignored = len(self.ignored) + sum(1 for r in self.expected if not r.ok and self._expected_ignored(r))
        if ignored:
            facts.append(("Ignored (dbops.toml)", str(ignored)))
        return facts

    def _unused_section(self, found: list[IndexFinding], headers: list[str]) -> Section:
        window = self.settings.window_days
        lines = []
        if not self.history_complete:
            lines.append(f"Snapshot history covers {fmt.plural(self.history_days, 'day')} of the {window}-day window: "
                         "indexes are judged unused only once a snapshot from before the window exists.")
        for reset in self.resets:
            lines.append(f"Statistics were reset at {reset:%Y-%m-%d %H:%M} UTC within the window: scans are "
                         "summed across it from the daily snapshots (scans between the last snapshot "
                         "before it and the reset are not counted).")
        if self.expected_unused:
            lines.append(f"Expected but unused ({len(self.expected_unused)}: dbops.toml expects them, so no DROP "
                         f"is suggested; is the code that needs them still deployed?): "
                         + ", ".join(f"{i.name} on {i.table}" for i in self.expected_unused) + ".")
        if self.unused_skipped:
            lines.append(f"Not judged: {unused.not_judged_text(self.unused_skipped)}.")
        return Section(f"Unused indexes ({len(found)}, no scans in {window} d)", text="\n".join(lines),
                       table=Table(headers, [f.row for f in found]) if found else None, problem=bool(found))

    def _slow_section(self) -> Section:
        s = self.slow
        title = f"Slow queries (top {self.settings.slow_query_count} by mean time, pg_stat_statements)"
        if not s.available:
            return Section(title, text=s.message)
        if not s.rows:
            return Section(title, text="No statements recorded for this database yet.")
        return Section(title, table=Table(slow_queries.HEADERS, slow_queries.table_rows(s)))


def review(conn: psycopg.Connection, settings: IndexSettings, state_dsn: str | None, target_name: str,
           now: datetime | None = None, progress: ProgressFn = no_progress) -> IndexReview:
    """Run every check on the target; `state_dsn` gives the snapshot history (None: no unused check)."""
    with gc_paused():  # some ten objects per index, kept to the end: tens of thousands on a large schema
        return _review(conn, settings, state_dsn, target_name, history.utc_now(now), progress)


def _review(conn: psycopg.Connection, settings: IndexSettings, state_dsn: str | None, target_name: str,
            now: datetime, progress: ProgressFn) -> IndexReview:
    started = time.monotonic()
    cat = system_catalog.SystemCatalog(conn, settings.exclude_schemas)
    with ThreadPoolExecutor(max_workers=1) as background:
        with system_catalog.catalog_errors(target_name, "during the index review"):
            progress(Progress("reading the catalog", 0.0))
            env = system_catalog.environment(cat)
            # The state store (another server) is read while the target answers: on 30,000 indexes
            # each takes a noticeable part of a second.
            stored = background.submit(history.window_history, state_dsn, target_name, now, settings.window_days,
                                       env.stats_reset) if state_dsn else None
            all_indexes = system_catalog.indexes(cat)
            fks = system_catalog.foreign_keys(cat)
            table_stats = system_catalog.tables(cat, settings.seq_scan_min_rows, settings.seq_scan_min_count)
            progress(Progress("reading pg_stat_statements", 0.5))
            slow = slow_queries.slow_queries(cat, env.pgss_schema, env.pgss_version, settings.slow_query_count)
        progress(Progress("reading snapshot history", 0.7))
        notes: list[str] = []
        if stored is not None:
            hist = stored.result()
        else:
            hist = history.WindowHistory(window_start=now, baseline_day=None, baseline_taken_at=None, days=0)
            notes.append("No state store: unused indexes need daily snapshots and were not judged.")

    def usage_of(index: IndexInfo) -> Usage:
        return hist.usage(index, env.stats_reset, now)

    progress(Progress("checking", 0.8))
    known_tables = {(i.schema, i.table) for i in all_indexes} | {(t.schema, t.name) for t in table_stats}
    expected_results = expected.check_expected(settings.expected, all_indexes, known_tables)
    for r in expected_results:
        if r.index is not None and r.ok:
            r.usage = usage_of(r.index)
    relied_on = {r.index.oid for r in expected_results if r.index is not None and r.ok}
    unused_found, skipped, expected_unused = unused.check_unused(all_indexes, usage_of, hist.is_young, relied_on,
                                                                 settings.window_days)
    duplicate_found, expected_covered = duplicates.check_duplicates(all_indexes, relied_on)
    findings = (invalid.check_invalid(all_indexes) + unused_found + duplicate_found
                + foreign_keys.check_foreign_keys(fks, all_indexes)
                + seq_scans.check_seq_scans(table_stats, settings.seq_scan_min_rows, settings.seq_scan_min_count,
                                            settings.seq_scan_min_share))
    for f in findings:
        for entry in settings.ignore:
            if entry.matches(f.check, f.schema, f.names):
                f.ignored_because = entry.reason
                break
    if env.stats_reset:
        notes.append("Scan counters (sequential-scan table) run from the statistics reset at "
                     f"{env.stats_reset:%Y-%m-%d %H:%M} UTC.")
    progress(Progress("done", 1.0))
    return IndexReview(
        target=target_name, database=env.database, reviewed_at=now, settings=settings,
        expected=expected_results, findings=findings, slow=slow,
        history_days=(max(0, int((now - hist.baseline_taken_at).total_seconds() // 86400))
                      if hist.baseline_taken_at else 0),
        history_complete=hist.complete, resets=hist.resets, stats_reset=env.stats_reset,
        unused_skipped=skipped, expected_unused=expected_unused, expected_covered=expected_covered,
        index_count=len(all_indexes),
        table_count=len(table_stats),
        query_count=cat.queries, state_queries=hist.state_queries, seconds=time.monotonic() - started, notes=notes,
    )
