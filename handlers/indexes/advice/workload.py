"""What production tells: its slowest statements (pg_stat_statements), its tables and their writes, its
indexes and search_path. Each one named function around one query, every table at once; all read-only.

Statements are taken by total time (calls x mean: the few that dominate the database's time) and by
mean time (the review's slow list), the bot's own reads left out (they carry system_catalog.TAG).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from ... import schemas
from .. import system_catalog
from ..checks import seq_scans, slow_queries
from ..model import IndexInfo, quote_ident
from ..settings import IndexSettings
from ..system_catalog import TAG, SystemCatalog

SECONDS_PER_DAY = 86400.0
# Rows read per list before the statements an index cannot serve (the bot's pg_dump, utility statements,
# catalog reads) are left out: `statements` of each list remain after that.
READ_AHEAD = 5


@dataclass(frozen=True)
class StatementStats:
    queryid: str
    text: str  # as pg_stat_statements normalised it: constants are $n
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    share: float  # of the database's total statement time
    calls_per_day: float


@dataclass(frozen=True)
class TableFacts:
    schema: str
    name: str
    columns: tuple[str, ...]
    live_rows: int
    size_bytes: int
    writes_per_day: float  # rows inserted, updated and deleted per day since the statistics reset


@dataclass
class Workload:
    target: str
    database: str
    server_version_num: int
    search_path: list[str]
    statements: list[StatementStats]
    tables: dict[tuple[str, str], TableFacts]
    indexes: list[IndexInfo]
    seq_scanned: list[tuple[str, str]]  # large tables the review finds read mostly by sequential scans
    stats_since: datetime | None  # what "per day" is counted from
    pgss_message: str = ""  # why there are no statements, when pg_stat_statements cannot be read
    queries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def major(self) -> int:
        return self.server_version_num // 10000


def read_workload(conn: psycopg.Connection, settings: IndexSettings, target_name: str,
                  now: datetime | None = None) -> Workload:
    """Read everything `suggest` needs from the target, in a fixed number of read-only queries."""
    now = now or datetime.now(timezone.utc)
    cat = SystemCatalog(conn, settings.exclude_schemas)
    with system_catalog.catalog_errors(target_name, "while its statements were read"):
        env = system_catalog.environment(cat)
        path, started = session_facts(cat)
        counted_from = env.stats_reset or started  # counters survive a clean restart: an upper bound per day
        since = statistics_since(cat, env.pgss_schema, env.pgss_version) or counted_from
        days = max((now - since).total_seconds() / SECONDS_PER_DAY, 1 / 24) if since else 1.0
        found, message = top_statements(cat, env.pgss_schema, env.pgss_version, settings.advice.statements, days)
        tables = table_facts(cat, counted_from, now)
        indexes = system_catalog.indexes(cat)
        scanned = seq_scans.check_seq_scans(system_catalog.tables(cat), settings.seq_scan_min_rows,
                                            settings.seq_scan_min_count, settings.seq_scan_min_share)
    return Workload(target_name, env.database, env.server_version_num, path, found, tables, indexes,
                    [(f.schema, f.names[0]) for f in scanned], since, message, cat.queries)


def session_facts(cat: SystemCatalog) -> tuple[list[str], datetime]:
    """The schemas an unqualified name resolves in, as the bot's session sees them (pg_stat_statements
    does not record the application's: a name found in several schemas is said to be ambiguous), and
    when the server started."""
    row = cat.rows(f"SELECT {TAG} current_schemas(false) AS path, pg_postmaster_start_time() AS started")[0]
    return list(row["path"]), row["started"]


def statistics_since(cat: SystemCatalog, schema: str | None, version: str | None) -> datetime | None:
    """When pg_stat_statements last started counting (1.9+ records it), for calls per day."""
    if schema is None or _version(version) < (1, 9):
        return None
    query = sql.SQL("SELECT {tag} stats_reset FROM {schema}.pg_stat_statements_info").format(
        tag=sql.SQL(TAG), schema=sql.Identifier(schema))
    try:
        with cat.conn.transaction():
            rows = cat.rows(query.as_string(cat.conn))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return None
    return rows[0]["stats_reset"] if rows else None


def pgss_columns(cat: SystemCatalog, schema: str) -> set[str]:
    """The columns this version of pg_stat_statements has (1.8 renamed the time columns)."""
    return {r["attname"] for r in cat.rows(
        f"SELECT {TAG} attname FROM pg_attribute WHERE attrelid = to_regclass(%(view)s) AND attnum > 0"
        " AND NOT attisdropped", {"view": f"{quote_ident(schema)}.pg_stat_statements"})}


def top_statements(cat: SystemCatalog, schema: str | None, version: str | None, limit: int,
                   days: float) -> tuple[list[StatementStats], str]:
    """The statements with the largest total time and the slowest on average (READ_AHEAD x `limit` of
    each: the caller keeps `limit` of each among those an index could serve), largest total first; or
    none and why."""
    if schema is None:
        return [], "pg_stat_statements is not installed in this database: " + slow_queries.ENABLE_HINT
    present = pgss_columns(cat, schema)
    try:
        chosen = slow_queries.choose_columns(present)
    except LookupError as exc:
        return [], f"cannot read pg_stat_statements {version}: {exc}"
    query = sql.SQL("""
        WITH s AS (
            SELECT {tag} s.queryid, s.query, sum(s.calls) AS calls, sum(s.{total}) AS total_ms, sum(s.rows) AS rows
            FROM {schema}.pg_stat_statements s
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.calls > 0 AND s.query NOT LIKE {own} {toplevel}
            GROUP BY s.queryid, s.query),
        ranked AS (
            SELECT s.*, rank() OVER (ORDER BY total_ms DESC) AS by_total,
                   rank() OVER (ORDER BY total_ms / calls DESC) AS by_mean, sum(total_ms) OVER () AS all_ms
            FROM s)
        SELECT queryid, query, calls, total_ms, rows, all_ms FROM ranked
        WHERE by_total <= {limit} OR by_mean <= {limit}
        ORDER BY total_ms DESC""").format(
        tag=sql.SQL(TAG), total=sql.Identifier(chosen["total_ms"]), schema=sql.Identifier(schema),
        own=sql.Literal(f"%{TAG}%"), limit=sql.Literal(limit * READ_AHEAD),
        toplevel=sql.SQL("AND s.toplevel" if "toplevel" in present else ""))
    try:
        with cat.conn.transaction():
            rows = cat.rows(query.as_string(cat.conn))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return [], "pg_stat_statements is not preloaded: " + slow_queries.PRELOAD_HINT
    except psycopg.errors.InsufficientPrivilege:
        return [], "the bot's role may not read pg_stat_statements: GRANT pg_read_all_stats TO <bot role>"
    found = []
    for r in rows:
        calls, total = int(r["calls"]), float(r["total_ms"])
        found.append(StatementStats(str(r["queryid"]), r["query"] or "", calls, total, total / calls,
                                    int(r["rows"] or 0), total / float(r["all_ms"]) if r["all_ms"] else 0.0,
                                    calls / days))
    return found, ""


def table_facts(cat: SystemCatalog, counted_from: datetime | None, now: datetime) -> dict[tuple[str, str], TableFacts]:
    """Every application table with its columns, rows, size and writes per day."""
    rows = cat.rows(
        f"""SELECT {TAG} n.nspname AS schema, c.relname AS name,
                  ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                        AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
                  coalesce(s.n_live_tup, 0) AS live_rows, pg_table_size(c.oid) AS size_bytes,
                  coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0) AS writes
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
           WHERE c.relkind IN ('r', 'p', 'm') AND {schemas.not_system('n')}
             AND NOT (n.nspname = ANY(%(exclude)s))""",
        {"exclude": cat.exclude_schemas})
    days = max((now - counted_from).total_seconds() / SECONDS_PER_DAY, 1 / 24) if counted_from else None
    return {(r["schema"], r["name"]): TableFacts(
        r["schema"], r["name"], tuple(r["columns"]), int(r["live_rows"]), int(r["size_bytes"] or 0),
        (int(r["writes"]) / days) if days else float(r["writes"])) for r in rows}


def _version(text: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in (text or "0").split("."))
    except ValueError:
        return (0,)
