"""What UP changes, measured before UP and after DOWN: schema, row counts, the changed columns'
content checksums."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from handlers import schemas
from handlers.backup.manifest import capture_manifest

from ..nodes import TableName, alter_table_cmds, data_changes, is_alter_table, table_of
from ..parsing import Statement
from .run import rollback

# -- what UP changes, and measuring it -------------------------------------------------------

@dataclass(frozen=True)
class WatchedColumn:
    schema: str
    table: str
    column: str
    key: tuple[str, ...]  # primary key columns: each value is hashed with its row's key

    @property
    def label(self) -> str:
        return f"{sql.Identifier(self.schema).as_string(None)}.{sql.Identifier(self.table).as_string(None)}." \
               f"{sql.Identifier(self.column).as_string(None)}"

    @property
    def table_key(self) -> str:
        return f"{self.schema}.{self.table}"


def changed_columns(statements: list[Statement]) -> list[tuple[TableName, str]]:
    """Columns whose values UP rewrites or removes: ALTER COLUMN TYPE, DROP COLUMN, UPDATE ... SET."""
    found: list[tuple[TableName, str]] = []
    for stmt in statements:
        if stmt.kind == "AlterTableStmt" and is_alter_table(stmt.node):
            table = table_of(stmt.node["relation"])
            for _, cmd in alter_table_cmds(stmt.node):
                if cmd.get("subtype") in ("AT_AlterColumnType", "AT_DropColumn") and cmd.get("name"):
                    found.append((table, cmd["name"]))
        elif stmt.kind == "UpdateStmt" and "relation" in stmt.node:
            table = table_of(stmt.node["relation"])
            for target in stmt.node.get("targetList", ()):
                name = target.get("ResTarget", {}).get("name")
                if name:
                    found.append((table, name))
    return list(dict.fromkeys(found))


def changed_tables(statements: list[Statement]) -> list[TableName]:
    """Tables whose rows UP deletes or updates (nested statements too) or truncates: their rows are
    compared whole after DOWN, by key and content, as the same rows and not only as many."""
    found: list[TableName] = []
    for stmt in statements:
        if stmt.kind == "TruncateStmt":
            found += [table_of(r["RangeVar"]) for r in stmt.node.get("relations", ()) if "RangeVar" in r]
        for kind, node in data_changes(stmt.kind, stmt.node) if stmt.may_hold(_ROW_CHANGES) else ():
            if kind in _ROW_CHANGES and node.get("relation"):
                found.append(table_of(node["relation"]))
    return list(dict.fromkeys(found))


_ROW_CHANGES = frozenset({"DeleteStmt", "UpdateStmt", "MergeStmt"})


@dataclass
class Snapshot:
    schema: dict
    rows: dict[str, int]  # "schema.table" -> rows
    names: dict[int, str]  # table oid -> regclass text, for locks on tables UP drops
    columns: list[WatchedColumn]
    checksums: dict[WatchedColumn, str]
    namespaces: list[str]  # the schemas and the types the copy has: names the rehearsal may show
    types: list[str]
    tables: list[tuple[str, str]]  # (schema, table) whose whole rows are checksummed
    row_checksums: dict[tuple[str, str], str]


def snapshot(conn: psycopg.Connection, changed: list[tuple[TableName, str]] | None,
             columns: list[WatchedColumn] | None, changed_rows: list[TableName] | None = None,
             tables: list[tuple[str, str]] | None = None) -> Snapshot:
    """Schema, row counts, the changed columns' checksums and the changed tables' row checksums, in one
    REPEATABLE READ snapshot. Before UP, `changed` and `changed_rows` are resolved to the columns and
    tables they name; after DOWN, the `columns` and `tables` resolved then are measured again."""
    names = dict(conn.execute(
        "SELECT c.oid::int8, c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v') AND " + schemas.not_system("n")).fetchall())
    namespaces, types = conn.execute("SELECT array(SELECT nspname::text FROM pg_namespace), "
                                     "array(SELECT DISTINCT format_type(oid, NULL) FROM pg_type)").fetchone()
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        if changed is not None:
            columns = _resolve_columns(conn, changed)
        if changed_rows is not None:
            tables = _resolve_tables(conn, changed_rows)
        manifest = capture_manifest(conn, "counts")  # pins search_path etc. for the checksums below
        present = {(c["table"], c["name"]) for c in manifest["schema"].get("columns", [])}
        measurable = [c for c in columns or [] if (c.table_key, c.column) in present
                      and all((c.table_key, k) in present for k in c.key)]
        checksums = _checksums(conn, measurable)
        there = {(t["schema"], t["name"]) for t in manifest["schema"].get("tables", [])}
        row_checksums = _row_checksums(conn, [t for t in tables or [] if t in there])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    rows = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    return Snapshot(manifest["schema"], rows, names, list(columns or []), checksums, namespaces, types,
                    list(tables or []), row_checksums)


def _resolve_tables(conn: psycopg.Connection, tables: list[TableName]) -> list[tuple[str, str]]:
    """(schema, table) of each table that exists before UP (as the migration names it, by search_path)."""
    if not tables:
        return []
    rows = conn.execute("""
        SELECT DISTINCT n.nspname, c.relname FROM unnest(%s::text[]) AS r(rel)
        JOIN pg_class c ON c.oid = to_regclass(r.rel) AND c.relkind IN ('r', 'p')
        JOIN pg_namespace n ON n.oid = c.relnamespace""", ([str(t) for t in tables],)).fetchall()
    return sorted(rows)


def _row_checksums(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Per table, the sum of a 64-bit hash of each whole row as jsonb (key, every column, by name: the
    column order does not count) mod 2^64: rows deleted and made up again, or changed and changed back
    to something else, do not add up to the same sum."""
    if not tables:
        return {}
    parts = [sql.SQL("SELECT {i}::int, coalesce(sum(hashtextextended(to_jsonb(t)::text, 0)), 0) FROM {table} AS t")
             .format(i=sql.Literal(i), table=sql.Identifier(schema, table)) for i, (schema, table) in enumerate(tables)]
    rows = conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall()
    return {tables[i]: f"{int(total) % 2**64:016x}" for i, total in rows}


