"""Invalid indexes: what a failed `CREATE INDEX CONCURRENTLY` leaves behind.

Bad: `CREATE UNIQUE INDEX CONCURRENTLY "IX_Users_Email" ...` failed on a duplicate:
the index stays, invalid, is never read, yet every write still maintains it.
Fix: drop it (CONCURRENTLY, so writes go on) and build it again, or
`REINDEX INDEX CONCURRENTLY`. A build still running is also invalid until it
finishes: those are left out (pg_stat_progress_create_index lists them).
"""
from __future__ import annotations

from pglast import parse_sql
from pglast.stream import RawStream

from ... import fmt
from ..model import IndexFinding, IndexInfo

HEADERS = ["Index", "Table", "Size", "Note"]


def concurrent_create_sql(definition: str) -> str:
    """pg_get_indexdef's CREATE INDEX, rewritten (through PostgreSQL's parser) to build CONCURRENTLY."""
    stmt = parse_sql(definition)[0].stmt
    stmt.concurrent = True
    return RawStream()(stmt)


def rebuild_sql(index: IndexInfo) -> str:
    """One statement a line: copied as it is, it runs."""
    return f"DROP INDEX CONCURRENTLY {index.qualified_name};\n{concurrent_create_sql(index.definition)};"


def check_invalid(indexes: list[IndexInfo]) -> list[IndexFinding]:
    findings = []
    for index in indexes:
        if index.is_valid or index.being_built:
            continue
        fix = rebuild_sql(index)
        hint = "unique: remove duplicate values first" if index.is_unique else ""
        findings.append(IndexFinding(
            check="invalid", schema=index.schema, names=(index.name, index.table),
            key=f"invalid:{index.schema}.{index.name}",
            summary=f"{index.name} on {index.table} is invalid (a failed concurrent build)"
                    + (f" ({hint})" if hint else ""),
            row=[index.name, index.table, fmt.size(index.size_bytes), hint or "a failed concurrent build"],
            fix=fix + f"\n-- or: REINDEX INDEX CONCURRENTLY {index.qualified_name};",
        ))
    return findings
