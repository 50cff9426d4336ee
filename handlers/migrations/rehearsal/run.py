"""Running UP or DOWN on the copy as apply runs them, each statement timed and the relation locks it
took read from pg_locks; the downtime estimate from them."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import psycopg
from psycopg import sql

from handlers import schemas
from handlers.errors import Cancelled, DbopsError

from ..apply import Batch, error_text
from ..parsing import Statement
from ..session import SessionChanged, milliseconds, run_statement
from ..settings import RehearsalSettings
from .names import Nameable, made_by_dynamic_sql
from .result import BLOCKS_READS_AND_WRITES, BLOCKS_WRITES, LOCK_NAMES, PRIVATE_TEXT_LIMIT, cut, preview


@contextmanager
def cancel_on(conn: psycopg.Connection, cancel: threading.Event | None) -> Iterator[None]:
    """Cancel the running statement as soon as `cancel` is set, instead of after it."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if cancel.is_set():
                try:
                    conn.cancel_safe(timeout=5)
                except Exception:
                    pass
                return

    thread = threading.Thread(target=watch, daemon=True, name="rehearsal-cancel")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)



# -- running the statements ------------------------------------------------------------------

@dataclass
class BatchRun:
    statements: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    downtime: list[dict] = field(default_factory=list)
    every_row: list[dict] = field(default_factory=list)
    error: str | None = None  # channel-safe: line, SQLSTATE, condition name
    error_line: int | None = None
    error_statement: str | None = None
    error_sqlstate: str | None = None
    error_condition: str | None = None
    error_text: str | None = None  # private: the server's message, scrubbed and cut


_OWN_LOCKS = """
    SELECT l.mode, l.relation, c.oid IS NOT NULL AS known, coalesce(c.oid::regclass::text, ''), n.nspname, c.relname,
           c.relkind::text
    FROM pg_locks l
    LEFT JOIN pg_class c ON c.oid = l.relation
    LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (c.oid IS NULL OR (c.relkind IN ('r', 'p', 'm', 'f', 'v')
                             AND """ + schemas.not_system("n") + "))"


_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view", "v": "view", "f": "foreign table"}
_HIDDEN = "\0"  # starts the label of a relation that may not be named: "\0<kind>\0<oid>"


def _own_locks(conn: psycopg.Connection, names: dict[int, str], shown: Nameable) -> set[tuple[str, str]]:
    """(mode, relation) of the relation locks this session holds. A relation that existed before UP
    is named as it was then (`names`: a relation dropped or renamed since is still found); one UP made
    is named only when UP or DOWN spell its name out, else labelled by kind and oid (see names.py)."""
    held = set()
    for mode, oid, known, current, schema, relname, relkind in conn.execute(_OWN_LOCKS).fetchall():
        name = names.get(int(oid))
        if name is None:
            if not known:
                continue  # an index, or a table created and dropped within the migration
            name = current if shown.relation(schema, relname) else f"{_HIDDEN}{_KINDS[relkind]}{_HIDDEN}{oid}"
        held.add((mode, name))
    return held


def _lock_labels(locks: list[tuple[str, str]]) -> list[dict]:
    """The lock rows of one statement, relations UP made by dynamic SQL counted per mode and kind."""
    rows, hidden = [], {}
    for mode, relation in locks:
        if relation.startswith(_HIDDEN):
            kind = relation.split(_HIDDEN)[1]
            hidden[(mode, kind)] = hidden.get((mode, kind), 0) + 1
        else:
            rows.append({"mode": mode, "relation": relation})
    return rows + [{"mode": mode, "relation": made_by_dynamic_sql(kind, n)}
                   for (mode, kind), n in sorted(hidden.items())]


