"""The copy the suggestions are proven on: the newest verified backup restored into a sandboxed
`TemporaryInstance` of the target's own PostgreSQL major, owned by `app_owner` as the rehearsal's copy
is (handlers.migrations.rehearsal: the same role, the same restore), then ANALYZEd.

Everything after the restore runs connected as app_owner (no superuser): ANALYZE, the candidate
indexes, the sampled values, every EXPLAIN. Statements run in READ ONLY transactions with a statement
timeout, through the extended protocol only (one statement per message: the server cannot split a text
the parser read as one). A failure is reported by SQLSTATE, never by its message: a message can quote
a row. Sampled values stay in this process's memory: they are never shown, logged or stored.
"""
from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ... import environment, schemas
from ...errors import Cancelled, DbopsError
from ...migrations.rehearsal import _create_app_role
from ...migrations.rehearsal.copy import restore_copy
from ...migrations.rehearsal.result import APP_ROLE, REHEARSAL_DB
from ...migrations.rehearsal.run import cancel_on, condition_name
from ...postgres import InstanceError, PgBinariesError, TemporaryInstance
from ...target import scrub
from .statements import Statement

ADVICE_PURPOSE = "advice"
PREPARED = "dbops_advice"
LIMIT_VALUE, OFFSET_VALUE = "20", "0"  # pg_stat_statements keeps no LIMIT/OFFSET constant
SAMPLE_SPARE = 4


class CopyFailed(Exception):
    """One statement failed on the copy: `sqlstate` and its condition name only."""

    def __init__(self, sqlstate: str | None) -> None:
        self.sqlstate = sqlstate or "unknown"
        super().__init__(f"SQLSTATE {self.sqlstate} ({condition_name(sqlstate)})")


