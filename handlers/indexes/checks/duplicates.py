"""Duplicate and redundant indexes on the same table.

Bad (exact duplicate): ("UserId") twice, same method, predicate, operator classes.
Bad (redundant prefix): ("UserId") beside ("UserId", "CreatedAt"), both btree, same
predicate: the wider index answers every query the narrower one does.
Good: ("UserId") beside ("CreatedAt", "UserId"): not a leading prefix.
Good: a UNIQUE ("Email") beside ("Email", "Id"): the narrower one enforces uniqueness.
Only btree counts for prefixes: other methods do not serve a leading prefix alike.
Never suggested for dropping: an index an expected index (dbops.toml) relies on; of two exact
duplicates, the other one is.
"""
from __future__ import annotations

from ... import fmt
from ..model import IndexFinding, IndexInfo

HEADERS = ["Index", "Table", "Covered by", "Kind", "Size"]


def _comparable(a: IndexInfo, b: IndexInfo) -> bool:
    return a.method == b.method and a.predicate == b.predicate


def _same_keys(a: IndexInfo, b: IndexInfo, n: int) -> bool:
    return a.key_defs[:n] == b.key_defs[:n] and a.opclasses[:n] == b.opclasses[:n]


def _keep_order(i: IndexInfo, relied_on: frozenset[int] | set[int] = frozenset()) -> tuple:
    # Of two exact duplicates keep the one a constraint needs, then an expected one, the unique one, the older.
    return (not i.backs_constraint, i.oid not in relied_on, not i.is_unique, i.oid)


def check_duplicates(indexes: list[IndexInfo], relied_on: set[int] | None = None
                     ) -> tuple[list[IndexFinding], list[str]]:
    """Findings, and what an expected index keeps ("IX_A on T is a leading prefix of IX_B"): said, never a DROP."""
    relied_on = relied_on or set()
    kept: list[str] = []
    by_table: dict[tuple[str, str], list[IndexInfo]] = {}
    for index in indexes:
        # Invalid ones belong to the invalid check; partition children repeat their parent's finding.
        if index.is_valid and not index.being_built and not index.is_partition_child:
            by_table.setdefault((index.schema, index.table), []).append(index)
    findings: list[IndexFinding] = []
    for group in by_table.values():
        if len(group) < 2:
            continue
        flagged: set[int] = set()
        for a in group:
            if a.backs_constraint:
                continue  # dropping it means dropping the constraint: not a suggestion to make lightly
            for b in group:
                if a is b or a.oid in flagged or not _comparable(a, b):
                    continue
                cover = _covered_by(a, b, relied_on)
                if cover is None:
                    continue
                if a.oid in relied_on:
                    kept.append(f"{a.name} on {a.table} is {cover} of {b.name}")
                    break
                flagged.add(a.oid)
                findings.append(IndexFinding(
                    check="duplicate", schema=a.schema, names=(a.name, a.table, b.name),
                    key=f"duplicate:{a.schema}.{a.name}",
                    summary=f"{a.name} on {a.table} is {cover} of {b.name}",
                    row=[a.name, a.table, b.name, cover, fmt.size(a.size_bytes)],
                    fix=a.drop_sql,
                ))
                break
    return findings, kept


def _covered_by(a: IndexInfo, b: IndexInfo, relied_on: set[int]) -> str | None:
    """How b makes a (no constraint's index) unnecessary ("an exact duplicate" / "a leading prefix"), or None."""
    if a.key_count == b.key_count and _same_keys(a, b, a.key_count) and a.include_defs == b.include_defs:
        if a.is_unique and not b.is_unique:
            return None  # b is the one to drop; it is reported when the loop reaches b
        if _keep_order(a, relied_on) < _keep_order(b, relied_on):
            return None  # a is the one to keep
        return "an exact duplicate"
    if a.is_unique or a.method != "btree" or a.key_count >= b.key_count:
        return None
    if not _same_keys(a, b, a.key_count):
        return None
    # a's INCLUDE columns must be in b too, or a still allows index-only scans b does not.
    if not set(a.include_defs) <= set(b.column_defs):
        return None
    return "a leading prefix"