def _resolve_columns(conn: psycopg.Connection, changed: list[tuple[TableName, str]]) -> list[WatchedColumn]:
    """The changed columns that exist before UP, with their table's primary key (one query)."""
    if not changed:
        return []
    written = [str(t) for t, _ in changed]  # as the migration names it, resolved by search_path
    rows = conn.execute("""
        SELECT r.i, n.nspname, c.relname,
               (SELECT array_agg(a.attname::text ORDER BY k.ord)
                FROM pg_index x CROSS JOIN unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                WHERE x.indrelid = c.oid AND x.indisprimary),
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = r.col
                       AND a.attnum > 0 AND NOT a.attisdropped)
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(rel, col, i)
        JOIN pg_class c ON c.oid = to_regclass(r.rel) AND c.relkind IN ('r', 'p')
        JOIN pg_namespace n ON n.oid = c.relnamespace
        ORDER BY r.i""", (written, [c for _, c in changed])).fetchall()
    return [WatchedColumn(schema, table, changed[i - 1][1], tuple(key or ()))
            for i, schema, table, key, exists in rows if exists]


def _checksums(conn: psycopg.Connection, columns: list[WatchedColumn]) -> dict[WatchedColumn, str]:
    """Per column, the sum of a 64-bit hash of (primary key, value) over all rows (mod 2^64): independent
    of row order, and tied to the rows so that values moved between rows count as a change."""
    by_table: dict[tuple[str, str], list[WatchedColumn]] = {}
    for c in columns:
        by_table.setdefault((c.schema, c.table), []).append(c)
    result: dict[WatchedColumn, str] = {}
    for (schema, table), cols in by_table.items():
        exprs = [sql.SQL("coalesce(sum(hashtextextended(ROW({fields})::text, 0)), 0)").format(
            fields=sql.SQL(", ").join(sql.Identifier(f) for f in (*c.key, c.column))) for c in cols]
        row = conn.execute(sql.SQL("SELECT {} FROM {} AS t").format(
            sql.SQL(", ").join(exprs), sql.Identifier(schema, table))).fetchone()
        for c, total in zip(cols, row):
            result[c] = f"{int(total) % 2**64:016x}"
    return result


# -- comparing -------------------------------------------------------------------------------

def data_differences(before: Snapshot, after: Snapshot) -> list[str]:
    diffs = []
    for key in sorted(before.rows.keys() & after.rows.keys()):
        if before.rows[key] != after.rows[key]:
            diffs.append(f"table {key}: {before.rows[key]} rows before UP, {after.rows[key]} after DOWN")
    for table, checksum in before.row_checksums.items():
        key = f"{table[0]}.{table[1]}"
        now = after.row_checksums.get(table)
        if now is not None and now != checksum and before.rows.get(key) == after.rows.get(key):
            diffs.append(f"table {key}: as many rows after DOWN as before UP, but not the same rows (row checksum "
                         f"{now} after, {checksum} before UP): rows UP deleted or updated are not the ones DOWN "
                         "brings back")
    for column, checksum in before.checksums.items():
        now = after.checksums.get(column)
        if now is not None and now != checksum:
            diffs.append(f"column {column.label}: its values differ after DOWN (content checksum {now} after, "
                         f"{checksum} before UP): UP changed data that DOWN does not restore")
    return diffs
