"""Reading EXPLAIN's JSON: the cost, the indexes a plan uses, the rows it expects from a table, and
what EXPLAIN ANALYZE measured (time, shared buffers)."""
from __future__ import annotations

from typing import Any, Iterator


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = [plan]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.get("Plans", []))


def total_cost(root: dict[str, Any]) -> float:
    return float(root["Plan"]["Total Cost"])


def used_indexes(root: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in nodes(root["Plan"]) if "Index Name" in n}


def sequential_rows(root: dict[str, Any], table: str) -> float | None:
    """Rows the plan expects a sequential scan of `table` to return (None: not read that way)."""
    rows = [float(n.get("Plan Rows", 0)) for n in nodes(root["Plan"])
            if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") == table]
    return max(rows) if rows else None


def execution_ms(root: dict[str, Any]) -> float:
    return float(root.get("Execution Time", 0.0))


def shared_buffers(root: dict[str, Any]) -> int:
    """Shared buffers hit and read by the statement (the top node counts its children's)."""
    plan = root["Plan"]
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
