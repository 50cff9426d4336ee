"""check_migration: parse once, replay the schema, ask the database a constant number of
questions, then hand each statement to the rules that look at its kind."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from handlers.errors import DbopsError, UsageError
from handlers.gcpause import gc_paused

from .context import DroppedColumn, MigrationContext, classify_type_changes
from .efcore import see_through_guards
from .lexing import refuse_lexing_changes
from .model import Finding, MigrationCheck, Severity
from .parsing import Statement, parse_statements, starts_with_bom
from .rule import Hit, Rule
from .rules import file_rules, rules_by_kind
from .rules.type_table import Change
from .settings import MigrationCheckSettings
from .timeline import not_null_tables, replay, touched_tables

# psycopg (and the queries for the target's facts) are imported only when there is a database to ask:
# a check without one, the usual `dbops migrate check` in CI, needs only the parser and the rules.
if TYPE_CHECKING:
    import psycopg

_NO_IGNORE_NOTE = " (a dbops:ignore comment cannot silence a forbidden finding)"


def check_migration(
    up_sql: str,
    down_sql: str | None = None,
    conn: psycopg.Connection | None = None,
    filename: str = "UP.sql",
    down_filename: str = "DOWN.sql",
    settings: MigrationCheckSettings | None = None,
) -> MigrationCheck:
    """Check a migration against dbops's migration rules (one per file in handlers/migrations/rules/).

    With `conn`, column types, whether dropped columns hold data, and how many rows would not
    fit a narrower type come from that database (a constant number of queries, in one
    transaction). Raises UsageError when UP or DOWN does not parse, naming the file and line
    (or the byte offset of a NUL or other binary byte), when UP has no statements,
    and DbopsError when the database cannot answer (e.g. the row count hits the timeout)."""
    with gc_paused():
        return _check(up_sql, down_sql, conn, filename, down_filename, settings or MigrationCheckSettings())


def _check(up_sql: str, down_sql: str | None, conn: psycopg.Connection | None, filename: str,
           down_filename: str, settings: MigrationCheckSettings) -> MigrationCheck:
    parsed = parse_statements(up_sql, filename)
    if not parsed:
        raise UsageError(f"{filename} has no SQL statements (it is empty or holds only comments)")
    refuse_lexing_changes(parsed, filename)  # a DO block's body too, so also what an EF guard wraps
    statements = see_through_guards(parsed)  # EF Core's guard blocks are analysed as what they guard
    down_parsed = parse_statements(down_sql, down_filename) if down_sql is not None else None
    refuse_lexing_changes(down_parsed or [], down_filename)
    down = see_through_guards(down_parsed) if down_parsed is not None else None
    # DOWN is analysed as what runs after UP: one replay of both, DOWN's statements numbered after UP's.
    both = statements + [dataclasses.replace(s, index=s.index + len(statements)) for s in down or ()]
    estimates = None
    if conn is None:
        ctx = _context(both, len(statements), down, filename, down_filename, {}, None)
    else:
        import psycopg

        from . import facts

        try:
            with conn.transaction():
                conn.execute("SELECT set_config('statement_timeout', %s, true)",
                             (f"{int(settings.fact_timeout_seconds * 1000)}ms",))
                columns = facts.fetch_column_types(conn, touched_tables(both))
                ctx = _context(both, len(statements), down, filename, down_filename, columns, conn)
                estimates = facts.estimate_rows(conn, ctx)
        except psycopg.errors.QueryCanceled:
            raise DbopsError(
                f"reading the target database for {filename} took longer than {settings.fact_timeout_seconds:g}s "
                "(counting rows that would not fit a narrower type scans whole tables); raise "
                "migrate.check.fact_timeout_seconds or check without a database") from None
        except psycopg.Error as exc:
            detail = exc.diag.message_primary or type(exc).__name__
            raise DbopsError(f"reading the target database for {filename} failed: {detail}") from None

    result = MigrationCheck(filename, hashlib.sha256(up_sql.encode("utf-8")).hexdigest(), len(parsed))
    result.findings = run_rules(ctx, frozenset(settings.disabled))
    if down:
        result.findings[:0] = down_findings(ctx, both, frozenset(settings.disabled))
    result.estimates = estimates
    for name, sql in ((filename, up_sql), (down_filename, down_sql)):
        if sql is not None and starts_with_bom(sql):
            result.findings.insert(0, Finding(
                code="byte-order-mark", severity=Severity.INFO, line=1, statement="",
                message=f"{name} starts with a UTF-8 byte order mark: dbops leaves it out (it is not SQL); "
                        "the SHA-256 is of the file as it is",
                hint="Save the file as UTF-8 without BOM (in Visual Studio: File > Save As > Save with Encoding)."))
    return result


def down_findings(ctx: MigrationContext, both: list[Statement], disabled: frozenset[str]) -> list[Finding]:
    """DOWN's forbidden findings, as what runs after UP (dropping a column UP added is no loss of old
    data; dropping a table with its rows is): a DOWN is run in production when UP is rolled back.
    Its warnings are left out: DOWN is rehearsed, never applied by the bot. Each is a finding about
    the whole request (line 0) that names DOWN's file and line."""
    down_ctx = dataclasses.replace(ctx, statements=both, filename=ctx.down_filename, down=[])
    found = []
    for f in run_rules(down_ctx, disabled, first=len(ctx.statements)):
        if f.severity is Severity.FORBIDDEN:
            found.append(dataclasses.replace(f, line=0, message=f"{ctx.down_filename} line {f.line}: {f.message}"))
    return found


