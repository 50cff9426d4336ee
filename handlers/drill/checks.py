"""Step 3: is the restored database the backed-up one, and sound? Each check one named function.

The manifest comparison comes first: later checks change the copy (VALIDATE CONSTRAINT, the amcheck
extension), and the manifest must see it exactly as pg_restore left it.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .. import fmt, schemas
from ..backup.manifest import capture_manifest, checksum_method, compare_manifests
from ..indexes.settings import ExpectedIndex
from ..postgres import libpq_env, major_version, majors_line, pg_tool, run_streaming, short_version
from ..report import Check
from ..schemadiff import comparable, major_of
from .settings import SmokeQuery

SCHEMA_PARTS = ("tables", "columns", "indexes", "constraints", "sequences")
SCHEMA_PART_ONE = {"tables": "table", "columns": "column", "indexes": "index", "constraints": "constraint",
                   "sequences": "sequence"}
_MAX_LISTED = 15  # differences listed in one check's detail; the count says how many more

_USER_NAMESPACE = schemas.application("n")


INDEXES_HINT = "the index review (`indexes`) reports it with the fix"


def listed(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# -- against the manifest --------------------------------------------------------

def capture_restored(conn: psycopg.Connection, level: str, method: str | None = None) -> dict:
    """The restored database's manifest, in one REPEATABLE READ snapshot like the backup's.

    `method`: the checksum method the backup's manifest names (`checksum_method(manifest)`), so
    both sides hash rows the same way; None: the one a new backup would use."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return capture_manifest(conn, level, method)


def table_data_check(expected: dict, actual: dict) -> Check:
    tables = expected.get("tables", [])
    level = expected.get("integrity_level", "counts")
    what = "row counts and content checksums" if level == "checksums" else "row counts"
    diffs = compare_manifests(
        {"tables": tables, "integrity_level": level, "checksum_method": checksum_method(expected)},
        {"tables": actual.get("tables", []), "integrity_level": actual.get("integrity_level"),
         "checksum_method": checksum_method(actual)})
    rows = sum(int(t.get("rows", 0)) for t in tables)
    if diffs:
        return Check.of(f"{what} of {len(tables)} tables", False, listed(diffs),
                     headline=f"data differs: {len(diffs)} of {len(tables)} tables")
    note = "" if level == "checksums" else " (the backup was taken at integrity level \"counts\": no checksums)"
    return Check.of(f"{what} of {len(tables)} tables", True, f"{rows:,} rows, all equal{note}")


def schema_checks(expected: dict, actual: dict) -> list[Check]:
    """The restored schema against the source's, part by part.

    What pg_dump does not copy on purpose is not a restore failure: an invalid index in the source
    (what a failed CREATE INDEX CONCURRENTLY leaves) is not dumped (a partitioned one is, to be
    completed by its partitions), so it is left out of the comparison on both sides and named in a
    warning instead. A constraint NOT VALID in the source may come back NOT VALID, or validated; one
    valid in the source must come back valid.
    """
    exp, act = dict(expected.get("schema", {})), dict(actual.get("schema", {}))
    invalid = invalid_source_indexes(expected)
    skipped = {(i["table"], i["name"]) for i in invalid}
    exp["indexes"] = [i for i in exp.get("indexes", []) if (i["table"], i["name"]) not in skipped]
    act["indexes"] = [i for i in act.get("indexes", []) if (i["table"], i["name"]) not in skipped]
    act["constraints"] = _as_in_source_when_stronger(exp.get("constraints", []), act.get("constraints", []))
    majors = (major_of(expected.get("server_version_num")), major_of(actual.get("server_version_num")))
    exp, act, normalised = comparable(exp, act, majors)
    checks = []
    for part in SCHEMA_PARTS:
        diffs = compare_manifests({"schema": {part: exp.get(part, [])}}, {"schema": {part: act.get(part, [])}})
        label = "sequences (value >= largest value of their column)" if part == "sequences" else part
        n = len(exp.get(part, []))
        checks.append(Check.of(f"schema: {n} {label}", not diffs, listed(diffs) if diffs else "equal",
                            headline=f"schema differs: {fmt.plural(len(diffs), SCHEMA_PART_ONE[part], part)}"
                            if diffs else ""))
    if invalid:
        names = [f"{i['name']} on {i['table']}" for i in invalid]
        checks.append(Check.of(
            f"invalid indexes in the source ({len(invalid)})", True,
            f"invalid in the source, what a failed CREATE INDEX CONCURRENTLY leaves; pg_dump does not dump an "
            f"invalid index, so the copy is not compared for it: {listed(names)}. Not a restore problem; "
            f"{INDEXES_HINT}.", warning=True,
            headline=f"{len(invalid)} invalid {'index' if len(invalid) == 1 else 'indexes'} in the source"))
    if normalised:
        checks.append(Check.of("schema compared across majors", True,
                            f"the source ran PostgreSQL {majors[0]}, the copy {majors[1]}; left out of the comparison "
                            f"on both sides: {'; '.join(normalised)}"))
    return checks


