"""Unused indexes: no scans within the window, counted from the daily snapshots.

Bad: an index every write maintains and no read has used for 30 days.
Left out, because dropping them is not a free choice or cannot be judged:
indexes behind a primary key, unique or exclusion constraint (and any unique
index: it enforces something), partition children (judged through the parent),
the parent index of a partitioned table (no scans of its own), invalid ones
(the invalid check has them), indexes younger than the window, indexes whose
history does not reach back to the window's start, and indexes an expected
index (dbops.toml) relies on: one of those with no scans is "expected but unused",
never a DROP suggestion.
The DROP statement is a suggestion: the bot never drops an index itself.
"""
from __future__ import annotations

from typing import Callable

from ... import fmt
from ..model import IndexFinding, IndexInfo, Usage

HEADERS = ["Index", "Table", "Size", "Scans in window"]
EXPECTED = "expected index (dbops.toml)"
# Why an index was not judged, as a noun for "N ..." ("9 primary keys"): singular -> plural.
NOT_JUDGED = {"primary key": "primary keys", "exclusion constraint": "exclusion constraints",
              "unique index": "unique indexes", "partition child": "partition children",
              "partitioned parent": "partitioned parents", "invalid index": "invalid indexes",
              EXPECTED: "expected indexes (dbops.toml)"}


def not_judged_text(skipped: dict[str, int]) -> str:
    """"9 primary keys, 5 unique indexes, 2 indexes younger than 30 d": the reasons, counted."""
    return ", ".join(fmt.plural(n, why, NOT_JUDGED.get(why, why.replace("index ", "indexes ", 1)))
                     for why, n in sorted(skipped.items()))


def excluded_reason(index: IndexInfo) -> str | None:
    if index.is_primary or index.constraint_type == "p":
        return "primary key"
    if index.constraint_type == "x":
        return "exclusion constraint"
    if index.constraint_type == "u" or index.is_unique:
        return "unique index"
    if index.is_partition_child:
        return "partition child"
    if index.is_partitioned:
        return "partitioned parent"
    if not index.is_valid or index.being_built:
        return "invalid index"
    return None


def check_unused(indexes: list[IndexInfo], usage_of: Callable[[IndexInfo], Usage],
                 is_young: Callable[[IndexInfo], bool], relied_on: set[int], window_days: int
                 ) -> tuple[list[IndexFinding], dict[str, int], list[IndexInfo]]:
    """Findings, how many indexes were not judged for each reason (for the report's footnote), and
    the expected indexes no scan used in the window ("expected but unused": never a DROP)."""
    findings: list[IndexFinding] = []
    skipped: dict[str, int] = {}
    expected_unused: list[IndexInfo] = []

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for index in indexes:
        reason = excluded_reason(index)
        if reason:
            skip(reason)
            continue
        if index.oid in relied_on:
            skip(EXPECTED)
            if not is_young(index) and usage_of(index).complete and usage_of(index).scans == 0:
                expected_unused.append(index)
            continue
        if is_young(index):
            skip(f"index younger than {window_days} d (or not yet in a snapshot)")
            continue
        usage = usage_of(index)
        if usage.scans is None or not usage.complete:
            skip("index with history shorter than the window")
            continue
        if usage.scans > 0:
            continue
        note = " (counted across a statistics reset)" if usage.since_reset else ""
        size = fmt.size(index.size_bytes)
        findings.append(IndexFinding(
            check="unused", schema=index.schema, names=(index.name, index.table),
            key=f"unused:{index.schema}.{index.name}",
            summary=f"{index.name} on {index.table}: no scans in {window_days} d{note}, {size}",
            row=[index.name, index.table, size, f"0{note}"],
            fix=index.drop_sql,
        ))
    return findings, skipped, expected_unused
