"""What `indexes suggest` found: suggestions with their proof, and the statements no index helps, each
with its reason (the absence of a suggestion is an answer too). Channel-safe: statement texts are
pg_stat_statements' (constants are $n); no value sampled from the copy is kept here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import fmt
from ...report import Outcome, Report, Section, Table
from ..model import qualified, quote_ident

SHORT_TEXT = 120
CONCURRENTLY_FACTOR = 2.0  # CREATE INDEX CONCURRENTLY scans the table twice and waits for older transactions


def short(text: str, limit: int = SHORT_TEXT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class Measured:
    """EXPLAIN (ANALYZE, BUFFERS) of one statement with real values: medians over the samples."""

    median_ms: float
    buffers: int
    samples: int

    def to_json(self) -> dict[str, Any]:
        return {"median_ms": round(self.median_ms, 3), "buffers": self.buffers, "samples": self.samples}


@dataclass
class Served:
    """One statement an index serves, with the proof from the copy."""

    queryid: str
    query: str
    calls: int  # production's counters when suggested: the digest's baseline once the index is applied
    total_ms: float
    calls_per_day: float
    share: float
    mean_ms: float  # production's mean before the index
    cost_before: float
    cost_after: float
    before: Measured | None = None
    after: Measured | None = None
    not_measured: str = ""  # why EXPLAIN ANALYZE did not run

    @property
    def gain(self) -> float:
        return 1 - self.cost_after / self.cost_before if self.cost_before > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"queryid": self.queryid, "query": self.query, "calls_per_day": round(self.calls_per_day, 1),
                "share_of_time": round(self.share, 4), "production_mean_ms": round(self.mean_ms, 3),
                "cost_before": round(self.cost_before, 2), "cost_after": round(self.cost_after, 2),
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None, "not_measured": self.not_measured or None}

    def proof_line(self) -> str:
        if self.before and self.after:
            measured = (f"{_ms(self.before.median_ms)} → {_ms(self.after.median_ms)}, "
                        f"{self.before.buffers:,} → {self.after.buffers:,} buffers "
                        f"(median of {fmt.plural(self.after.samples, 'real value set')})")
        else:
            measured = f"not run: {self.not_measured}"
        return f"{measured}; plan cost {self.cost_before:,.0f} → {self.cost_after:,.0f}"


@dataclass
class Suggestion:
    schema: str
    table: str
    columns: tuple[str, ...]
    name: str
    size_bytes: int
    build_s: float
    production_build_s: float
    writes_per_day: float
    queries: list[Served]
    makes_redundant: list[str] = field(default_factory=list)

    @property
    def statement(self) -> str:
        cols = ", ".join(quote_ident(c) for c in self.columns)
        return (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(self.name)} "
                f"ON {qualified(self.schema, self.table)} ({cols});")

    @property
    def down(self) -> str:
        return f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(self.schema, self.name)};"

    @property
    def main(self) -> Served:
        return max(self.queries, key=lambda q: q.share)

    def request_payload(self, requested_at: str) -> dict[str, Any]:
        """What a migration request made from this suggestion keeps for the digest's follow-up."""
        return {"schema": self.schema, "table": self.table, "name": self.name, "columns": list(self.columns),
                "requested_at": requested_at,
                "queries": [{"queryid": q.queryid, "query": q.query, "calls": q.calls, "total_ms": q.total_ms,
                             "production_mean_ms": q.mean_ms,
                             "predicted_ms": q.after.median_ms if q.after else None} for q in self.queries]}

    def to_json(self) -> dict[str, Any]:
        main = self.main
        return {"schema": self.schema, "table": self.table, "columns": list(self.columns), "name": self.name,
                "statement": self.statement, "down": self.down,
                "queries": [q.to_json() for q in self.queries],
                "before": main.before.to_json() if main.before else None,
                "after": main.after.to_json() if main.after else None,
                "size_bytes": self.size_bytes, "build_s": round(self.build_s, 3),
                "production_build_s": round(self.production_build_s, 3),
                "writes_per_day": round(self.writes_per_day, 1), "makes_redundant": self.makes_redundant}

    def section(self, number: int, prefix: str) -> Section:
        lines = []
        for q in self.queries:
            lines.append(f"Serves: {q.query} ({q.calls_per_day:,.0f} calls/day, {q.share:.0%} of the time)")
            lines.append(f"  on the copy: {q.proof_line()}")
        lines.append(f"Size on the copy: {fmt.size(self.size_bytes)}; built there in {fmt.duration(self.build_s)}; "
                     f"CREATE INDEX CONCURRENTLY on production: expected {fmt.duration(self.production_build_s)}")
        lines.append(f"Writes on {self.table}: {self.writes_per_day:,.0f} rows a day, each also updates this index")
        if self.makes_redundant:
            lines.append(f"Makes {', '.join(self.makes_redundant)} redundant (a prefix of it)")
        lines.append(f"UP:   {self.statement}")
        lines.append(f"DOWN: {self.down}")
        lines.append(f"File it as a migration request (rehearsed, approved by reaction): "
                     f"`{prefix} indexes suggest --request {number}`")
        return Section(f"{number}. {self.name} on {self.table} ({', '.join(self.columns)})", text="\n".join(lines),
                       problem=True)


