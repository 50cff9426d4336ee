"""What is in the way of a restore into a target: its tables, whether it is the source itself, the
roles the archive's objects are owned by. Restoring is destructive, so anything unsure refuses."""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .. import fmt, schemas
from ..backup.placement import state_shares_target
from ..errors import DbopsError, UsageError
from ..target import Target, connection_reason


class RestoreRefused(UsageError):
    """The restore would destroy something it was not told to (exit status 2, nothing done)."""


@dataclass
class TargetState:
    database: str
    server_version: str
    server_version_num: int
    tables: list[str] = field(default_factory=list)  # the application's tables there now
    user: str = ""


def inspect_target(target: Target) -> TargetState:
    try:
        with target.connect(connect_timeout=10) as conn:
            row = conn.execute("SELECT current_database(), current_setting('server_version'),"
                               " current_setting('server_version_num')::int, current_user").fetchone()
            tables = [r[0] for r in conn.execute(f"""
                SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v') AND {schemas.application('n')}
                  AND {schemas.not_extension_member('pg_class', 'c')}
                ORDER BY 1""").fetchall()]
    except psycopg.Error as exc:
        raise DbopsError(f"cannot reach the restore target `{target.name}` ({target.label}): "
                         f"{connection_reason(exc, target.dsn)}") \
            from None
    return TargetState(row[0], row[1], row[2], tables, row[3])


def refusals(into: Target, state: TargetState, source_name: str, source: Target | None, overwrite: bool) -> list[str]:
    """Why this restore must not run as asked; [] when it may."""
    if overwrite:
        return []
    why = []
    if into.name == source_name or (source is not None and state_shares_target(into.dsn, {source_name: source.dsn})):
        why.append(f"`{into.name}` is the source database `{source_name}` itself: restoring over it replaces "
                   "production; add --overwrite if that is really what you want")
    if state.tables:
        shown = ", ".join(state.tables[:5]) + (f" and {len(state.tables) - 5} more" if len(state.tables) > 5 else "")
        why.append(f"`{into.name}` ({state.database}) is not empty: it holds "
                   f"{fmt.plural(len(state.tables), 'table or view', 'tables or views')} ({shown}); "
                   "restore into an empty database, or add --overwrite to drop them first")
    return why


def clear_target(target: Target) -> list[str]:
    """For --overwrite: drop every application schema (the bot's own `dbops` stays) and recreate
    `public` empty, so the restored database is the backup's and nothing else."""
    with target.connect(connect_timeout=10) as conn:
        conn.autocommit = True
        dropped = [r[0] for r in conn.execute(f"""
            SELECT n.nspname FROM pg_namespace n
            WHERE {schemas.application('n')} AND {schemas.not_extension_member('pg_namespace', 'n')}
            ORDER BY 1""").fetchall()]
        with conn.transaction():
            for schema in dropped:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute("CREATE SCHEMA public")
    return dropped


def missing_roles(target: Target, roles: list[str]) -> list[tuple[str, str]]:
    """(role, the statement that creates it) for each role the target lacks."""
    if not roles:
        return []
    with target.connect(connect_timeout=10) as conn:
        have = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,))}
        return [(r, sql.SQL("CREATE ROLE {} NOLOGIN;").format(sql.Identifier(r)).as_string(conn))
                for r in roles if r not in have]


def extensions_of_others(target: Target) -> dict[str, str]:
    """Extensions the target has that its connecting role neither owns nor may act for (it is not a
    superuser): extension name -> owner. Such an extension stays as the target has it: creating it
    again is a no-op and commenting on it is refused (only its owner may)."""
    with target.connect(connect_timeout=10) as conn:
        rows = conn.execute(
            """SELECT e.extname, pg_get_userbyid(e.extowner)
               FROM pg_extension e
               WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 AND NOT pg_has_role(current_user, e.extowner, 'USAGE')
               ORDER BY 1""").fetchall()
    return {name: owner for name, owner in rows}


def extension_entries(entry_lines: list[str], extensions: dict[str, str]) -> tuple[str, ...]:
    """The archive's entries for `extensions` (as toc_entry spells them): the extension itself and
    its comment, left out of a restore into a target that keeps its own."""
    from ..postgres import toc_entry

    wanted = {f"EXTENSION - {name}" for name in extensions} | {f"COMMENT - EXTENSION {name}" for name in extensions}
    return tuple(entry for entry in (toc_entry(line).strip() for line in entry_lines) if entry in wanted)
