"""Foreign keys with no index on the referencing columns.

Bad: "ExternalLogins"."UserId" REFERENCES "Users" with no index starting with "UserId":
every DELETE of a user scans ExternalLogins (ON DELETE CASCADE), and joins from users do too.
Good: an index whose leading columns are the foreign key's columns (in any order).
"""
from __future__ import annotations

from ..model import ForeignKeyInfo, IndexFinding, IndexInfo, qualified, quote_ident

HEADERS = ["Table", "Foreign key", "Columns", "References"]


def _covers(index: IndexInfo, fk: ForeignKeyInfo) -> bool:
    n = len(fk.columns)
    lead = index.key_names[:n]
    return (index.is_valid and index.predicate is None and len(lead) == n and None not in lead
            and set(lead) == set(fk.columns))


def create_sql(fk: ForeignKeyInfo) -> str:
    name = f"IX_{fk.table}_{'_'.join(fk.columns)}"  # EF Core's naming
    cols = ", ".join(quote_ident(c) for c in fk.columns)
    # A partitioned table cannot build CONCURRENTLY from the parent.
    how = "INDEX" if fk.table_is_partitioned else "INDEX CONCURRENTLY"
    return f"CREATE {how} {quote_ident(name)} ON {qualified(fk.schema, fk.table)} ({cols});"


def check_foreign_keys(fks: list[ForeignKeyInfo], indexes: list[IndexInfo]) -> list[IndexFinding]:
    by_table: dict[tuple[str, str], list[IndexInfo]] = {}
    for index in indexes:
        if not index.is_partition_child:
            by_table.setdefault((index.schema, index.table), []).append(index)
    findings = []
    for fk in fks:
        if any(_covers(i, fk) for i in by_table.get((fk.schema, fk.table), [])):
            continue
        cols = ", ".join(fk.columns)
        findings.append(IndexFinding(
            check="foreign_key", schema=fk.schema, names=(fk.name, fk.table),
            key=f"foreign_key:{fk.schema}.{fk.table}.{fk.name}",
            summary=f"{fk.table}({cols}) references {fk.referenced_table} with no index ({fk.name})",
            row=[fk.table, fk.name, cols, fk.referenced_table],
            fix=create_sql(fk),
        ))
    return findings
