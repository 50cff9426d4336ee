"""The mark a restore leaves in its target until it finishes: a target whose restore was killed or
failed half-way says so itself (`status` reads it), whoever looks and whatever the state store knows.

It is one row in `dbops.restore_marks` of the target (schema `dbops` is the bot's own in every
database it touches: pg_restore and --overwrite leave it alone), written before the first change to
the target and removed, table and all, when a restore into it finishes with every check passed."""
from __future__ import annotations

import psycopg

from ..errors import DbopsError
from ..target import Target, connection_reason

MARKS_DDL = ("CREATE SCHEMA IF NOT EXISTS dbops",
             "CREATE TABLE IF NOT EXISTS dbops.restore_marks (backup_id text, state text NOT NULL,"
             " started_at timestamptz NOT NULL DEFAULT now())")
UNFINISHED = "restoring, or stopped while restoring"


def mark_unfinished(target: Target, backup_id: str | None) -> str | None:
    """Marks `target` as holding an unfinished restore of `backup_id`; returns why it could not."""
    try:
        with target.connect(connect_timeout=10) as conn, conn.transaction():
            for statement in MARKS_DDL:
                conn.execute(statement)
            conn.execute("DELETE FROM dbops.restore_marks")
            conn.execute("INSERT INTO dbops.restore_marks (backup_id, state) VALUES (%s, %s)", (backup_id, UNFINISHED))
        return None
    except DbopsError as exc:
        return str(exc)
    except psycopg.Error as exc:
        return connection_reason(exc, target.dsn)


def settle_mark(target: Target, finished: bool, why: str = "") -> str | None:
    """A restore that finished removes the mark, and schema `dbops` with it when nothing else is in it
    (the restored database holds the backup and nothing of the bot's); one that failed says why in it.
    Returns why it could not."""
    try:
        with target.connect(connect_timeout=10, autocommit=True) as conn:
            if not finished:
                conn.execute("UPDATE dbops.restore_marks SET state = %s", (f"failed: {why}"[:300],))
                return None
            conn.execute("DROP TABLE IF EXISTS dbops.restore_marks")
            try:
                conn.execute("DROP SCHEMA IF EXISTS dbops")  # RESTRICT: kept when it holds the bot's state
            except psycopg.errors.DependentObjectsStillExist:
                pass
        return None
    except DbopsError as exc:
        return str(exc)
    except psycopg.Error as exc:
        return connection_reason(exc, target.dsn)


def restore_mark(target: Target) -> str | None:
    """What the target's mark says ("b004, started 2026-05-01 10:12 UTC: restoring, or stopped while
    restoring"), or None when it holds no unfinished restore. Raises DbopsError when unreachable."""
    with target.connect(connect_timeout=5) as conn:
        conn.read_only = True
        if conn.execute("SELECT to_regclass('dbops.restore_marks')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT backup_id, state, started_at FROM dbops.restore_marks"
                           " ORDER BY started_at DESC LIMIT 1").fetchone()
    if row is None:
        return None
    backup_id, state, started = row
    return f"{backup_id or 'a backup'}, started {started:%Y-%m-%d %H:%M %Z}: {state}"
