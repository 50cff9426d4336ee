"""Slow queries from pg_stat_statements: the top N by mean time, with calls and total time.

Column names differ between extension versions (1.8 renamed mean_time to
mean_exec_time and total_time to total_exec_time): they are read at run time.
The extension needs two things: `shared_preload_libraries` (a server setting,
restart) and `CREATE EXTENSION` in the database. Each missing part has its own message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..model import quote_ident
from ..system_catalog import TAG, SystemCatalog

HEADERS = ["Mean ms", "Calls", "Total ms", "Rows", "Query"]

OK = "ok"
NOT_INSTALLED = "not installed"
NOT_PRELOADED = "not preloaded"
UNREADABLE = "unreadable"

ENABLE_HINT = ("enable it with `CREATE EXTENSION pg_stat_statements;` in this database "
               "(on Render the library is already preloaded: that statement is all it takes)")
PRELOAD_HINT = ("the extension is created but its library is not loaded: add pg_stat_statements to "
                "shared_preload_libraries and restart the server (on Render it is preloaded; "
                "elsewhere ask the provider)")

_COLUMN_CHOICES = {
    "mean_ms": ("mean_exec_time", "mean_time"),
    "total_ms": ("total_exec_time", "total_time"),
}

QUERY_TEXT_MAX = 300


@dataclass
class SlowQueries:
    status: str
    message: str = ""
    version: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # which real column each figure came from
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message or None, "version": self.version,
                "columns": self.columns, "queries": self.rows}


def choose_columns(available: set[str]) -> dict[str, str]:
    """The columns to read for mean and total time, whichever names this extension version has."""
    chosen = {}
    for figure, names in _COLUMN_CHOICES.items():
        for name in names:
            if name in available:
                chosen[figure] = name
                break
        else:
            raise LookupError(f"pg_stat_statements has none of {', '.join(names)}")
    return chosen


def slow_queries(cat: SystemCatalog, schema: str | None, version: str | None, limit: int) -> SlowQueries:
    if schema is None:
        return SlowQueries(NOT_INSTALLED, "pg_stat_statements is not installed in this database: " + ENABLE_HINT)
    columns = {r["attname"] for r in cat.rows(
        f"SELECT {TAG} attname FROM pg_attribute WHERE attrelid = to_regclass(%(view)s)"
        " AND attnum > 0 AND NOT attisdropped",
        {"view": f"{quote_ident(schema)}.pg_stat_statements"},
    )}
    try:
        chosen = choose_columns(columns)
    except LookupError as exc:
        return SlowQueries(UNREADABLE, f"cannot read pg_stat_statements {version}: {exc}", version)
    query = sql.SQL(
        "SELECT {tag} s.queryid, s.query, s.calls, s.{total} AS total_ms, s.{mean} AS mean_ms, s.rows"
        " FROM {schema}.pg_stat_statements s"
        " WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND s.calls > 0 AND s.query NOT LIKE {own}"
        " ORDER BY s.{mean} DESC LIMIT {limit}"
    ).format(tag=sql.SQL(TAG), total=sql.Identifier(chosen["total_ms"]), mean=sql.Identifier(chosen["mean_ms"]),
             schema=sql.Identifier(schema), own=sql.Literal(f"%{TAG}%"), limit=sql.Literal(limit))
    try:
        # A savepoint (or a transaction of its own): the failure below must not spoil the review's others.
        with cat.conn.transaction():
            rows = cat.rows(query.as_string(cat.conn))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return SlowQueries(NOT_PRELOADED, "pg_stat_statements is not preloaded: " + PRELOAD_HINT, version, chosen)
    except psycopg.errors.InsufficientPrivilege:
        return SlowQueries(UNREADABLE, "the bot's role may not read pg_stat_statements: "
                                       "GRANT pg_read_all_stats TO <bot role>", version, chosen)
    found = []
    for r in rows:
        text = " ".join((r["query"] or "").split())
        found.append({"queryid": str(r["queryid"]),
                      "query": text[:QUERY_TEXT_MAX] + ("…" if len(text) > QUERY_TEXT_MAX else ""),
                      "calls": int(r["calls"]), "mean_ms": round(float(r["mean_ms"]), 3),
                      "total_ms": round(float(r["total_ms"]), 3), "rows": int(r["rows"] or 0)})
    return SlowQueries(OK, "", version, chosen, found)


def table_rows(result: SlowQueries) -> list[list[Any]]:
    return [[f"{q['mean_ms']:.1f}", f"{q['calls']:,}", f"{q['total_ms']:.0f}", f"{q['rows']:,}", q["query"]]
            for q in result.rows]
