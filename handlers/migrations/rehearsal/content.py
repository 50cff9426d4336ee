"""The content of every table UP or DOWN touched, before UP and after DOWN, whatever the analyser
understood of them: a DO block, a function call or a trigger that changes rows is caught too.

Which tables were touched is known only once UP and DOWN ran (the relation locks their
transactions took, read from pg_locks), so before UP every ordinary table is measured, within a
budget (CONTENT_TABLE_BYTES a table, CONTENT_TOTAL_BYTES in all; the rehearsal's total time limit
bounds the scans as well); after DOWN only the touched ones are measured again. A touched table over
the budget is named as not compared, so "schema identical" is never said of it alone.

Per table: the row count, a content checksum of each column (tied to the primary key when there is
one) and of whole rows, and for a table with a primary key and at most KEYED_ROWS_MAX rows (up to
KEYED_ROWS_TOTAL in all) a digest of each row by a hash of its key, to count the rows that differ.
Nothing of a row's values or keys leaves the copy but those counts and 64-bit checksums.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from handlers import schemas

CONTENT_TABLE_BYTES = 256 * 1024 * 1024
CONTENT_TOTAL_BYTES = 1024 * 1024 * 1024
KEYED_ROWS_MAX = 200_000
KEYED_ROWS_TOTAL = 1_000_000  # row digests kept in memory, all tables together
# Locks that only read (SELECT, SELECT FOR UPDATE) do not count as touching a table.
READ_LOCKS = frozenset({"AccessShareLock", "RowShareLock"})


@dataclass
class TableContent:
    rows: int
    key: tuple[str, ...]
    columns: dict[str, str]  # column -> content checksum
    row_checksum: str
    digests: dict[int, int] | None = None  # hash of the key -> hash of the row; None: no key, or too many rows


@dataclass
class Contents:
    tables: dict[tuple[str, str], TableContent] = field(default_factory=dict)
    over_budget: dict[tuple[str, str], int] = field(default_factory=dict)  # (schema, table) -> bytes
    by_oid: dict[int, tuple[str, str]] = field(default_factory=dict)  # every ordinary table -> (schema, table)


_TABLES = """
    SELECT n.nspname::text, c.relname::text, c.oid::int8, pg_table_size(c.oid),
           (SELECT array_agg(a.attname::text ORDER BY k.ord)
            FROM pg_index x CROSS JOIN unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            WHERE x.indrelid = c.oid AND x.indisprimary),
           array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                 AND NOT a.attisdropped ORDER BY a.attnum)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND """ + schemas.not_system("n") + " ORDER BY pg_table_size(c.oid), 1, 2"


def measure(conn: psycopg.Connection, only: list[tuple[str, str]] | None = None) -> Contents:
    """Every ordinary table within the budget (`only` None, before UP), or the tables in `only`
    (after DOWN). Runs in the caller's transaction (its snapshot)."""
    found = Contents()
    spent, keyed = 0, 0
    for schema, table, oid, size, key, columns in conn.execute(_TABLES).fetchall():
        found.by_oid[int(oid)] = (schema, table)
        if only is not None and (schema, table) not in only:
            continue
        if only is None and (size > CONTENT_TABLE_BYTES or spent + size > CONTENT_TOTAL_BYTES):
            found.over_budget[(schema, table)] = size
            continue
        spent += size
        content = _content(conn, schema, table, tuple(key or ()), list(columns), KEYED_ROWS_TOTAL - keyed)
        keyed += len(content.digests or ())
        found.tables[(schema, table)] = content
    return found


def _content(conn: psycopg.Connection, schema: str, table: str, key: tuple[str, ...], columns: list[str],
             keyed_left: int) -> TableContent:
    name = sql.Identifier(schema, table)
    sums = [sql.SQL("coalesce(sum(hashtextextended(ROW({})::text, 0)), 0)").format(
        sql.SQL(", ").join(sql.Identifier(f) for f in (*key, column))) for column in columns]
    whole = sql.SQL("coalesce(sum(hashtextextended(to_jsonb(t)::text, 0)), 0)")
    row = conn.execute(sql.SQL("SELECT count(*), {} FROM {} AS t").format(
        sql.SQL(", ").join([whole, *sums]), name)).fetchone()
    rows, total, *column_sums = row
    content = TableContent(rows, key, {c: _hex(s) for c, s in zip(columns, column_sums)}, _hex(total))
    if key and rows <= min(KEYED_ROWS_MAX, keyed_left):
        content.digests = dict(conn.execute(sql.SQL(
            "SELECT hashtextextended(ROW({})::text, 0), hashtextextended(to_jsonb(t)::text, 0) FROM {} AS t").format(
            sql.SQL(", ").join(sql.Identifier(k) for k in key), name)).fetchall())
    return content


def _hex(total) -> str:
    return f"{int(total) % 2**64:016x}"


def touched(locks: set[tuple[str, str]], names: dict[int, str], contents: Contents) -> list[tuple[str, str]]:
    """The tables (schema, table) that existed before UP among the relations locked to change them
    (`locks` name them as `names`, oid -> name before UP, does)."""
    oids = {name: oid for oid, name in names.items()}
    return sorted({contents.by_oid[oids[name]] for mode, name in locks
                   if mode not in READ_LOCKS and oids.get(name) in contents.by_oid})


def content_differences(before: Contents, after: Contents, touched_tables: list[tuple[str, str]],
                        reported_columns: set[tuple[str, str, str]],
                        reported_tables: set[tuple[str, str]]) -> list[str]:
    """What differs after DOWN in the touched tables, beyond what the analyser's own comparison says
    (`reported_columns` (schema, table, column) and `reported_tables`, whose whole rows it compares, are
    left to it); with a primary key, how many rows differ, counted by key."""
    diffs = []
    for pair in touched_tables:
        then, now = before.tables.get(pair), after.tables.get(pair)
        if then is None or now is None or pair in reported_tables:
            continue  # over the budget (said apart), gone after DOWN (a schema difference), or compared whole
        label = f"{pair[0]}.{pair[1]}"
        for column, checksum in then.columns.items():
            moved = now.columns.get(column)
            if moved is not None and moved != checksum and (*pair, column) not in reported_columns \
                    and then.key == now.key:
                diffs.append(f"column {_quoted(*pair, column)}: its values differ after DOWN (content checksum "
                             f"{moved} after, {checksum} before UP): UP changed data that DOWN does not restore")
        if now.row_checksum == then.row_checksum:
            continue
        if then.digests is not None and now.digests is not None:
            gone = then.digests.keys() - now.digests.keys()
            new = now.digests.keys() - then.digests.keys()
            changed = sum(1 for k in then.digests.keys() & now.digests.keys() if then.digests[k] != now.digests[k])
            if gone or new or changed:
                diffs.append(f"table {label}: {len(gone) + len(new) + changed:,} rows differ by primary "
                             f"key after DOWN ({len(gone):,} gone, {len(new):,} not there before UP, {changed:,} "
                             "changed)")
        elif then.rows == now.rows:
            diffs.append(f"table {label}: as many rows after DOWN as before UP, but not the same rows (row checksum "
                         f"{now.row_checksum} after, {then.row_checksum} before UP)")
    return diffs


def _quoted(*parts: str) -> str:
    return ".".join(sql.Identifier(p).as_string(None) for p in parts)