def invalid_source_indexes(manifest: dict) -> list[dict]:
    """Indexes the manifest records as invalid; none from a manifest older than the "valid" field."""
    return [i for i in manifest.get("schema", {}).get("indexes", []) if i.get("valid") is False]


def _as_in_source_when_stronger(source: list[dict], restored: list[dict]) -> list[dict]:
    """Restored constraints, with one NOT VALID in the source but validated after the restore shown
    as NOT VALID: holding more than the source promised is no difference worth failing over."""
    not_valid = {(c["table"], c["name"]) for c in source if c.get("validated") is False}
    return [{**c, "validated": False} if (c["table"], c["name"]) in not_valid and c.get("validated") else c
            for c in restored]


def not_valid_in_source(manifest: dict) -> set[tuple[str, str]] | None:
    """(schema-qualified table, name) of the constraints NOT VALID in the source; None when the
    manifest does not say (older than the "validated" field)."""
    constraints = manifest.get("schema", {}).get("constraints", [])
    if any("validated" not in c for c in constraints):
        return None
    return {(c["table"], c["name"]) for c in constraints if c["validated"] is False}


def copy_major_check(source: str, source_version: str | int | None, copy_version: str | int | None,
                     copy_word: str = "copy on", newer: str | None = None) -> Check:
    """The copy ran the source's PostgreSQL major; on a newer one (when that was asked for) it passes
    with a warning that says what that means (`newer`, see versions.majors_line), and on an older
    one it fails."""
    line = majors_line(source, source_version, copy_version, copy_word, newer)
    src, cpy = major_version(short_version(source_version)), major_version(short_version(copy_version))
    name = "copy on the source's PostgreSQL major"
    if src is None or cpy is None:
        return Check.of(name, True, f"{line}; the source's major is not recorded", warning=True)
    return Check.of(name, cpy >= src, line, warning=cpy > src)


# -- soundness of the copy -------------------------------------------------------

def not_validated_constraints(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(f"""
        SELECT n.nspname, c.relname, k.conname FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT k.convalidated AND {_USER_NAMESPACE} ORDER BY 1, 2, 3""").fetchall()


def constraints_valid_check(conn: psycopg.Connection, source_not_valid: set[tuple[str, str]] | None = None) -> Check:
    """Every constraint holds for the restored rows. A constraint NOT VALID in the copy is validated
    here on the throwaway copy: the drill proves the data, not only the catalog.

    `source_not_valid`: the constraints NOT VALID in the source (from the manifest). Rows that break
    one of those broke it in the source too (the row checks compare the data): it was left NOT VALID
    on purpose, or waits for its data to be fixed. That is a warning, not a failed restore. Any
    other constraint that does not hold fails the check; None (an older manifest) treats them all so.
    """
    pending = not_validated_constraints(conn)
    known = source_not_valid or set()
    failures, in_source, held = [], [], 0
    for schema, table, name in pending:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name)))
            held += 1
        except psycopg.Error as exc:
            why = f"{name} on {schema}.{table}: {exc.diag.message_primary or type(exc).__name__}"
            (in_source if (f"{schema}.{table}", name) in known else failures).append(why)
    name = "constraints (VALIDATE on the copy)"
    if failures:
        return Check.of(name, False, listed(failures + in_source),
                     headline=f"{len(failures)} {'constraint does' if len(failures) == 1 else 'constraints do'} "
                              "not hold")
    extra = f"; {held} NOT VALID in the backup, validated on the copy" if held else ""
    if in_source:
        return Check.of(name, True,
                     f"every constraint valid in the source holds{extra}; NOT VALID in the source and not "
                     f"holding for its rows there either (not a restore problem): {listed(in_source)}",
                     warning=True, headline=f"{len(in_source)} NOT VALID "
                                            f"{'constraint does' if len(in_source) == 1 else 'constraints do'} "
                                            "not hold in the source either")
    return Check.of(name, True, f"every constraint holds{extra}")


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || i.relname FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE (NOT x.indisvalid OR NOT x.indisready) AND {_USER_NAMESPACE} ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def indexes_valid_check(conn: psycopg.Connection) -> Check:
    bad = invalid_indexes(conn)
    return Check.of("index validity", not bad, f"invalid: {listed(bad)}" if bad else "every index is valid and ready",
                 headline=f"{len(bad)} invalid {'index' if len(bad) == 1 else 'indexes'} on the copy" if bad else "")


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
    if want.table != index["table"] or want.schema != index["schema"]:
        return False
    cols = index["columns"]
    if want.unique:  # uniqueness over exactly these columns
        return index["unique"] and cols == want.columns
    return cols[:len(want.columns)] == want.columns  # a leading prefix serves the same lookups


def source_index_inventory(manifest: dict) -> list[dict[str, Any]] | None:
    """The source's indexes as `index_inventory` gives them, plus "valid"; None from a manifest older
    than the fields this needs."""
    indexes = manifest.get("schema", {}).get("indexes", [])
    if any(not {"schema", "relation", "unique", "columns", "valid"} <= i.keys() for i in indexes):
        return None
    return [{"schema": i["schema"], "table": i["relation"], "name": i["name"], "unique": i["unique"],
             "columns": tuple(i["columns"]), "valid": i["valid"]} for i in indexes]