@dataclass
class Unhelped:
    queryid: str
    query: str
    calls_per_day: float
    share: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"queryid": self.queryid, "query": self.query, "calls_per_day": round(self.calls_per_day, 1),
                "share_of_time": round(self.share, 4), "reason": self.reason}


@dataclass
class Advice:
    target: str
    database: str
    source_version: str  # the target's server_version, e.g. "16.4"
    copy_version: str
    backup_id: str
    backup_created_at: str | None
    min_gain: float
    suggestions: list[Suggestion] = field(default_factory=list)
    unhelped: list[Unhelped] = field(default_factory=list)
    statements_read: int = 0
    skipped: int = 0  # utility statements, INSERTs, catalog reads
    candidates_built: int = 0
    pgss_message: str = ""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        where = (f"proven on a copy of backup {self.backup_id} (PostgreSQL {self.copy_version}; "
                 f"`{self.target}` runs {self.source_version})")
        if self.pgss_message:
            return f"no statements to look at: {self.pgss_message}"
        if not self.suggestions:
            return (f"no index suggested: none cuts the cost of the {fmt.plural(len(self.unhelped), 'statement')} "
                    f"looked at by {self.min_gain:.0%}, {where}")
        return f"{fmt.plural(len(self.suggestions), 'index', 'indexes')} suggested, {where}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "database": self.database, "source_version": self.source_version,
                "copy_version": self.copy_version, "backup_id": self.backup_id,
                "backup_created_at": self.backup_created_at, "min_gain": self.min_gain,
                "suggestions": [s.to_json() for s in self.suggestions],
                "not_suggested": [u.to_json() for u in self.unhelped],
                "statements_read": self.statements_read, "statements_skipped": self.skipped,
                "candidates_built": self.candidates_built, "pg_stat_statements": self.pgss_message or "ok",
                "notes": self.notes, "seconds": {k: round(v, 3) for k, v in self.timings.items()}}

    def to_report(self, prefix: str = "dbops") -> Report:
        sections = [s.section(n, prefix) for n, s in enumerate(self.suggestions, 1)]
        if self.unhelped:
            sections.append(Section(f"Statements no index helps ({len(self.unhelped)})", table=Table(
                ["Calls/day", "Time", "Why no index", "Statement"],
                [[f"{u.calls_per_day:,.0f}", f"{u.share:.0%}", u.reason, u.query] for u in self.unhelped])))
        if self.notes:
            sections.append(Section("Notes", text="\n".join(self.notes)))
        facts = [("Source", f"`{self.target}`, PostgreSQL {self.source_version}"),
                 ("Copy", f"PostgreSQL {self.copy_version}, backup {self.backup_id}"
                          + (f" of {fmt.when_written(self.backup_created_at)}" if self.backup_created_at else "")),
                 ("Statements", f"{self.statements_read} read from pg_stat_statements (top by total and by mean "
                                f"time), {self.skipped} not for an index"),
                 ("Candidates built on the copy", str(self.candidates_built)),
                 ("Took", fmt.duration(self.timings.get("total_s")))]
        return Report(title=f"Index suggestions: {self.target} ({self.database})", summary=self.summary,
                      outcome=Outcome.FAILED if self.suggestions else Outcome.OK, sections=sections, facts=facts,
                      data=self.to_json())


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:,.1f} ms"
