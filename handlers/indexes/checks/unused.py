"""Unused indexes: no scans within the window, counted from the daily snapshots.

Bad: an index every write maintains and no read has used for 30 days.
Left out, because dropping them is not a free choice or cannot be judged:
indexes behind a primary key, unique or exclusion constraint (and any unique
index: it enforces something), partition children (judged through the parent),
the parent index of a partitioned table (no scans of its own), invalid ones
(the invalid check has them), indexes younger than the window, indexes whose
history does not reach back to the window's start, and indexes an expected
index (dbops.toml) relies on.
The DROP statement is a suggestion: the bot never drops an index itself.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from ... import fmt
from ..model import IndexFinding, IndexInfo, Usage

HEADERS = ["Index", "Table", "Size", "Scans in window", "Suggestion (not run)"]


def excluded_reason(index: IndexInfo) -> str | None:
    if index.is_primary or index.constraint_type == "p":
        return "primary key"
    if index.constraint_type == "x":
        return "exclusion constraint"
    if index.constraint_type == "u" or index.is_unique:
        return "unique"
    if index.is_partition_child:
        return "partition child"
    if index.is_partitioned:
        return "partitioned parent"
    if not index.is_valid or index.being_built:
        return "invalid"
    return None


def check_unused(indexes: list[IndexInfo], usage_of: Callable[[IndexInfo], Usage],
                 is_young: Callable[[IndexInfo], bool], relied_on: set[int], window_days: int
                 ) -> tuple[list[IndexFinding], dict[str, int]]:
    """Findings, and how many indexes were not judged for each reason (for the report's footnote)."""
    findings: list[IndexFinding] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for index in indexes:
        reason = excluded_reason(index)
        if reason:
            skip(reason)
            continue
        if index.oid in relied_on:
            skip("one of the expected indexes (dbops.toml)")
            continue
        if is_young(index):
            skip(f"younger than {window_days} d (or not yet in a snapshot)")
            continue
        usage = usage_of(index)
        if usage.scans is None or not usage.complete:
            skip("history shorter than the window")
            continue
        if usage.scans > 0:
            continue
        note = " (counted across a statistics reset)" if usage.since_reset else ""
        findings.append(IndexFinding(
            check="unused", schema=index.schema, names=(index.name, index.table),
            key=f"unused:{index.schema}.{index.name}",
            summary=f"{index.name} on {index.table}: no scans in {window_days} d{note}, {fmt.size(index.size_bytes)}",
            row=[index.name, index.table, fmt.size(index.size_bytes), f"0{note}", index.drop_sql],
            fix=index.drop_sql,
        ))
    return findings, skipped


def last_scan_text(value: str | datetime | None) -> str:
    return str(value)[:16] if value else "never (since reset)"
