"""EF Core's own ledger beside the bot's: `migrate status` lists the migrations the target's
"__EFMigrationsHistory" records, and names those no applied request of the bot records (applied
with `dotnet ef database update`, or by hand: nobody approved them here)."""
from __future__ import annotations

from handlers.errors import DbopsError
from handlers.report import Note, Section, Table

from ...core.approvals.book import ApprovalBook, RequestStatus
from ...core.registry import Invocation

SHOWN = 10  # the newest; the count says how many more the table holds
OUTSIDE = "outside dbops"


def ef_history(inv: Invocation, book: ApprovalBook) -> tuple[list[Section], dict, str]:
    """The section listing the target's EF migrations (none when no target is configured or it has no
    history table), its data for JSON, and what the summary adds (migrations applied outside the bot)."""
    import psycopg

    from handlers.migrations.efcore import HISTORY_TABLE, applied_history

    if not inv.settings.targets:
        return [], {}, ""
    name = inv.target_name
    try:
        with inv.target.connect() as conn:
            conn.read_only = True
            history = applied_history(conn)
    except (DbopsError, psycopg.Error) as exc:  # the bot's ledger is shown all the same
        reason = exc if isinstance(exc, DbopsError) else f"SQLSTATE {exc.sqlstate or 'unknown'}"
        return ([Section(f"EF Core migrations on `{name}`",
                         notes=[Note.warning(f"\"{HISTORY_TABLE}\" could not be read ({reason})")])],
                {"ef_history": None}, "")
    if history is None:
        return [], {}, ""
    by_request = recorded_by_requests(book, name)
    rows = [[h.migration_id, h.product_version, by_request.get(h.migration_id, OUTSIDE)] for h in history]
    outside = [row[0] for row in rows if row[2] == OUTSIDE]
    data = {"ef_history": [dict(zip(("migration_id", "product_version", "applied_by"), row)) for row in rows]}
    if not rows:
        return [Section(f"EF Core migrations on `{name}`", text=f"\"{HISTORY_TABLE}\" is empty")], data, ""
    more = f"; {len(rows) - SHOWN} older not shown" if len(rows) > SHOWN else ""
    text = (f"{len(rows)} recorded in \"{HISTORY_TABLE}\", newest first{more}. "
            + (f"{len(outside)} applied outside dbops: no applied request records them (`dotnet ef database "
               "update` or by hand)" if outside else "every one was applied through an approved request"))
    section = Section(f"EF Core migrations on `{name}`", text=text, table=Table(
        ["MigrationId", "ProductVersion", "applied by"], rows[:SHOWN]))
    said = f"{len(outside)} EF migration{'s' if len(outside) != 1 else ''} applied outside dbops" if outside else ""
    return [section], data, said


def recorded_by_requests(book: ApprovalBook, target: str) -> dict[str, str]:
    """The EF migration ids each applied migration request's UP records, with the request's code."""
    from handlers.migrations.efcore import recorded_migrations
    from handlers.migrations.parsing import parse_statements

    found: dict[str, str] = {}
    for req in book.with_status(RequestStatus.APPLIED):
        if req.kind != "migration" or req.target != target or not req.payload.get("up"):
            continue
        try:
            ids = recorded_migrations(parse_statements(req.payload["up"], "UP"))
        except DbopsError:  # what once applied parses; a request that does not records no id
            continue
        for mid in ids:
            found.setdefault(mid, f"request {req.code}")
    return found