def expected_indexes_check(conn: psycopg.Connection, expected: Iterable[Any], manifest: dict | None = None,
                           restored: dict | None = None) -> Check:
    """Each expected index is in the restored copy; the drill compares with the source, so one the
    source lacks as well (or has only as an invalid index, which pg_dump skips) is a warning that
    points at `/db indexes`, and only one the source had, valid, fails the drill.

    `manifest` is the backup's and `restored` the copy's (capture_restored). From an older manifest
    without index details the source can still be told: when every index of the source came back,
    an expected index missing after the restore was missing before. Without either, every missing
    expected index fails.
    """
    wanted = [ExpectedIndex.coerce(item) for item in expected]
    inventory = index_inventory(conn)
    source = source_index_inventory(manifest) if manifest is not None else None
    all_came_back = manifest is not None and restored is not None and _every_source_index_restored(manifest, restored)
    lost, absent, invalid = [], [], []
    for w in wanted:
        if any(_matches(ix, w) for ix in inventory):
            continue
        if source is None:
            (absent if all_came_back else lost).append(w.label)
            continue
        in_source = [ix for ix in source if _matches(ix, w)]
        if any(ix["valid"] for ix in in_source):
            lost.append(f"{w.label} (the source has it: {', '.join(ix['name'] for ix in in_source if ix['valid'])})")
        elif in_source:
            invalid.append(f"{w.label} ({', '.join(ix['name'] for ix in in_source)} is invalid there)")
        else:
            absent.append(w.label)
    name = f"expected indexes ({len(wanted)})"
    notes = []
    if absent:
        notes.append(f"missing in the source as well: {listed(absent)}")
    if invalid:
        notes.append(f"only an invalid index in the source, which pg_dump does not dump: {listed(invalid)}")
    if lost:
        return Check.of(name, False, "; ".join([f"missing after restore: {listed(lost)}"] + notes),
                     headline=f"{len(lost)} of {len(wanted)} expected indexes lost in the restore")
    if notes:
        return Check.of(name, True, "; ".join(notes) + f". Not a restore problem; {INDEXES_HINT}.", warning=True,
                     headline=f"{len(absent) + len(invalid)} of {len(wanted)} expected indexes missing in the "
                              "source too")
    return Check.of(name, True, "all present")


def _every_source_index_restored(manifest: dict, restored: dict) -> bool:
    have = {(i["table"], i["name"]): i.get("definition") for i in restored.get("schema", {}).get("indexes", [])}
    return all(have.get((i["table"], i["name"])) == i.get("definition")
               for i in manifest.get("schema", {}).get("indexes", []))


# -- pg_amcheck ----------------------------------------------------------------------

def amcheck_check(dsn: str, jobs: int, heapallindexed: bool, cancel: threading.Event | None = None,
                  major: int | None = None) -> Check:
    """pg_amcheck over every table (heap, with its TOAST) and every B-tree index of the restored database;
    `major`: the server's (None: the default binaries')."""
    env = libpq_env(dsn)
    # Only the database's name on the command line, so that pg_amcheck checks that one database and
    # not the one libpq would default to; host, user and password come from the environment.
    database = make_conninfo(dbname=env["PGDATABASE"])
    cmd = [pg_tool("pg_amcheck", major), "--install-missing", "--jobs", str(max(1, jobs)), "--no-password"]
    if heapallindexed:
        cmd.append("--heapallindexed")
    done = run_streaming(cmd + [database], env=env, cancel=cancel)
    name = "pg_amcheck: heap and B-tree indexes" + (" (heapallindexed)" if heapallindexed else "")
    findings = [line.strip() for line in done.lines if line.strip()]
    if done.returncode == 0 and not findings:
        return Check.of(name, True, "no corruption found")
    if done.returncode == 2 or findings and done.returncode == 0:
        return Check.of(name, False, f"corruption reported: {listed(findings)}",
                     headline=f"pg_amcheck reports corruption: {len(findings)} "
                              f"{'message' if len(findings) == 1 else 'messages'}")
    return Check.of(name, False, f"pg_amcheck could not run (exit {done.returncode}): {listed(findings)}",
                 headline=f"pg_amcheck could not run (exit {done.returncode})")


# -- smoke queries -------------------------------------------------------------------

def smoke_query_check(conn: psycopg.Connection, query: SmokeQuery, timeout_s: int) -> Check:
    name = f"smoke: {query.name}"
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_s}s",))
            rows = conn.execute(query.sql).fetchall()
    except psycopg.Error as exc:
        return Check.of(name, False, f"failed: {exc.diag.message_primary or type(exc).__name__}",
                     headline="a smoke query failed")
    ok, detail = query.judge(rows)
    return Check.of(name, ok, detail, headline="" if ok else "a smoke query found other rows")