class AdviceCopy:
    def __init__(self, major: int, work_dir: Path | None, jobs: int, statement_timeout_s: float,
                 cancel: threading.Event | None = None) -> None:
        self.major = major
        self.jobs = jobs
        self.timeout = f"{int(statement_timeout_s * 1000)}ms"
        self.cancel = cancel
        self.instance = TemporaryInstance(purpose=ADVICE_PURPOSE, parent=work_dir, major=major, settings={
            "maintenance_work_mem": "256MB", "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"})
        self.conn: psycopg.Connection | None = None
        self.version = ""
        self.hidden: list[str] = list(environment.secret_values())
        self.restore_problems: list[str] = []
        self.restore_s = 0.0
        self.analyze_s = 0.0
        self._watch = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, archive: Path) -> None:
        password = secrets.token_urlsafe(24)
        self.hidden.append(password)
        try:
            self.instance.start()
            self.hidden += self.instance.secrets()
            with psycopg.connect(self.instance.dsn(), autocommit=True) as admin:
                _create_app_role(admin, password)
        except PgBinariesError as exc:
            raise DbopsError(f"the copy needs PostgreSQL {self.major}, the target's major: {exc}") from None
        except (InstanceError, psycopg.Error) as exc:
            raise DbopsError(f"could not start the copy's PostgreSQL {self.major}: "
                             f"{scrub(str(exc), self.hidden)[:300]}") from None
        app_dsn = self.instance.dsn(REHEARSAL_DB, user=APP_ROLE, password=password)
        t0 = time.monotonic()
        problems = restore_copy(archive, self.instance.dsn(REHEARSAL_DB), app_dsn, Path(self.instance.path),
                                self.jobs, schema_only=False, cancel=self.cancel, major=self.major)
        self.restore_problems = [scrub(p, self.hidden) for p in problems]
        self.restore_s = time.monotonic() - t0
        self._stop_if_cancelled()
        self.conn = psycopg.connect(app_dsn, autocommit=True)
        self._watch = cancel_on(self.conn, self.cancel)
        self._watch.__enter__()
        self.version = self.conn.execute("SHOW server_version").fetchone()[0]
        t0 = time.monotonic()
        self.conn.execute("ANALYZE")  # the restore leaves no statistics: the planner would guess
        self.analyze_s = time.monotonic() - t0

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.__exit__(None, None, None)
            self._watch = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.instance.stop()

    def _stop_if_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("indexes suggest was cancelled")

    # -- what the planner knows ----------------------------------------------------------------
    def table_stats(self) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str, str], float],
                                   dict[tuple[str, str], int]]:
        """Rows per table and distinct values per column, as ANALYZE estimated them, and table sizes."""
        tables = self.conn.execute(
            f"""SELECT n.nspname, c.relname, c.reltuples, pg_table_size(c.oid)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'm') AND {schemas.not_system('n')}""").fetchall()
        rows = {(r[0], r[1]): max(float(r[2]), 0.0) for r in tables}
        sizes = {(r[0], r[1]): int(r[3] or 0) for r in tables}
        distinct = {}
        for schema, table, column, n_distinct in self.conn.execute(
                "SELECT schemaname, tablename, attname, n_distinct FROM pg_stats"
                " WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema'").fetchall():
            total = rows.get((schema, table), 0.0)
            distinct[(schema, table, column)] = -n_distinct * total if n_distinct < 0 else float(n_distinct)
        return rows, distinct, sizes

    # -- indexes -----------------------------------------------------------------------------------
    def create_index(self, name: str, table: tuple[str, str], columns: tuple[str, ...]) -> tuple[float, int]:
        """Build one index for real: (seconds, size in bytes)."""
        self._stop_if_cancelled()
        statement = sql.SQL("CREATE INDEX {} ON {}.{} ({})").format(
            sql.Identifier(name), sql.Identifier(table[0]), sql.Identifier(table[1]),
            sql.SQL(", ").join(map(sql.Identifier, columns)))
        t0 = time.monotonic()
        self._run(statement)
        seconds = time.monotonic() - t0
        size = self.conn.execute("SELECT pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n"
                                 " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                                 (table[0], name)).fetchone()[0]
        return seconds, int(size)

    def drop_index(self, schema: str, name: str) -> None:
        self._run(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))

    def _run(self, statement: sql.Composable) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (self.timeout,))
                self.conn.execute(statement)
        except psycopg.Error as exc:
            self._stop_if_cancelled()
            raise CopyFailed(exc.sqlstate) from None

    # -- plans ---------------------------------------------------------------------------------
    def generic_plan(self, stmt: Statement) -> dict[str, Any]:
        """The plan for any value of the `$n` (what EXPLAIN (GENERIC_PLAN) shows on 16+), through a
        prepared statement with plan_cache_mode = force_generic_plan: PREPARE goes through the extended
        protocol as one statement, where EXPLAIN (GENERIC_PLAN) would need the simple one."""
        nulls = sql.SQL(", ").join([sql.SQL("NULL")] * stmt.param_count)
        execute = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(sql.Identifier(PREPARED)) + \
            (sql.SQL("({})").format(nulls) if stmt.param_count else sql.SQL(""))
        prepared = False
        try:
            with self.conn.transaction():
                self._read_only()
                self.conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                self._raw(sql.SQL("PREPARE {} AS ").format(sql.Identifier(PREPARED)).as_string(self.conn)
                          + stmt.text, None)
                prepared = True  # a prepared statement outlives the transaction: deallocated below
                return self._raw(execute.as_string(self.conn), None).fetchone()[0][0]
        except psycopg.Error as exc:
            self._stop_if_cancelled()
            raise CopyFailed(exc.sqlstate) from None
        finally:
            if prepared:
                self.conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(PREPARED)))

    def plan(self, stmt: Statement, values: list[str | None], analyze: bool = False) -> dict[str, Any]:
        """EXPLAIN with real values bound to the `$n`; with ANALYZE (and BUFFERS) it runs: callers
        give only statements whose `runnable` is None."""
        if analyze and stmt.runnable is not None:
            raise ValueError(f"not run on the copy: {stmt.runnable}")
        options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
        try:
            with self.conn.transaction():
                self._read_only()
                return self._raw(f"EXPLAIN ({options}) {stmt.text}", values).fetchone()[0][0]
        except psycopg.Error as exc:
            self._stop_if_cancelled()
            raise CopyFailed(exc.sqlstate) from None

    def _read_only(self) -> None:
        self.conn.execute("SET TRANSACTION READ ONLY")
        self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (self.timeout,))

    def _raw(self, text: str, values: list[str | None] | None) -> psycopg.RawCursor:
        self._stop_if_cancelled()
        cur = psycopg.RawCursor(self.conn)
        cur.execute(text, values or None, prepare=True)  # prepared: the extended protocol, one statement
        return cur

    # -- real values ---------------------------------------------------------------------------
    def sample(self, stmt: Statement, count: int) -> list[list[str | None]] | None:
        """`count` value lists for the statement's `$n`, each column's value from a real row (the
        parameters of one FROM item from one row), never NULL; None when a `$n` cannot be given one."""
        if stmt.unmapped:
            return None
        by_source: dict[str, list] = {}
        for param in stmt.params.values():
            if param.table is not None:
                by_source.setdefault(param.source, []).append(param)
        rows: dict[str, list[tuple]] = {}
        for source, params in by_source.items():
            found = self._sample_rows(params, count)
            if not found:
                return None
            rows[source] = found
        samples = []
        for i in range(count):
            values: list[str | None] = []
            for n in range(1, stmt.param_count + 1):
                param = stmt.params[n]
                if param.form == "limit":
                    values.append(LIMIT_VALUE)
                elif param.form == "offset":
                    values.append(OFFSET_VALUE)
                else:
                    source_rows = rows[param.source]
                    row = source_rows[i % len(source_rows)]
                    values.append(row[by_source[param.source].index(param)])
            samples.append(values)
        return samples

    def _sample_rows(self, params: list, count: int) -> list[tuple]:
        table = params[0].table
        picks = [sql.SQL("ARRAY[{}]::text" if p.form == "array" else "{}::text").format(sql.Identifier(p.column))
                 for p in params]
        not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(p.column)) for p in params)
        rows = self.conn.execute("SELECT greatest(reltuples, 1) FROM pg_class WHERE oid = %s::regclass",
                                 (sql.Identifier(*table).as_string(self.conn),)).fetchone()[0]
        percent = min(100.0, 100.0 * count * SAMPLE_SPARE / rows)  # of the pages: a few rows more than needed
        base = sql.SQL("SELECT {} FROM {}.{}").format(sql.SQL(", ").join(picks), sql.Identifier(table[0]),
                                                     sql.Identifier(table[1]))
        queries = [base + sql.SQL(" TABLESAMPLE SYSTEM ({}) REPEATABLE (1) WHERE {} LIMIT {}").format(
            sql.Literal(percent), not_null, sql.Literal(count)),
            base + sql.SQL(" WHERE {} LIMIT {}").format(not_null, sql.Literal(count))]
        for query in queries:
            try:
                with self.conn.transaction():
                    self._read_only()
                    found = self.conn.execute(query).fetchall()
            except psycopg.Error as exc:
                self._stop_if_cancelled()
                raise CopyFailed(exc.sqlstate) from None
            if len(found) >= count or query is queries[-1]:
                return found
        return []
