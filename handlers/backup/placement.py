"""Where the state store lives: on the database it protects, the catalog dies with it.

The comparison is by server and database name (never by password or user): two DSNs naming the
same host, port and database are the same database. Render gives one database two host names (the
internal `dpg-…-a` and the external `dpg-…-a.<region>-postgres.render.com`): both are that database.
"""
from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict


def _where(dsn: str) -> tuple[str, str, str] | None:
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 -- an unreadable DSN is reported where it is used
        return None
    host = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")[0].lower()
    if host.startswith("dpg-"):
        host = host.split(".", 1)[0]
    port = str(params.get("port") or "5432").split(",")[0]
    dbname = str(params.get("dbname") or params.get("user") or "")
    return host, port, dbname


def state_shares_target(state_dsn: str | None, targets: dict[str, str]) -> list[str]:
    """The names of the targets whose database is the state store's."""
    if not state_dsn:
        return []
    state = _where(state_dsn)
    return [name for name, dsn in targets.items() if state is not None and _where(dsn) == state]


def state_placement_warning(shared: list[str]) -> str:
    names = ", ".join(f"`{n}`" for n in shared)
    return (f"the state store (the backup catalog, jobs, approvals) is the same database as target {names}: when "
            f"it is lost, so is the catalog, and the bot starts degraded. Set DBOPS_STATE_URL to a small database "
            f"of its own (not DATABASE_URL); the backups themselves are catalogued in their storage too, so "
            f"`backup sync` fills the new one")
