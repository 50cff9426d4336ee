"""Index candidates for a statement: one- and two-column b-trees on one table, equality columns before
range and ORDER BY columns, minus what an existing index already covers as a prefix.

Only the longest candidates are built on the copy: (UserId, CreatedAt) serves `UserId = $1` as well as
(UserId) would, so (UserId) is not built when (UserId, CreatedAt) is; an index that is a prefix of
another is never suggested.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from ..model import IndexInfo
from .statements import EQUALITY, JOIN, ORDER, RANGE, Statement

EQUALITY_COLUMNS = 3  # the most selective equality columns paired at most
# Equality columns whose values each match this share of the rows (a flag, a status of three values):
# an index on them alone reads as much as the table, so it is not built (the statement's reason says so).
UNSELECTIVE = 0.3
NAME_BYTES = 63  # PostgreSQL's identifier limit


@dataclass(frozen=True)
class Candidate:
    table: tuple[str, str]
    columns: tuple[str, ...]

    def covers(self, other: "Candidate") -> bool:
        """`other` is this one or a prefix of it: this index serves whatever `other` would."""
        return self.table == other.table and self.columns[: len(other.columns)] == other.columns

    @property
    def label(self) -> str:
        return f"{self.table[1]}({', '.join(self.columns)})"


def existing_keys(indexes: list[IndexInfo]) -> dict[tuple[str, str], list[tuple[str, ...]]]:
    """Key columns of every valid, plain (no predicate, no expression) b-tree, per table."""
    keys: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for i in indexes:
        if i.method == "btree" and i.is_valid and not i.predicate and not i.has_expressions:
            keys.setdefault((i.schema, i.table), []).append(tuple(n for n in i.key_names if n))
    return keys


def candidates_for(stmt: Statement, existing: dict[tuple[str, str], list[tuple[str, ...]]],
                   rows: dict[tuple[str, str], float], distinct: dict[tuple[str, str, str], float],
                   min_rows: int) -> list[Candidate]:
    found: list[Candidate] = []
    for table in stmt.tables:
        if rows.get(table, 0) < min_rows:
            continue
        uses = [u for u in stmt.uses if u.table == table]

        def columns(kind: str) -> list[str]:
            return list(dict.fromkeys(u.column for u in uses if u.kind == kind))

        # The most selective equality column first: it narrows the most with the first key.
        equal = sorted(columns(EQUALITY), key=lambda c: -distinct.get((*table, c), 0.0))[:EQUALITY_COLUMNS]
        ranges, joins = columns(RANGE), columns(JOIN)
        order = columns(ORDER)[:1] if stmt.limited else []
        # A range or ORDER BY column alone only where nothing is compared with `=`: with an equality the
        # pair (equality, range) serves the statement better, and a generic plan never prefers the range.
        alone = [*equal, *joins] + ([] if equal else [*ranges, *order])
        tuples = [*combinations(equal, 2), *((e, r) for e in equal for r in [*ranges, *order] if r != e),
                  *((c,) for c in alone)]
        for cols in dict.fromkeys(tuples):
            equality_only = set(cols) <= set(equal)
            if equality_only and _matched_share(table, cols, distinct) >= UNSELECTIVE:
                continue
            if not _covered(cols, existing.get(table, []), equality_only):
                found.append(Candidate(table, cols))
    return found


def _matched_share(table: tuple[str, str], cols: tuple[str, ...], distinct: dict) -> float:
    """The share of rows one value of each column matches, taking the columns as independent; 0: unknown."""
    share = 1.0
    for c in cols:
        n = distinct.get((*table, c), 0.0)
        if n <= 0:
            return 0.0
        share /= n
    return share


def _covered(cols: tuple[str, ...], keys: list[tuple[str, ...]], equality_only: bool) -> bool:
    """An existing index starts with these columns (in any order, when all are compared with `=`)."""
    for key in keys:
        lead = key[: len(cols)]
        if lead == cols or (equality_only and set(lead) == set(cols)):
            return True
    return False


def longest(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates that are no other's prefix, in their order."""
    unique = list(dict.fromkeys(candidates))
    return [c for c in unique if not any(o != c and o.covers(c) for o in unique)]


def ef_core_name(table: str, columns: tuple[str, ...], taken: set[str]) -> str:
    """The name EF Core gives an index: IX_<Table>_<Col1>_<Col2>, cut to 63 bytes, unique in `taken`."""
    name = _cut("_".join(["IX", table, *columns]))
    n = 1
    while name in taken:
        suffix = f"_{n}"
        name, n = _cut("_".join(["IX", table, *columns]), len(suffix)) + suffix, n + 1
    return name


def _cut(name: str, room: int = 0) -> str:
    data = name.encode("utf-8")[: NAME_BYTES - room]
    return data.decode("utf-8", "ignore")
