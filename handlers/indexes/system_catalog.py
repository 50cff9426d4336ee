"""The catalog queries of the index review, each one named function around one SQL query.

Every query covers all tables at once: the review issues the same number of
queries for 5 tables as for 5,000 (the `SystemCatalog.queries` counter shows it).
Each query carries the comment `dbops index review` right after SELECT (a leading
comment is not kept by pg_stat_statements) so its listings can leave the bot's own reads out.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row

from .. import schemas
from ..errors import DbopsError, TargetUnreachable
from .model import ForeignKeyInfo, IndexInfo, TableInfo

TAG = "/* dbops index review */"

# Schemas never reviewed: PostgreSQL's own.
_SYSTEM_SCHEMAS = schemas.not_system("n")


class SystemCatalog:
    """Runs the review's queries on the target and counts them."""

    def __init__(self, conn: psycopg.Connection, exclude_schemas: list[str] | None = None) -> None:
        self.conn = conn
        self.exclude_schemas = list(exclude_schemas or [])
        self.queries = 0

    def rows(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries += 1
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)  # None: no placeholders, a literal % stays as it is
            return cur.fetchall()

    def tuples(self, query: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """As `rows`, each row a tuple in the SELECT's order: for the queries of one row per index."""
        self.queries += 1
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()


@contextmanager
def catalog_errors(target_name: str, during: str) -> Iterator[None]:
    """The target's refusals and disconnections while its catalog is read, as errors that name the
    target and what was being read: the server's message, never the connection string (it holds the
    password)."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DbopsError(f"the bot's role may not read the catalog of `{target_name}`: "
                         f"{exc.diag.message_primary}") from None
    except psycopg.OperationalError as exc:
        raise TargetUnreachable(f"target `{target_name}` went away {during}: "
                                f"{exc.diag.message_primary or type(exc).__name__}") from None


@dataclass(frozen=True)
class Environment:
    database: str
    server_version_num: int
    stats_reset: datetime | None  # the database's last statistics reset (pg_stat_reset)
    pgss_schema: str | None  # where pg_stat_statements is installed, None when not in this database
    pgss_version: str | None


def environment(cat: SystemCatalog) -> Environment:
    row = cat.rows(
        f"""SELECT {TAG} current_database() AS database,
                  current_setting('server_version_num')::int AS version,
                  (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()) AS stats_reset,
                  (SELECT e.extnamespace::regnamespace::text FROM pg_extension e
                    WHERE e.extname = 'pg_stat_statements') AS pgss_schema,
                  (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_stat_statements') AS pgss_version"""
    )[0]
    return Environment(row["database"], row["version"], row["stats_reset"], row["pgss_schema"], row["pgss_version"])


def indexes(cat: SystemCatalog) -> list[IndexInfo]:
    """Every index outside the system schemas, with what the checks need to judge it.

    Per index the server computes only what every check needs; what one needs rarely is computed
    only where it may be needed: the full definition of an invalid index (to rebuild it), the exact
    size of an index no constraint needs (what a finding may show; a constraint's index is never
    suggested for dropping, its size is the planner's estimate, for ordering only). A plain
    column's definition is quote_ident(its name), what pg_get_indexdef(index, column) says of it,
    so only expression columns ask pg_get_indexdef. Rows come as tuples and are sorted here: a
    server-side sort of 30,000 wide rows spills to disk."""
    rows = cat.tuples(
        f"""SELECT {TAG} i.indexrelid::bigint, n.nspname, t.relname, c.relname, am.amname,
                   i.indisunique, i.indisprimary, i.indisvalid, i.indnkeyatts, cols.names, cols.defs,
                   i.indclass::text, i.indcollation::text, i.indoption::text,
                   pg_get_expr(i.indpred, i.indrelid, true),
                   CASE WHEN NOT i.indisvalid THEN pg_get_indexdef(i.indexrelid) END,
                   con.contype::text, con.conname, c.relispartition, c.relkind = 'I',
                   p.index_relid IS NOT NULL,
                   CASE WHEN con.contype IS NULL AND NOT i.indisprimary THEN pg_relation_size(c.oid)
                        ELSE c.relpages::bigint * current_setting('block_size')::int END,
                   CASE WHEN t.relkind IN ('r', 't', 'm') THEN pg_stat_get_numscans(i.indexrelid) END
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            JOIN pg_am am ON am.oid = c.relam
            CROSS JOIN LATERAL (
                SELECT array_agg(a.attname ORDER BY k.ord) AS names,
                       array_agg(coalesce(quote_ident(a.attname), pg_get_indexdef(i.indexrelid, k.ord::int, true))
                                 ORDER BY k.ord) AS defs
                FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0) cols
            LEFT JOIN pg_constraint con
                   ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
            LEFT JOIN (SELECT DISTINCT index_relid FROM pg_stat_progress_create_index) p
                   ON p.index_relid = i.indexrelid
            WHERE {_SYSTEM_SCHEMAS} AND NOT (n.nspname = ANY(%(exclude)s))""",
        {"exclude": cat.exclude_schemas},
    )
    rows.sort(key=itemgetter(1, 2, 3))  # schema, table, index: as the server's C collation orders names
    return [IndexInfo(oid, schema, table, name, method, is_unique, is_primary, is_valid, key_count, tuple(names),
                      tuple(defs), (classes, collations, options), predicate, definition, constraint_type,
                      constraint_name, is_partition_child, is_partitioned, being_built, size_bytes or 0, idx_scan)
            for (oid, schema, table, name, method, is_unique, is_primary, is_valid, key_count, names, defs, classes,
                 collations, options, predicate, definition, constraint_type, constraint_name, is_partition_child,
                 is_partitioned, being_built, size_bytes, idx_scan) in rows]


def foreign_keys(cat: SystemCatalog) -> list[ForeignKeyInfo]:
    """Foreign keys declared on a table (not the copies PostgreSQL makes on each partition)."""
    rows = cat.rows(
        f"""SELECT {TAG} n.nspname AS schema, t.relname AS table_name, con.conname AS name,
                   ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS columns,
                   -- a lookup per foreign key, not a join: that hashes the whole pg_class
                   (SELECT r.relname FROM pg_class r WHERE r.oid = con.confrelid) AS referenced_table,
                   t.relkind = 'p' AS partitioned
            FROM pg_constraint con
            JOIN pg_class t ON t.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE con.contype = 'f' AND con.conparentid = 0
              AND {_SYSTEM_SCHEMAS} AND NOT (n.nspname = ANY(%(exclude)s))
            ORDER BY n.nspname, t.relname, con.conname""",
        {"exclude": cat.exclude_schemas},
    )
    return [ForeignKeyInfo(r["schema"], r["table_name"], r["name"], tuple(r["columns"]), r["referenced_table"],
                           r["partitioned"]) for r in rows]


def tables(cat: SystemCatalog, sized_from_rows: int = 0, sized_from_scans: int = 0) -> list[TableInfo]:
    """Scan counters of every user table since the last statistics reset; the size (a few file
    lookups on the server per table) of the tables with `sized_from_rows` live rows and
    `sized_from_scans` sequential scans or more, the only ones a finding can name (0 elsewhere)."""
    rows = cat.rows(
        f"""SELECT {TAG} s.schemaname AS schema, s.relname AS name, s.seq_scan, s.seq_tup_read,
                  coalesce(s.idx_scan, 0) AS idx_scan, s.n_live_tup AS live_rows,
                  CASE WHEN s.n_live_tup >= %(rows)s AND s.seq_scan >= %(scans)s THEN pg_table_size(s.relid)
                  END AS size_bytes
           FROM pg_stat_user_tables s
           WHERE NOT (s.schemaname = ANY(%(exclude)s))""",
        {"exclude": cat.exclude_schemas, "rows": sized_from_rows, "scans": sized_from_scans},
    )
    return [TableInfo(r["schema"], r["name"], r["seq_scan"] or 0, r["seq_tup_read"] or 0, r["idx_scan"],
                      r["live_rows"] or 0, r["size_bytes"] or 0) for r in rows]


def index_counters(conn: psycopg.Connection) -> tuple[datetime | None, list[dict[str, Any]]]:
    """For a snapshot: the database's stats_reset and every index's scan counter, in one query."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""SELECT {TAG} s.indexrelid::bigint AS oid, s.schemaname AS schema, s.relname AS table_name,
                      s.indexrelname AS index_name, s.idx_scan,
                      (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()) AS stats_reset
               FROM pg_stat_user_indexes s"""
        )
        rows = cur.fetchall()
        if not rows:
            cur.execute(f"SELECT {TAG} stats_reset FROM pg_stat_database WHERE datname = current_database()")
            one = cur.fetchone()
            return (one["stats_reset"] if one else None), []
    return rows[0]["stats_reset"], rows