def _context(statements: list[Statement], up_count: int, down: list[Statement] | None, filename: str,
             down_filename: str, columns: dict, conn: psycopg.Connection | None) -> MigrationContext:
    """Replay UP and DOWN (the first `up_count` of `statements` are UP's) over the catalog's columns
    (and, for tables they set NOT NULL or add a primary key to, their NOT NULL columns, checks and
    indexes), classify type changes, and (with a database) ask whether dropped columns hold data and
    how many rows would not fit a narrower type. The context is UP's; down_findings() widens it to DOWN."""
    constraints: dict = {}
    if conn is not None:
        from . import facts

        constraints = facts.fetch_constraints(conn, not_null_tables(statements))
    timeline = replay(statements, columns, constraints, new_session_at=up_count)
    ctx = MigrationContext(
        filename=filename, statements=statements[:up_count], timeline=timeline, down=down,
        down_filename=down_filename, has_database=conn is not None, catalog_tables=frozenset(columns),
        server_version=conn.info.server_version if conn is not None else None,
        type_changes=classify_type_changes(timeline, frozenset(columns), conn is not None),
    )
    drops = ctx.timeline.dropped_columns
    with_data: dict = {}
    if conn is not None:
        from . import facts

        with_data = facts.fetch_columns_with_data(conn, [s.db for s in drops.values() if s.db])
        narrowing = [c for c in ctx.type_changes.values() if c.change is Change.NARROWING and c.site.db]
        counts = facts.fetch_misfit_counts(
            conn, [(c.site.db[0], c.site.db[1], c.classification.misfit) for c in narrowing])
        for change, count in zip(narrowing, counts):
            change.misfit_rows = count
    ctx.dropped_columns = {
        key: DroppedColumn(site, with_data.get(site.db) if site.db else None) for key, site in drops.items()
    }
    return ctx


def run_rules(ctx: MigrationContext, disabled: frozenset[str] = frozenset(), first: int = 0) -> list[Finding]:
    """Findings for ctx.statements[first:] (the earlier ones are only there to be replayed)."""
    findings: list[Finding] = []
    by_kind = rules_by_kind()
    done_once: set[str] = set(disabled)  # codes not to run (again)
    for stmt in ctx.statements[first:]:
        rules = by_kind.get(stmt.kind)
        if not rules:
            continue
        subtypes = None
        if stmt.kind == "AlterTableStmt":
            subtypes = {c["AlterTableCmd"].get("subtype") for c in stmt.node.get("cmds", ()) if "AlterTableCmd" in c}
        for rule in rules:
            if rule.code in done_once or (subtypes is not None and rule.cmds and subtypes.isdisjoint(rule.cmds)):
                continue
            for hit in rule.check(stmt, ctx):
                finding = _finding(rule, stmt, hit)
                if finding is not None:
                    findings.append(finding)
                    if rule.once_per_file:
                        done_once.add(rule.code)
                        break
    for rule in file_rules():
        if rule.code in disabled:
            continue
        for stmt, hit in rule.check(ctx):
            if first and (stmt is None or stmt.index < first):
                continue
            finding = _finding(rule, stmt, hit)
            if finding is not None:
                findings.append(finding)
    findings.sort(key=lambda f: f.line)  # stable: rule order stays within a line
    return findings


def _finding(rule: Rule, stmt: Statement | None, hit: Hit | str) -> Finding | None:
    if isinstance(hit, str):
        hit = Hit(hit)
    severity = hit.severity or rule.severity
    message = hit.message
    if stmt is not None and rule.code in stmt.ignored:
        if severity is not Severity.FORBIDDEN:
            return None
        message += _NO_IGNORE_NOTE
    migration = stmt.guard.migration_id if stmt is not None and stmt.guard is not None else ""
    if migration:
        message += f" (EF migration {migration})"
    return Finding(
        code=rule.code,
        severity=severity,
        line=stmt.line if stmt is not None else 0,
        statement=stmt.text if stmt is not None else "",
        message=message,
        hint=hit.hint or rule.hint,
        migration=migration,
    )
