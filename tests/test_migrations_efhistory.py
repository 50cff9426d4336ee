"""`migrate status` beside EF Core's own ledger: the target's "__EFMigrationsHistory", newest first, each
migration with the applied request that recorded it or "outside dbops"; no table says nothing; a target
that cannot be reached is a note under the bot's ledger, not a failure. On real PostgreSQL."""
from __future__ import annotations

import json

import psycopg

from tests.test_golden import dbops

EF_UP = ('START TRANSACTION;\nALTER TABLE "Notes" ADD "Color" text;\n'
         'INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion")\n'
         "VALUES ('20261201090000_AddNoteColor', '9.0.4');\nCOMMIT;\n")
DEMO_HISTORY = ["20251020111907_AddAuditLogs", "20250907164233_AddProjects", "20250611080521_AddIndexCards",
                "20250302151144_AddBoards", "20250114093012_InitialCreate"]


def status(dsn: str, **env: str) -> dict:
    return json.loads(dbops(["migrate", "status", "--format", "json"], 100, DATABASE_URL=dsn, **env))


def record_applied(dsn: str, up: str) -> None:
    """An applied request as the applier leaves it (the state store's own tables, made by the first command)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""INSERT INTO dbops.approval_requests (kind, name, target, sha256, payload, requires_approval,
                            required_approvals, requested_by, status, status_detail, expires_at)
                        VALUES ('migration', 'add-note-color', 'prod', %s, %s, true, 1, 'U0ALICE', 'applied',
                                'applied in 0.2 s', now() + interval '1 day')""",
                     ("7" * 64, json.dumps({"up": up, "down": None})))
        conn.execute("""INSERT INTO "__EFMigrationsHistory" VALUES ('20261201090000_AddNoteColor', '9.0.4'),
                                                                   ('20261203100000_HandApplied', '9.0.4')""")


def test_status_lists_the_ef_history_newest_first_and_names_what_was_applied_outside_dbops(demo_db):
    first = status(demo_db)
    assert [row["migration_id"] for row in first["ef_history"]] == DEMO_HISTORY
    assert {row["applied_by"] for row in first["ef_history"]} == {"outside dbops"}
    assert "5 EF migrations applied outside dbops" in first["summary"]
    record_applied(demo_db, EF_UP)
    shown = dbops(["migrate", "status"], 100, DATABASE_URL=demo_db)
    assert shown.index("20261203100000_HandApplied") < shown.index("20261201090000_AddNoteColor") \
        < shown.index("20251020111907_AddAuditLogs")
    after = {row["migration_id"]: row["applied_by"] for row in status(demo_db)["ef_history"]}
    assert after["20261201090000_AddNoteColor"] == "request r001"
    assert after["20261203100000_HandApplied"] == "outside dbops"
    assert "6 EF migrations applied outside dbops" in shown and "r001" in shown


def test_a_target_without_ef_history_shows_only_the_ledger(fresh_db):
    shown = status(fresh_db)
    assert "ef_history" not in shown and "EF" not in json.dumps(shown)


def test_an_unreachable_target_is_a_note_and_the_ledger_is_still_shown(fresh_db):
    status(fresh_db)  # makes the state store's tables
    record_applied_ledger_only(fresh_db)
    shown = dbops(["migrate", "status"], 100, DBOPS_STATE_URL=fresh_db,
                  DATABASE_URL="postgresql://nobody:s3cret-pw@127.0.0.1:1/prod?connect_timeout=2")
    assert "r001" in shown and "add-note-color" in shown
    assert '"__EFMigrationsHistory" could not be read' in shown and "unreachable" in shown
    assert "s3cret-pw" not in shown


def record_applied_ledger_only(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""INSERT INTO dbops.approval_requests (kind, name, target, sha256, payload, requires_approval,
                            required_approvals, requested_by, status, expires_at)
                        VALUES ('migration', 'add-note-color', 'prod', %s, '{}', true, 1, 'U0ALICE', 'applied',
                                now() + interval '1 day')""", ("7" * 64,))
