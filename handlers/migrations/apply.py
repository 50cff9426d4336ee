"""Applying an approved UP migration to the target: one transaction, lock and statement timeouts,
lock timeouts retried with backoff, and statements that cannot run in a transaction run alone.

Why batches: `CREATE INDEX CONCURRENTLY` and a few others refuse to run inside a transaction
block, so the file is cut into batches: each run of ordinary statements is one transaction, and
each such statement is a batch of its own in autocommit. Everything in one transactional batch
commits or rolls back together; a batch that committed stays applied when a later one fails,
which the result says plainly (`committed_before_failure`).

The rehearsal (rehearsal.py) runs the same batches, so what it measures is what apply does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from psycopg import sql

from handlers import fmt
from handlers.errors import TargetUnreachable, UsageError
from handlers.report import Outcome, Progress, ProgressFn, Report, Section, Table, no_progress
from handlers.target import Target, dsn_secrets, scrub

from .lexing import refuse_lexing_changes
from .nodes import alter_table_cmds
from .parsing import Statement, parse_statements
from .session import SessionChanged, milliseconds, pin_session, run_statement
from .settings import ApplySettings

STATEMENT_PREVIEW = 200
LOCK_NOT_AVAILABLE = "55P03"


# -- which statements cannot run in a transaction -------------------------------------------

def outside_transaction_reason(stmt: Statement, later: list[Statement]) -> str | None:
    """Why `stmt` must run alone in autocommit (None: it can run in the transaction).

    `later` are the statements after it: an enum value added by ALTER TYPE ... ADD VALUE cannot be
    used in the transaction that added it, so it runs alone only when a later statement uses it."""
    kind, node = stmt.kind, stmt.node
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY cannot run inside a transaction"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY cannot run inside a transaction"
    if kind == "ReindexStmt":
        if any(p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", ())):
            return "REINDEX CONCURRENTLY cannot run inside a transaction"
        if node.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return "REINDEX SYSTEM/DATABASE cannot run inside a transaction"
    if kind == "VacuumStmt" and node.get("is_vacuumcmd"):
        return "VACUUM cannot run inside a transaction"
    if kind == "AlterTableStmt":
        for _, cmd in alter_table_cmds(node):
            if cmd.get("subtype") == "AT_DetachPartition" and cmd.get("def", {}).get("PartitionCmd", {}).get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY cannot run inside a transaction"
    simple = {
        "AlterSystemStmt": "ALTER SYSTEM cannot run inside a transaction",
        "CreatedbStmt": "CREATE DATABASE cannot run inside a transaction",
        "DropdbStmt": "DROP DATABASE cannot run inside a transaction",
        "CreateTableSpaceStmt": "CREATE TABLESPACE cannot run inside a transaction",
        "DropTableSpaceStmt": "DROP TABLESPACE cannot run inside a transaction",
        "CreateSubscriptionStmt": "CREATE SUBSCRIPTION (with a slot) cannot run inside a transaction",
        "DropSubscriptionStmt": "DROP SUBSCRIPTION (with a slot) cannot run inside a transaction",
    }
    if kind in simple:
        return simple[kind]
    if kind == "AlterEnumStmt" and "oldVal" not in node and node.get("newVal"):
        value = node["newVal"]
        if any(_uses_string(s.node, value) for s in later):
            return (f"the enum value '{value}' it adds is used by a later statement, which a transaction "
                    "cannot do before the ADD VALUE commits")
    return None


def _uses_string(node: Any, value: str) -> bool:
    """Does a string constant equal to `value` appear anywhere in this parse tree?"""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            const = item.get("A_Const")
            if isinstance(const, dict) and const.get("sval", {}).get("sval") == value:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@dataclass
class Batch:
    statements: list[Statement]
    in_transaction: bool
    reason: str = ""  # why it runs alone in autocommit

    @property
    def lines(self) -> list[int]:
        return [s.line for s in self.statements]


def _transaction_control(stmt: Statement) -> bool:
    return stmt.kind == "TransactionStmt"


def plan_batches(statements: list[Statement], filename: str = "UP.sql") -> list[Batch]:
    """Cut the file into batches. BEGIN/COMMIT in the file are dropped (the bot opens and commits the
    transaction itself); ROLLBACK, SAVEPOINT and two-phase commands are refused, and so is any statement
    that names a setting changing how the server reads SQL text (lexing.py)."""
    refuse_lexing_changes(statements, filename)
    for stmt in statements:
        if _transaction_control(stmt) and stmt.node.get("kind") not in ("TRANS_STMT_BEGIN", "TRANS_STMT_START",
                                                                        "TRANS_STMT_COMMIT"):
            raise UsageError(f"{filename} line {stmt.line}: `{_preview(stmt.text, 60)}` controls the transaction; "
                             "dbops runs the migration in its own transaction: remove it")
    kept = [s for s in statements if not _transaction_control(s)]
    batches: list[Batch] = []
    for i, stmt in enumerate(kept):
        reason = outside_transaction_reason(stmt, kept[i + 1:])
        if reason:
            batches.append(Batch([stmt], in_transaction=False, reason=reason))
        elif batches and batches[-1].in_transaction:
            batches[-1].statements.append(stmt)
        else:
            batches.append(Batch([stmt], in_transaction=True))
    return batches


def _preview(text: str, limit: int = STATEMENT_PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_text(exc: psycopg.Error, secrets: list[str] = ()) -> str:
    """The server's own message (primary text only: details can quote row values), no secrets."""
    diag = getattr(exc, "diag", None)
    message = diag.message_primary if diag is not None else None
    if not message:
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else type(exc).__name__
    return scrub(message, list(secrets))


