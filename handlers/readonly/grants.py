"""The statements that make a role read-only: SELECT on what is in the schemas (column by column
where columns are withheld), the same for what creators make later (default privileges), and the
limits on its sessions. Every name is quoted by `sql.Identifier`; each grant runs in a savepoint so
one that the bot may not make is reported, not fatal."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from . import system_catalog
from .result import Check
from .settings import ReadonlySettings

ROLE_SETTINGS = ("statement_timeout", "idle_in_transaction_session_timeout", "default_transaction_read_only")


def role_settings(settings: ReadonlySettings) -> dict[str, str]:
    # default_transaction_read_only is a convenience (a session can SET it off): the privileges are the boundary.
    return {"statement_timeout": settings.statement_timeout,
            "idle_in_transaction_session_timeout": settings.idle_in_transaction_session_timeout,
            "default_transaction_read_only": "on"}


def create_role_statement(role: str, verifier: str, settings: ReadonlySettings) -> sql.Composed:
    return sql.SQL("CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
                   "NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(settings.connection_limit), sql.Literal(verifier))


def set_statements(role: str, settings: ReadonlySettings) -> list[sql.Composed]:
    return [sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(role), sql.Identifier(key), sql.Literal(value))
            for key, value in role_settings(settings).items()]


@dataclass(frozen=True)
class Step:
    what: str
    statement: sql.Composable


def relation_grant(role: str, rel: system_catalog.Relation, settings: ReadonlySettings,
                   reads_withheld: list[str] | None = None) -> list[Step]:
    """Whatever the role had on `rel` is revoked, then SELECT given: on the whole relation, or on its
    columns but the withheld ones (a table-level SELECT would cover every column); nothing on a view
    that reads a withheld column (`reads_withheld`, system_catalog.views_reading)."""
    name = sql.Identifier(rel.schema, rel.name)
    kind = sql.SQL("SEQUENCE" if rel.kind == "S" else "TABLE")
    steps = [Step(f"reset privileges on {rel.label}", sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
        kind, name, sql.Identifier(role)))]
    if reads_withheld:
        return steps
    withheld = settings.withheld_in(rel.schema, rel.name) & set(rel.columns)
    if rel.kind == "S" or not withheld:
        steps.append(Step(f"SELECT on {rel.label}", sql.SQL("GRANT SELECT ON {} {} TO {}").format(
            kind, name, sql.Identifier(role))))
    else:
        readable = [c for c in rel.columns if c not in withheld]
        if readable:
            steps.append(Step(f"SELECT on {rel.label} but {', '.join(sorted(withheld))}",
                              sql.SQL("GRANT SELECT ({}) ON TABLE {} TO {}").format(
                                  sql.SQL(", ").join(map(sql.Identifier, readable)), name, sql.Identifier(role))))
    return steps


def grant_steps(conn: psycopg.Connection, role: str, schemas: list[str], settings: ReadonlySettings) -> list[Step]:
    dbname = conn.execute("SELECT current_database()").fetchone()[0]
    ident = sql.Identifier(role)
    steps = [Step(f"CONNECT on database {dbname}", sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(dbname), ident))]
    for schema in schemas:
        steps.append(Step(f"USAGE on schema {schema}", sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), ident)))
    views = system_catalog.views_reading(conn, settings.withheld)
    for rel in system_catalog.relations(conn, schemas, system_catalog.READABLE_KINDS + ("S",)):
        steps += relation_grant(role, rel, settings, views.get((rel.schema, rel.name)))
    for creator in system_catalog.creator_roles(conn, schemas, settings.migration_owners):
        for schema in schemas:
            for objects in ("TABLES", "SEQUENCES"):
                steps.append(Step(f"default SELECT on new {objects.lower()} of {creator} in {schema}", sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON {} TO {}").format(
                    sql.Identifier(creator), sql.Identifier(schema), sql.SQL(objects), ident)))
    return steps


def apply_steps(conn: psycopg.Connection, steps: list[Step]) -> list[Check]:
    """Runs each step in a savepoint of the caller's transaction; returns a failed check per refused step
    (with the statement that would do it, for someone allowed to run it)."""
    failed = []
    for step in steps:
        try:
            with conn.transaction():
                conn.execute(step.statement)
        except psycopg.errors.InsufficientPrivilege:
            failed.append(Check(f"grant: {step.what}", False, "the bot's role may not do this",
                                f"run as the object's owner or a role holding its privileges: "
                                f"{step.statement.as_string(conn)}"))
        except psycopg.errors.UndefinedObject as exc:
            failed.append(Check(f"grant: {step.what}", False, f"not done: {exc.diag.message_primary}",
                                step.statement.as_string(conn)))
    return failed
