"""Which schemas hold the application: SQL conditions every handler filters pg_namespace with.

PostgreSQL reserves every schema name beginning with `pg_` (pg_catalog, pg_toast, pg_temp_N, ...), so
one prefix test covers them all. `dbops` is the bot's own state, which may share a target's database.
"""
from __future__ import annotations

BOT_SCHEMA = "dbops"


def not_system(namespace: str = "n") -> str:
    """Not PostgreSQL's own schemas; `namespace` is the alias of pg_namespace in the query."""
    return f"({namespace}.nspname !~ '^pg_' AND {namespace}.nspname <> 'information_schema')"


def application(namespace: str = "n") -> str:
    """The application's schemas: neither PostgreSQL's nor the bot's own state."""
    return f"({not_system(namespace)} AND {namespace}.nspname <> '{BOT_SCHEMA}')"


def not_extension_member(system_catalog: str, alias: str) -> str:
    """The object `alias` (a row of `system_catalog`, e.g. pg_class) was not created by an extension:
    extension members are the extension's to create, so dumps, restores and comparisons leave them out."""
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{system_catalog}'::regclass "
            f"AND d.objid = {alias}.oid AND d.deptype = 'e')")