# -- the result ------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    target: str  # the target's name (never its DSN)
    ok: bool = False
    aborted: bool = False
    duration_s: float = 0.0
    attempts: int = 1  # 1 + the number of lock-timeout retries made
    statements_applied: int = 0  # statements committed
    statement_count: int = 0
    failed_line: int | None = None
    failed_statement: str | None = None
    error: str | None = None
    committed_before_failure: list[int] = field(default_factory=list)  # lines committed outside the failing batch
    notes: list[str] = field(default_factory=list)
    statements: list[dict] = field(default_factory=list)  # [{line, statement, seconds, outside_transaction}]

    @property
    def summary(self) -> str:
        if self.aborted:
            return "aborted before any statement ran: nothing was applied."
        retried = f", after {self.attempts - 1} lock-timeout retr{'y' if self.attempts == 2 else 'ies'}" \
            if self.attempts > 1 else ""
        if self.ok:
            return (f"applied {fmt.plural(self.statements_applied, 'statement')} "
                    f"to `{self.target}` in {self.duration_s:.2f} s{retried}.")
        text = f"FAILED at line {self.failed_line}: {self.error}."
        if self.committed_before_failure:
            lines = ", ".join(str(n) for n in self.committed_before_failure)
            many = len(self.committed_before_failure) > 1
            text += (f" NOT fully rolled back: line{'s' if many else ''} {lines} committed before the failing "
                     "transaction began (a statement that cannot run in a transaction, such as CREATE INDEX "
                     f"CONCURRENTLY, splits the migration) and stay{'' if many else 's'} applied; the failing "
                     "transaction was rolled back.")
        else:
            text += " Rolled back: nothing was applied."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "ok": self.ok, "aborted": self.aborted, "duration_s": round(self.duration_s, 3),
            "attempts": self.attempts, "statements_applied": self.statements_applied,
            "statement_count": self.statement_count, "failed_line": self.failed_line,
            "failed_statement": self.failed_statement, "error": self.error,
            "committed_before_failure": list(self.committed_before_failure), "notes": list(self.notes),
            "statements": [dict(s) for s in self.statements],
        }

    def to_report(self) -> Report:
        sections = []
        if self.failed_line is not None:
            sections.append(Section("Failed statement", text=f"line {self.failed_line}: {self.failed_statement}\n"
                                                              f"error: {self.error}"))
        if self.statements:
            sections.append(Section("Statements", table=Table(  # the statement last: it wraps under itself
                ["line", "seconds", "ran", "statement"],
                [[s["line"], s["seconds"], "alone (autocommit)" if s["outside_transaction"] else "in transaction",
                  s["statement"]] for s in self.statements])))
        if self.notes:
            sections.append(Section("Notes", text="\n".join(f"• {n}" for n in self.notes)))
        return Report(title=f"Apply migration to {self.target}", summary=self.summary,
                      outcome=Outcome.OK if self.ok else Outcome.FAILED, sections=sections, data=self.to_dict())


class _LockTimeout(Exception):
    def __init__(self, stmt: Statement, message: str) -> None:
        self.stmt, self.message = stmt, message


class _StatementFailed(Exception):
    def __init__(self, stmt: Statement, message: str) -> None:
        self.stmt, self.message = stmt, message


