"""Plain records the checks work on: one index, one foreign key, one table, one finding."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import fmt


def quote_ident(name: str) -> str:
    """Always quote: EF Core names are case-sensitive ("Users" is not users)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# Not frozen: a review makes one per index (30,000 and more), and a frozen one sets each field by a call.
# The fields are in the order of the catalog query's columns: a row builds one positionally.
@dataclass(slots=True)
class IndexInfo:
    oid: int
    schema: str
    table: str
    name: str
    method: str
    is_unique: bool
    is_primary: bool
    is_valid: bool
    key_count: int
    column_names: tuple[str | None, ...]  # per index column: its name, None for an expression
    column_defs: tuple[str, ...]  # per index column: as pg_get_indexdef prints it (expressions too)
    # pg_index's indclass, indcollation and indoption as text ("3124 1978", "0 0", "0 0"): split into
    # `opclasses` only where two indexes are compared, a few among tens of thousands.
    sort_text: tuple[str, str, str]
    predicate: str | None
    definition: str | None  # pg_get_indexdef: read for an invalid index only (to rebuild it)
    constraint_type: str | None  # 'p', 'u', 'x' when the index backs such a constraint
    constraint_name: str | None
    is_partition_child: bool  # attached to a partitioned index: judged through its parent
    is_partitioned: bool  # the parent index of a partitioned table: has no scans of its own
    being_built: bool  # a CREATE INDEX CONCURRENTLY in progress right now
    size_bytes: int
    idx_scan: int | None  # cumulative counter since the last statistics reset

    @property
    def opclasses(self) -> tuple[tuple[str, str, str], ...]:
        """Per key column: operator class, collation and sort options; two indexes sort alike only if these match."""
        classes, collations, options = self.sort_text
        return tuple(zip(classes.split()[: self.key_count], collations.split(), options.split()))

    @property
    def key_names(self) -> tuple[str | None, ...]:
        return self.column_names[: self.key_count]

    @property
    def key_defs(self) -> tuple[str, ...]:
        return self.column_defs[: self.key_count]

    @property
    def include_defs(self) -> tuple[str, ...]:
        return self.column_defs[self.key_count:]

    @property
    def has_expressions(self) -> bool:
        return any(name is None for name in self.key_names)

    @property
    def backs_constraint(self) -> bool:
        return self.constraint_type is not None or self.is_primary

    @property
    def ident(self) -> tuple[int, str, str]:
        """How snapshots recognise an index from day to day: OID and qualified name."""
        return (self.oid, self.schema, self.name)

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.name} ON {self.table} ({', '.join(self.key_defs)})"

    @property
    def drop_sql(self) -> str:
        return f"DROP INDEX CONCURRENTLY {self.qualified_name};"


@dataclass(frozen=True)
class ForeignKeyInfo:
    schema: str
    table: str
    name: str
    columns: tuple[str, ...]
    referenced_table: str
    table_is_partitioned: bool


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    live_rows: int
    size_bytes: int


@dataclass(slots=True)  # a review makes one per problem: tens of thousands on a large schema
class IndexFinding:
    """One problem: `row` fills its check's table; `names` are what an ignore entry can match."""

    check: str
    schema: str
    names: tuple[str, ...]
    key: str  # stable across days, for the digest's "what changed"
    summary: str
    row: list[Any]
    fix: str = ""
    ignored_because: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "key": self.key, "summary": self.summary, "fix": self.fix or None,
                **({"ignored_because": self.ignored_because} if self.ignored_because else {})}


@dataclass(slots=True)
class Usage:
    """Index scans within the review window, as far as the snapshots can tell."""

    scans: int | None  # None: unknown
    complete: bool  # history reaches back to the window's start
    history_days: float = 0.0
    since_reset: bool = False  # counted across a statistics reset

    def describe(self, window_days: int) -> str:
        if self.scans is None:
            return "unknown (no snapshot history)"
        if self.complete:
            return f"{self.scans} scans in {window_days} d" if self.scans else f"no scans in {window_days} d"
        days = max(0, int(self.history_days))
        return (f"{self.scans} scans in {days} d of history" if self.scans
                else f"no scans in {days} d of history (too short)")

    def short(self, window_days: int) -> str:
        """In a line: "12 scans in 30 d", or "0 scans in 3 d so far" while history is shorter than the window."""
        if self.scans is None:
            return "scans unknown"
        if self.complete:
            return f"{fmt.plural(self.scans, 'scan')} in {window_days} d"
        return f"{fmt.plural(self.scans, 'scan')} in {max(0, int(self.history_days))} d so far"
