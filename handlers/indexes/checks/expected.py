"""The expected indexes (dbops.toml, [[indexes.expected]]): is each one there, unique where it must be, valid, used?

Good: `CREATE UNIQUE INDEX "IX_Users_Email" ON "Users" ("Email")` for an expected unique ("Email").
Also good: expected ("UserId") with only ("UserId", "CreatedAt") present: a btree serves its
leading columns, so the wider index satisfies it "as a prefix".
Bad: expected unique ("Email") with only a plain index on it: uniqueness is not enforced.
Bad: the only match is invalid (a failed CREATE INDEX CONCURRENTLY): it is never used for reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import IndexInfo, Usage, qualified, quote_ident
from ..settings import ExpectedIndex

PRESENT = "present"
PRESENT_AS_PREFIX = "present as prefix"
NOT_UNIQUE = "not unique"
INVALID = "invalid"
MISSING = "missing"

HEADERS = ["Table", "Columns", "Unique", "Status", "Satisfied by", "Used"]


@dataclass
class ExpectedResult:
    expected: ExpectedIndex
    status: str
    index: IndexInfo | None = None  # the index that satisfies it (or the invalid / non-unique one)
    usage: Usage | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (PRESENT, PRESENT_AS_PREFIX)

    @property
    def fix(self) -> str:
        if self.ok:
            return ""
        e = self.expected
        if self.status == INVALID and self.index is not None:
            return f"DROP INDEX CONCURRENTLY {self.index.qualified_name};\n{create_sql(e)}"
        return create_sql(e)

    def to_json(self) -> dict:
        e = self.expected
        return {"key": e.key, "table": e.table, "columns": list(e.columns), "unique": e.unique,
                "status": self.status, "index": self.index.name if self.index else None,
                "as_prefix": self.status == PRESENT_AS_PREFIX,
                "scans_in_window": self.usage.scans if self.usage else None,
                "window_complete": self.usage.complete if self.usage else False,
                "note": self.note or None, "fix": self.fix or None}


def create_sql(e: ExpectedIndex) -> str:
    name = "IX_" + e.table + "_" + "_".join(e.columns)  # EF Core's naming
    cols = ", ".join(quote_ident(c) for c in e.columns)
    unique = "UNIQUE " if e.unique else ""
    return f"CREATE {unique}INDEX CONCURRENTLY {quote_ident(name)} ON {qualified(e.schema, e.table)} ({cols});"


def check_expected(expected: list[ExpectedIndex], indexes: list[IndexInfo], known_tables: set[tuple[str, str]]
                   ) -> list[ExpectedResult]:
    by_table: dict[tuple[str, str], list[IndexInfo]] = {}
    for index in indexes:
        if not index.is_partition_child:
            by_table.setdefault((index.schema, index.table), []).append(index)
    return [_judge(e, by_table.get((e.schema, e.table), []), (e.schema, e.table) in known_tables) for e in expected]


def _usable(index: IndexInfo) -> bool:
    # A partial index answers only queries that imply its predicate: it does not stand in for a full one.
    return index.predicate is None and not index.being_built


def _judge(e: ExpectedIndex, candidates: list[IndexInfo], table_exists: bool) -> ExpectedResult:
    if not table_exists and not candidates:
        return ExpectedResult(e, MISSING, note=f"table {e.table} not found in schema {e.schema}")
    cols = e.columns
    exact = [i for i in candidates if _usable(i) and i.key_names == cols]
    # Only a btree serves a leading prefix of its columns the way a narrower index would.
    wider = [i for i in candidates if _usable(i) and i.method == "btree" and i.key_count > len(cols)
             and i.key_names[: len(cols)] == cols]
    valid_exact = [i for i in exact if i.is_valid]
    invalid_exact = [i for i in exact if not i.is_valid]
    valid_wider = sorted((i for i in wider if i.is_valid), key=lambda i: (i.key_count, i.size_bytes))
    if e.unique:
        unique_exact = [i for i in valid_exact if i.is_unique]
        if unique_exact:
            return ExpectedResult(e, PRESENT, _prefer(unique_exact))
        invalid_unique = [i for i in invalid_exact if i.is_unique]
        if invalid_unique:
            return ExpectedResult(e, INVALID, invalid_unique[0],
                                  note="a unique build usually fails on duplicate values: remove them first")
        plain = valid_exact or valid_wider
        if plain:
            return ExpectedResult(e, NOT_UNIQUE, plain[0],
                                  note="an index exists but does not enforce uniqueness")
    else:
        if valid_exact:
            return ExpectedResult(e, PRESENT, _prefer(valid_exact))
        if valid_wider:
            return ExpectedResult(e, PRESENT_AS_PREFIX, valid_wider[0])
    invalid_any = invalid_exact or [i for i in wider if not i.is_valid]
    if invalid_any:
        return ExpectedResult(e, INVALID, invalid_any[0])
    return ExpectedResult(e, MISSING)


def _prefer(found: list[IndexInfo]) -> IndexInfo:
    return sorted(found, key=lambda i: (not i.backs_constraint, i.name))[0]
