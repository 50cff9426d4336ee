"""Large tables read mostly by sequential scans: a hint that an index is missing.

Bad: "Notes" with 100,000 rows, 5,000 sequential scans and 10 index scans.
Good: a small lookup table scanned sequentially (below seq_scan_min_rows), or a
large one read mostly through indexes. Counters run from the last statistics reset.
"""
from __future__ import annotations

from ... import fmt
from ..model import IndexFinding, TableInfo

HEADERS = ["Table", "Rows", "Size", "Seq scans", "Index scans", "Seq share", "Rows read by seq scans"]


def check_seq_scans(tables: list[TableInfo], min_rows: int, min_count: int, min_share: float) -> list[IndexFinding]:
    findings = []
    for t in sorted(tables, key=lambda t: t.seq_tup_read, reverse=True):
        scans = t.seq_scan + t.idx_scan
        if t.live_rows < min_rows or t.seq_scan < min_count or scans == 0:
            continue
        share = t.seq_scan / scans
        if share < min_share:
            continue
        findings.append(IndexFinding(
            check="seq_scan", schema=t.schema, names=(t.name,),
            key=f"seq_scan:{t.schema}.{t.name}",
            summary=f"{t.name} ({t.live_rows:,} rows) is read by sequential scans {share:.0%} of the time",
            row=[t.name, f"{t.live_rows:,}", fmt.size(t.size_bytes), f"{t.seq_scan:,}", f"{t.idx_scan:,}",
                 f"{share:.0%}", f"{t.seq_tup_read:,}"],
        ))
    return findings
