"""Versioned SQL files for the bot's own schema, applied at startup.

Files `migrations/NNNN_name.sql` are applied in order, each once, each in its
own transaction, recorded in dbops.schema_version. A transaction-level advisory
lock makes two replicas starting together take turns: the second sees the
first's work and applies nothing.
"""
from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where it connects: the store imports this module, commands import the store
    import psycopg

SCHEMA = "dbops"
_LOCK_KEY = 0x6462_6F70_735F_7376  # "dbops_sv": one lock for schema upgrades


def migration_files() -> list[tuple[int, str, str]]:
    folder = resources.files("bot.core.state").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two state migrations share a version number: {sorted(versions)}")
    return found


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Bring schema `dbops` up to date in one transaction; returns the names of the files applied now.

    One transaction for all files: a replica that waited for the lock finds every file done,
    and a failing file leaves the schema as it was."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute(f"SELECT version FROM {SCHEMA}.schema_version")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            conn.execute(sql)
            conn.execute(f"INSERT INTO {SCHEMA}.schema_version (version, name) VALUES (%s, %s)", (version, name))
            applied_now.append(name)
    return applied_now


def apply(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return apply_migrations(conn)