def run_batches(conn: psycopg.Connection, batches: list[Batch], settings: RehearsalSettings,
                names: dict[int, str], shown: Nameable, cancel: threading.Event | None, hidden: list[str]) -> BatchRun:
    run = BatchRun()
    limits = {"statement_timeout": settings.statement_timeout_s}
    timeout = f"{milliseconds(settings.statement_timeout_s)}ms"
    held_for: dict[tuple[str, str], float] = {}  # (relation, what it blocks) -> seconds held
    strongest: dict[tuple[str, str], str] = {}
    started = time.monotonic()
    for batch in batches:
        if batch.in_transaction:
            conn.execute("BEGIN")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
        else:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (timeout,))
        batch_locks: dict[tuple[str, str], float] = {}  # (relation, what it blocks) -> start of the statement
        held: set[tuple[str, str]] = set()
        for stmt in batch.statements:
            if cancel is not None and cancel.is_set():
                rollback(conn)
                raise Cancelled("the rehearsal was cancelled")
            rows_before = _rows_of_target(conn, stmt)
            t0 = time.monotonic()
            try:
                cursor, _ = run_statement(conn, stmt, limits, local=batch.in_transaction)
            except psycopg.Error as exc:
                run.statements.append(_row(stmt, time.monotonic() - t0, [], batch, failed=True))
                return _failed(conn, run, stmt, exc, cancel, started, hidden)
            except SessionChanged as changed:
                run.statements.append(_row(stmt, time.monotonic() - t0, [], batch, failed=True))
                return _refused(conn, run, stmt, f"line {stmt.line}: it changed how the server reads SQL text "
                                                 f"({changed.what}), which dbops stops at", started)
            seconds = time.monotonic() - t0
            if rows_before and cursor.rowcount >= rows_before[1]:
                run.every_row.append({"line": stmt.line, "kind": "DELETE" if stmt.kind == "DeleteStmt" else "UPDATE",
                                      "relation": rows_before[0], "rows": cursor.rowcount})
            new: list[tuple[str, str]] = []
            if batch.in_transaction:
                now_held = _own_locks(conn, names, shown)
                new = _strongest_per_relation(now_held - held)
                held = now_held
                for mode, relation in new:
                    blocks = _blocks(mode)
                    if blocks:
                        batch_locks.setdefault((relation, blocks), t0)
                        key = (relation, blocks)
                        if _rank(mode) > _rank(strongest.get(key, "")):
                            strongest[key] = mode
            run.statements.append(_row(stmt, seconds, new, batch))
        if batch.in_transaction:
            try:
                conn.execute("COMMIT")  # deferred constraints are checked here
            except psycopg.Error as exc:
                return _failed(conn, run, batch.statements[-1], exc, cancel, started, hidden, " (at COMMIT)")
        else:
            conn.execute("RESET statement_timeout")
        end = time.monotonic()
        for key, t0 in batch_locks.items():  # from the statement that took it to the commit
            held_for[key] = held_for.get(key, 0.0) + (end - t0)
    run.seconds = time.monotonic() - started
    run.downtime = _downtime(held_for, strongest)
    return run


def _rows_of_target(conn: psycopg.Connection, stmt: Statement) -> tuple[str, int] | None:
    """(table, rows) for a top-level DELETE or UPDATE, counted as the statement would see the table
    (ONLY or with its children); None for other statements, an empty table, or a table not counted."""
    if stmt.kind not in ("DeleteStmt", "UpdateStmt") or not stmt.node.get("relation"):
        return None
    rel = stmt.node["relation"]
    name = sql.Identifier(*[part for part in (rel.get("schemaname"), rel["relname"]) if part])
    only = sql.SQL("") if rel.get("inh") else sql.SQL("ONLY ")
    try:
        with conn.transaction():  # a savepoint inside UP's transaction: a failed count changes nothing
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}{}").format(only, name)).fetchone()[0]
    except psycopg.Error:
        return None
    label = f'"{rel["relname"]}"' if not rel.get("schemaname") else f'"{rel["schemaname"]}"."{rel["relname"]}"'
    return (label, rows) if rows else None