# -- applying --------------------------------------------------------------------------------

def apply_migration(target: Target, up_sql: str, settings: ApplySettings, progress: ProgressFn = no_progress,
                    before_first_statement: Callable[[], bool] | None = None,
                    filename: str = "UP.sql", mark: tuple[str, tuple] | None = None) -> ApplyResult:
    """Apply `up_sql` to `target` (see the module docstring). Raises UsageError when the SQL does not
    parse or controls its own transaction, TargetUnreachable when the target cannot be reached; a
    failing statement is reported in the result, not raised.

    `mark` (SQL, parameters) runs in the last batch's transaction just before its COMMIT, so it is
    committed exactly when the migration is: a caller that crashed can ask the target whether the
    change landed. When the last batch cannot run in a transaction, it runs right after it."""
    statements = parse_statements(up_sql, filename)
    batches = plan_batches(statements, filename)
    result = ApplyResult(target=target.name, statement_count=sum(len(b.statements) for b in batches))
    secrets = dsn_secrets(target.dsn)
    started = time.monotonic()
    with target.connect(autocommit=True) as conn:
        try:
            pin_session(conn)
        except (psycopg.Error, SessionChanged) as exc:
            message = error_text(exc, secrets) if isinstance(exc, psycopg.Error) else str(exc)
            raise TargetUnreachable(f"target `{target.name}`: the session could not be prepared ({message}); "
                                    "nothing was applied") from None
        if before_first_statement is not None and not before_first_statement():
            result.aborted = True
            result.duration_s = time.monotonic() - started
            return result
        done = 0
        for number, batch in enumerate(batches, 1):
            last_mark = mark if number == len(batches) and batch.in_transaction else None
            try:
                timings = _run_with_retries(conn, batch, settings, result, progress, done, secrets, last_mark)
            except _StatementFailed as failed:
                result.failed_line = failed.stmt.line
                result.failed_statement = _preview(failed.stmt.text)
                result.error = failed.message
                result.committed_before_failure = [line for b in batches[:number - 1] for line in b.lines]
                break
            done += len(batch.statements)
            result.statements_applied = done
            result.statements += timings
        else:
            result.ok = True
            if mark is not None and batches and not batches[-1].in_transaction:
                try:
                    conn.execute(mark[0], mark[1])
                except psycopg.Error as exc:
                    result.notes.append(f"the migration was applied, but its mark could not be written "
                                        f"({error_text(exc, secrets)})")
    result.duration_s = time.monotonic() - started
    return result


def _run_with_retries(conn: psycopg.Connection, batch: Batch, settings: ApplySettings, result: ApplyResult,
                      progress: ProgressFn, done: int, secrets: list[str],
                      mark: tuple[str, tuple] | None = None) -> list[dict]:
    retries = 0
    while True:
        try:
            return _run_batch(conn, batch, settings, result, progress, done, secrets, mark)
        except _LockTimeout as timeout:
            if retries >= settings.lock_retries:
                tries = retries + 1
                raise _StatementFailed(timeout.stmt, (
                    f"{timeout.message}: no lock within {settings.lock_timeout_s:g} s (lock_timeout), "
                    f"{fmt.plural(tries, 'attempt')}; a long transaction or query holds a conflicting "
                    "lock: try again when it is done")) from None
            wait = settings.retry_backoff_s * (2 ** retries)
            retries += 1
            result.attempts += 1
            progress(Progress("apply", None, f"line {timeout.stmt.line}: lock timeout, retry {retries} of "
                                             f"{settings.lock_retries} in {wait:g} s"))
            time.sleep(wait)


