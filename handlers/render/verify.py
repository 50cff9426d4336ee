"""Verifying a copy of production that has no manifest of its own (a Render recovery instance, a
restored Render export): against production's inventory, captured when the drill starts.

The schema must be identical; row counts differ by design (the copy is of an earlier moment), so
they are shown as differences, never failures. Then the local drill's soundness checks.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import psycopg

from ..drill import checks as C
from ..errors import Cancelled
from ..target import Target

SOURCE_LEVEL = "counts"  # checksums of production would read every row of it; counts are enough here


def capture_source(source: Target) -> dict[str, Any]:
    """Production's row counts and schema inventory now, in one read-only snapshot."""
    with source.connect(autocommit=True) as conn:
        return C.capture_restored(conn, SOURCE_LEVEL)


def row_differences_check(source: dict, copy: dict, against: str = "production now") -> C.Check:
    """Row counts of the copy against `against` (production now, or a backup: a copy is of another
    moment, so differences are shown, never failures)."""
    prod = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in source.get("tables", [])}
    restored = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in copy.get("tables", [])}
    diffs = [f"{name}: {restored[name]:,} in the copy, {prod[name]:,} in {against} "
             f"({restored[name] - prod[name]:+,})" for name in sorted(prod.keys() & restored.keys())
             if prod[name] != restored[name]]
    name = f"row counts of {len(prod)} tables against {against}"
    total = sum(restored.values())
    if not diffs:
        return C.Check(name, True, f"{total:,} rows, every table as in {against}")
    return C.Check(name, True, f"{total:,} rows; differences, expected since the copy is of another moment "
                               f"(not failures): {C.listed(diffs)}")


def amcheck_allowed(conn: psycopg.Connection) -> tuple[bool, str]:
    """Whether pg_amcheck can run here: amcheck installed, or installable by this role."""
    installed, available, superuser, trusted, can_create = conn.execute("""
        SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck'),
               EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'),
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
               coalesce((SELECT bool_or(trusted) FROM pg_available_extension_versions WHERE name = 'amcheck'), false),
               has_database_privilege(current_database(), 'CREATE')""").fetchone()
    if installed or (available and (superuser or (trusted and can_create))):
        return True, ""
    if not available:
        return False, "the server does not offer the amcheck extension"
    return False, "this role may not create the amcheck extension on this server"


def verify_copy(dsn: str, source: dict | None, expected_indexes: Iterable[Any] | None, *, amcheck: bool, jobs: int,
                heapallindexed: bool, record: Callable[[C.Check], Any],
                cancel: threading.Event | None = None, against: str = "production now") -> list[str]:
    """Run every check on the copy at `dsn`, passing each to `record`; returns what was checked, in words.
    `source`: the inventory to compare with (`against` names it); None: the copy's soundness only."""
    done = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=15) as conn:
        copy = C.capture_restored(conn, SOURCE_LEVEL)
        if source is not None:
            for check in C.schema_checks(source, copy):
                record(check)
            done.append(f"the schema inventory against {against}")
            record(row_differences_check(source, copy, against))
            done.append(f"row counts per table against {against} (shown as differences)")
        record(C.constraints_valid_check(conn, C.not_valid_in_source(source) if source is not None else None))
        record(C.indexes_valid_check(conn))
        done.append("constraint and index validity")
        if expected_indexes is not None:
            record(C.expected_indexes_check(conn, expected_indexes, source, copy))
            done.append("the expected indexes")
        if cancel is not None and cancel.is_set():
            raise Cancelled("the drill was cancelled")
        allowed, why = amcheck_allowed(conn) if amcheck else (False, "drill.amcheck is off")
    if allowed:
        record(C.amcheck_check(dsn, jobs, heapallindexed, cancel))
        done.append("pg_amcheck")
    else:
        record(C.Check("pg_amcheck: heap and B-tree indexes", True, f"not run: {why}"))
    return done