def _failed(conn: psycopg.Connection, run: BatchRun, stmt: Statement, exc: psycopg.Error,
            cancel: threading.Event | None, started: float, hidden: list[str], where: str = "") -> BatchRun:
    rollback(conn)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the rehearsal was cancelled") from None
    state, condition = exc.sqlstate, condition_name(exc.sqlstate)
    code = f"SQLSTATE {state or 'unknown'} ({condition})"
    if conn.closed:
        raise DbopsError(f"the rehearsal's PostgreSQL went away at line {stmt.line} ({code})") from None
    run.error = f"line {stmt.line}{where}: {code}"
    run.error_line, run.error_statement = stmt.line, preview(stmt.text)
    run.error_sqlstate, run.error_condition = state, condition
    run.error_text = cut(error_text(exc, hidden), PRIVATE_TEXT_LIMIT)
    run.seconds = time.monotonic() - started
    return run


def _refused(conn: psycopg.Connection, run: BatchRun, stmt: Statement, why: str, started: float) -> BatchRun:
    """A statement dbops stops at without a server error (it changed how the server reads SQL text)."""
    rollback(conn)
    run.error = why
    run.error_line, run.error_statement = stmt.line, preview(stmt.text)
    run.seconds = time.monotonic() - started
    return run


def _strongest_per_relation(locks: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """A statement that takes ACCESS EXCLUSIVE and SHARE on one table (ALTER TYPE rebuilding its indexes)
    is shown with the ACCESS EXCLUSIVE only: the weaker lock adds nothing."""
    best: dict[str, str] = {}
    for mode, relation in locks:
        if _rank(mode) > _rank(best.get(relation, "")):
            best[relation] = mode
    return sorted((mode, relation) for relation, mode in best.items())


def _downtime(held_for: dict[tuple[str, str], float], strongest: dict[tuple[str, str], str]) -> list[dict]:
    """One entry per relation and what it blocks; "writes" only when writes were blocked longer than reads.
    Relations made by dynamic SQL are one entry per kind and what they block: the longest, counted."""
    entries, hidden = [], {}
    for (relation, blocks), seconds in held_for.items():
        if blocks == "writes" and held_for.get((relation, "reads and writes"), -1.0) >= seconds:
            continue
        entry = {"relation": relation, "mode": LOCK_NAMES[strongest[(relation, blocks)]],
                 "seconds": round(seconds, 3), "blocks": blocks}
        if relation.startswith(_HIDDEN):
            key = (relation.split(_HIDDEN)[1], blocks)
            count, longest = hidden.get(key, (0, entry))
            order = list(LOCK_NAMES.values())
            hidden[key] = (count + 1, max(longest, entry, key=lambda e: (e["seconds"], order.index(e["mode"]))))
        else:
            entries.append(entry)
    for (kind, _), (count, longest) in hidden.items():
        entries.append({**longest, "relation": made_by_dynamic_sql(kind, count)})
    entries.sort(key=lambda e: (-e["seconds"], e["relation"]))
    return entries


def _blocks(mode: str) -> str | None:
    if mode in BLOCKS_READS_AND_WRITES:
        return "reads and writes"
    if mode in BLOCKS_WRITES:
        return "writes"
    return None


def _rank(mode: str) -> int:
    order = list(LOCK_NAMES)
    return order.index(mode) if mode in order else -1


def _row(stmt: Statement, seconds: float, locks: list[tuple[str, str]], batch: Batch, failed: bool = False) -> dict:
    row = {"line": stmt.line, "statement": preview(stmt.text), "seconds": round(seconds, 3),
           "locks": _lock_labels(locks), "outside_transaction": not batch.in_transaction}
    if failed:
        row["failed"] = True
    return row


def rollback(conn: psycopg.Connection) -> None:
    try:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass



def condition_name(sqlstate: str | None) -> str:
    """PostgreSQL's condition name for a SQLSTATE, e.g. "insufficient_privilege" for 42501."""
    if not sqlstate:
        return "unknown"
    try:
        cls = psycopg.errors.lookup(sqlstate)
    except KeyError:
        return "unknown"
    codes = getattr(psycopg.errors, "_sqlcodes", {})
    for name, known in codes.items():
        if known is cls and not re.fullmatch(r"[0-9A-Z]{5}", name):
            return name.lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
