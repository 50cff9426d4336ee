"""Step 3: is the restored database the backed-up one, and sound? Each check one named function.

The manifest comparison comes first: later checks change the copy (VALIDATE CONSTRAINT, the amcheck
extension), and the manifest must see it exactly as pg_restore left it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable

import psycopg
from psycopg import sql

from ..backup.manifest import capture_manifest, compare_manifests
from ..pginstance import pg_tool
from .procs import client_args, run_streaming
from .settings import ExpectedIndex, SmokeQuery

SCHEMA_PARTS = ("tables", "columns", "indexes", "constraints", "sequences")
_MAX_LISTED = 15  # differences listed in one check's detail; the count says how many more

# The application's relations: not PostgreSQL's, not the bot's own state, not an extension's.
_USER_NAMESPACE = """n.nspname <> 'dbops' AND n.nspname <> 'information_schema'
    AND n.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)'"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def listed(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# -- against the manifest --------------------------------------------------------

def capture_restored(conn: psycopg.Connection, level: str) -> dict:
    """The restored database's manifest, in one REPEATABLE READ snapshot like the backup's."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return capture_manifest(conn, level)


def table_data_check(expected: dict, actual: dict) -> Check:
    tables = expected.get("tables", [])
    level = expected.get("integrity_level", "counts")
    what = "row counts and content checksums" if level == "checksums" else "row counts"
    diffs = compare_manifests({"tables": tables}, {"tables": actual.get("tables", [])})
    rows = sum(int(t.get("rows", 0)) for t in tables)
    if diffs:
        return Check(f"{what} of {len(tables)} tables", False, listed(diffs))
    note = "" if level == "checksums" else " (the backup was taken at integrity level \"counts\": no checksums)"
    return Check(f"{what} of {len(tables)} tables", True, f"{rows:,} rows, all equal{note}")


def schema_checks(expected: dict, actual: dict) -> list[Check]:
    exp, act = expected.get("schema", {}), actual.get("schema", {})
    checks = []
    for part in SCHEMA_PARTS:
        diffs = compare_manifests({"schema": {part: exp.get(part, [])}}, {"schema": {part: act.get(part, [])}})
        label = "sequences (value >= largest value of their column)" if part == "sequences" else part
        n = len(exp.get(part, []))
        checks.append(Check(f"schema: {n} {label}", not diffs, listed(diffs) if diffs else "equal"))
    return checks


# -- soundness of the copy -------------------------------------------------------

def not_validated_constraints(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(f"""
        SELECT n.nspname, c.relname, k.conname FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT k.convalidated AND {_USER_NAMESPACE} ORDER BY 1, 2, 3""").fetchall()


def constraints_valid_check(conn: psycopg.Connection) -> Check:
    """Every constraint holds for the restored rows. A constraint created NOT VALID in production is
    validated here on the throwaway copy: the drill proves the data, not only the catalog."""
    pending = not_validated_constraints(conn)
    failures = []
    for schema, table, name in pending:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name)))
        except psycopg.Error as exc:
            failures.append(f"{name} on {schema}.{table}: {exc.diag.message_primary or type(exc).__name__}")
    if failures:
        return Check("all constraints valid", False, listed(failures))
    extra = f"; {len(pending)} NOT VALID in the backup, validated on the copy" if pending else ""
    return Check("all constraints valid", True, f"every constraint holds{extra}")


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || i.relname FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE (NOT x.indisvalid OR NOT x.indisready) AND {_USER_NAMESPACE} ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def indexes_valid_check(conn: psycopg.Connection) -> Check:
    bad = invalid_indexes(conn)
    return Check("all indexes valid", not bad, f"invalid: {listed(bad)}" if bad else "every index is valid and ready")


def index_inventory(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every valid index on an application table: table, key column names in order, unique."""
    rows = conn.execute(f"""
        SELECT n.nspname, c.relname, i.relname, x.indisunique,
               array(SELECT a.attname FROM unnest(x.indkey[0:x.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
                     LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                     ORDER BY k.ord)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE x.indisvalid AND {_USER_NAMESPACE}""").fetchall()
    return [{"schema": s, "table": t, "name": i, "unique": u, "columns": tuple(cols)} for s, t, i, u, cols in rows]


def _matches(index: dict, want: ExpectedIndex) -> bool:
    schema, _, table = want.table.rpartition(".")
    if table != index["table"] or (schema and schema != index["schema"]):
        return False
    cols = index["columns"]
    if want.unique:  # uniqueness over exactly these columns
        return index["unique"] and cols == want.columns
    return cols[:len(want.columns)] == want.columns  # a leading prefix serves the same lookups


def expected_indexes_check(conn: psycopg.Connection, expected: Iterable[Any]) -> Check:
    wanted = [ExpectedIndex.coerce(item) for item in expected]
    inventory = index_inventory(conn)
    missing = [w.label for w in wanted if not any(_matches(ix, w) for ix in inventory)]
    name = f"{len(wanted)} expected indexes present"
    if missing:
        return Check(name, False, f"missing after restore: {listed(missing)}")
    return Check(name, True, "all present")


# -- pg_amcheck ----------------------------------------------------------------------

def amcheck_check(dsn: str, jobs: int, heapallindexed: bool, cancel: threading.Event | None = None) -> Check:
    """pg_amcheck over every table (heap, with its TOAST) and every B-tree index of the restored database."""
    conninfo, env = client_args(dsn)
    cmd = [pg_tool("pg_amcheck"), "--install-missing", "--jobs", str(max(1, jobs)), "--no-password"]
    if heapallindexed:
        cmd.append("--heapallindexed")
    done = run_streaming(cmd + [conninfo], env=env, cancel=cancel)
    name = "pg_amcheck: heap and B-tree indexes" + (" (heapallindexed)" if heapallindexed else "")
    findings = [line.strip() for line in done.lines if line.strip()]
    if done.returncode == 0 and not findings:
        return Check(name, True, "no corruption found")
    if done.returncode == 2 or findings and done.returncode == 0:
        return Check(name, False, f"corruption reported: {listed(findings)}")
    return Check(name, False, f"pg_amcheck could not run (exit {done.returncode}): {listed(findings)}")


# -- smoke queries -------------------------------------------------------------------

def smoke_query_check(conn: psycopg.Connection, query: SmokeQuery, timeout_s: int) -> Check:
    name = f"smoke: {query.name}"
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_s}s",))
            rows = conn.execute(query.sql).fetchall()
    except psycopg.Error as exc:
        return Check(name, False, f"failed: {exc.diag.message_primary or type(exc).__name__}")
    ok, detail = query.judge(rows)
    return Check(name, ok, detail)