def _run_batch(conn: psycopg.Connection, batch: Batch, settings: ApplySettings, result: ApplyResult,
               progress: ProgressFn, done: int, secrets: list[str],
               mark: tuple[str, tuple] | None = None) -> list[dict]:
    limits = {"lock_timeout": settings.lock_timeout_s, "statement_timeout": settings.statement_timeout_s}
    timeouts = [(name, f"{milliseconds(seconds)}ms") for name, seconds in limits.items()]
    timings = []
    if batch.in_transaction:
        conn.execute("BEGIN")
        for name, value in timeouts:
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))  # SET LOCAL: gone at commit
    else:
        for name, value in timeouts:
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    stmt = batch.statements[0]
    cleanup: _InvalidIndexCleanup | None = None
    try:
        for i, stmt in enumerate(batch.statements):
            progress(Progress("apply", (done + i) / max(result.statement_count, 1),
                              f"line {stmt.line}: {_preview(stmt.text, 80)}"))
            cleanup = _InvalidIndexCleanup(conn, stmt, batch, result, settings)
            with cleanup:
                t0 = time.monotonic()
                _, repinned = run_statement(conn, stmt, limits, local=batch.in_transaction)
            for name in repinned:
                result.notes.append(f"line {stmt.line} switched off or raised {name}: the apply set it back to "
                                    f"its own {limits[name]:g} s (migrate.apply)")
            timings.append({"line": stmt.line, "statement": _preview(stmt.text),
                            "seconds": round(time.monotonic() - t0, 3), "outside_transaction": not batch.in_transaction})
        if batch.in_transaction:
            if mark is not None:
                conn.execute(mark[0], mark[1])
            conn.execute("COMMIT")
    except SessionChanged as changed:
        _rollback(conn)
        raise _StatementFailed(stmt, str(changed)) from None
    except psycopg.Error as exc:
        _rollback(conn)
        message = error_text(exc, secrets)
        if isinstance(exc, psycopg.OperationalError) and conn.closed:
            raise _StatementFailed(stmt, f"the connection to the database was lost ({message}); check with "
                                         "`migrate status` whether the transaction committed") from None
        if cleanup is not None and cleanup.left_invalid:
            raise _StatementFailed(stmt, f"{message}; it left an invalid index {cleanup.name} that could not be "
                                         "dropped, so it was not retried: drop that index, then apply again") from None
        if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise _LockTimeout(stmt, message) from None
        raise _StatementFailed(stmt, message) from None
    finally:
        if not batch.in_transaction and not conn.closed:
            try:
                conn.execute("RESET lock_timeout")
                conn.execute("RESET statement_timeout")
            except psycopg.Error:
                pass
    return timings


def _rollback(conn: psycopg.Connection) -> None:
    if conn.closed:
        return
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


class _InvalidIndexCleanup:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind (it commits its catalog entry
    before building): drop it, when this statement created it, so a retry or a re-run can create it.

    DROP INDEX CONCURRENTLY waits for the same transactions the build waited for, so it gets up to
    statement_timeout for its locks rather than lock_timeout; the invalid index slows every write
    to the table until it is gone."""

    def __init__(self, conn: psycopg.Connection, stmt: Statement, batch: Batch, result: ApplyResult,
                 settings: ApplySettings) -> None:
        self.conn, self.stmt, self.result, self.settings = conn, stmt, result, settings
        self.name = _concurrent_index_name(stmt) if not batch.in_transaction else None
        self.existed = False
        self.left_invalid = False

    def __enter__(self) -> None:
        if self.name:
            self.existed = self._regclass() is not None

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.name or exc_type is None or self.existed or self.conn.closed:
            return
        try:
            oid = self._regclass()
            if oid is None:
                return
            valid = self.conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s", (oid,)).fetchone()
            if valid is None or valid[0]:
                return
            self.conn.execute("SELECT set_config('lock_timeout', %s, false)",
                              (f"{int(self.settings.statement_timeout_s * 1000)}ms",))
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(self.name)))
            self.result.notes.append(f"line {self.stmt.line}: the failed CREATE INDEX CONCURRENTLY left an invalid "
                                     f"index {self.name}; it was dropped")
        except psycopg.Error as cleanup_error:
            self.left_invalid = True
            self.result.notes.append(f"line {self.stmt.line}: the failed CREATE INDEX CONCURRENTLY left an invalid "
                                     f"index {self.name} that could not be dropped ({error_text(cleanup_error)}): "
                                     f"drop it with DROP INDEX CONCURRENTLY {self.name}")

    def _regclass(self):
        row = self.conn.execute("SELECT to_regclass(%s)::oid", (self.name,)).fetchone()
        return row[0] if row else None


def _concurrent_index_name(stmt: Statement) -> str | None:
    """The (quoted, schema-qualified as written) name of a CREATE INDEX CONCURRENTLY's index."""
    if stmt.kind != "IndexStmt" or not stmt.node.get("idxname"):
        return None
    ident = sql.Identifier(stmt.node["idxname"])
    schema = stmt.node.get("relation", {}).get("schemaname")  # an index lives in its table's schema
    parts = [sql.Identifier(schema), ident] if schema else [ident]
    return sql.SQL(".").join(parts).as_string(None)


__all__ = ["ApplyResult", "ApplySettings", "Batch", "apply_migration", "outside_transaction_reason", "plan_batches"]
