"""What the catalog says: the relations a role should read, who creates them, and what the bot's
own role may do (CREATEROLE, the ADMIN option, acting for the owners)."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

# r table, p partitioned table, v view, m materialized view, f foreign table, S sequence
READABLE_KINDS = ("r", "p", "v", "m", "f")
KIND_NAMES = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table",
              "S": "sequence"}


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str
    owner: str
    columns: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def relations(conn: psycopg.Connection, schemas: list[str], kinds: tuple[str, ...] = READABLE_KINDS) -> list[Relation]:
    """Tables, views and sequences of `schemas`, with their visible columns. Partitions are left out:
    they are read through their parent (and get its grants at attach time only, so the parent is what
    a role is given)."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),
                  coalesce(array_agg(a.attname ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}')
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = ANY(%s) AND c.relkind = ANY(%s) AND NOT c.relispartition
           GROUP BY 1, 2, 3, 4
           ORDER BY 1, 2""",
        (schemas, list(kinds))).fetchall()
    return [Relation(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]


def readable_by(conn: psycopg.Connection, role: str, schemas: list[str],
                kinds: tuple[str, ...] = READABLE_KINDS) -> dict[tuple[str, str], tuple[bool, frozenset[str]]]:
    """(schema, name) -> (SELECT on the whole relation, the columns `role` may read) for the
    relations `relations` lists, in one query (a sequence has no column privileges of its own)."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname, has_table_privilege(%(role)s, c.oid, 'SELECT'),
                  coalesce(array_agg(a.attname) FILTER (WHERE CASE WHEN c.relkind = 'S' THEN false
                           ELSE has_column_privilege(%(role)s, c.oid, a.attnum, 'SELECT') END), '{}')
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = ANY(%(kinds)s) AND NOT c.relispartition
           GROUP BY n.nspname, c.relname, c.oid""",
        {"role": role, "schemas": schemas, "kinds": list(kinds)}).fetchall()
    return {(r[0], r[1]): (r[2], frozenset(r[3])) for r in rows}


def views_reading(conn: psycopg.Connection, columns) -> dict[tuple[str, str], list[str]]:
    """Views and materialized views that read one of `columns` (each with .schema, .table, .column:
    the withheld ones), directly (their rule depends on the column: pg_depend through pg_rewrite)
    or through another such view: (schema, name) -> the columns they read, "schema.table.column".
    A view reading any column of such a view counts (which of its columns comes from which is not
    in the catalog): a read-only role given SELECT on any of them reads the withheld column."""
    columns = list(columns)
    if not columns:
        return {}
    rows = conn.execute(
        """WITH RECURSIVE withheld(relid, attnum, label) AS (
               SELECT c.oid, a.attnum, w.s || '.' || w.t || '.' || w.c
               FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(s, t, c)
               JOIN pg_namespace n ON n.nspname = w.s
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = w.c AND NOT a.attisdropped
           ), reading(view, label) AS (
               SELECT r.ev_class, w.label
               FROM withheld w
               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                               AND d.refobjid = w.relid AND d.refobjsubid = w.attnum
               JOIN pg_rewrite r ON r.oid = d.objid
               WHERE r.ev_class <> w.relid
             UNION
               SELECT r.ev_class, v.label
               FROM reading v
               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                               AND d.refobjid = v.view
               JOIN pg_rewrite r ON r.oid = d.objid
               WHERE r.ev_class <> v.view
           )
           SELECT n.nspname, c.relname, array_agg(DISTINCT v.label ORDER BY v.label)
           FROM reading v
           JOIN pg_class c ON c.oid = v.view
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('v', 'm')
           GROUP BY 1, 2""",
        ([c.schema for c in columns], [c.table for c in columns], [c.column for c in columns])).fetchall()
    return {(r[0], r[1]): list(r[2]) for r in rows}


def schemas_without_usage(conn: psycopg.Connection, role: str, schemas: list[str]) -> list[str]:
    rows = conn.execute(
        """SELECT s.name
           FROM unnest(%s::text[]) WITH ORDINALITY AS s(name, position)
           WHERE NOT has_schema_privilege(%s, s.name, 'USAGE')
           ORDER BY s.position""",
        (schemas, role)).fetchall()
    return [r[0] for r in rows]


def existing_schemas(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    rows = conn.execute(
        """SELECT nspname
           FROM pg_namespace
           WHERE nspname = ANY(%s)""",
        (schemas,)).fetchall()
    found = {r[0] for r in rows}
    return [s for s in schemas if s in found]


def role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute(
        """SELECT 1
           FROM pg_roles
           WHERE rolname = %s""",
        (name,)).fetchone() is not None


def creator_roles(conn: psycopg.Connection, schemas: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """Roles that create tables in `schemas`: the owners of what is there, the bot itself (it may run
    the migrations), and the configured migration owners. PostgreSQL's own roles are not among them."""
    rows = conn.execute(
        """SELECT DISTINCT pg_get_userbyid(c.relowner)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')""",
        (schemas,)).fetchall()
    found = [r[0] for r in rows] + [conn.execute("SELECT current_user").fetchone()[0]] + list(extra)
    return sorted({name for name in found if not name.startswith("pg_")})


@dataclass(frozen=True)
class BotRole:
    """The bot's own role and what it can do about roles."""

    name: str
    superuser: bool
    createrole: bool
    server_version: int  # e.g. 180001

    @property
    def can_create_roles(self) -> bool:
        return self.superuser or self.createrole

    @property
    def admin_option_matters(self) -> bool:
        """From PostgreSQL 16 a CREATEROLE role manages (alters, grants, drops) only roles it holds ADMIN on."""
        return self.server_version >= 160000 and not self.superuser


def bot_role(conn: psycopg.Connection) -> BotRole:
    row = conn.execute(
        """SELECT rolname, rolsuper, rolcreaterole, current_setting('server_version_num')::int
           FROM pg_roles
           WHERE rolname = current_user""").fetchone()
    return BotRole(*row)


def has_admin_on(conn: psycopg.Connection, role: str) -> bool:
    """Whether the bot's role may grant, alter and drop `role` (PostgreSQL 16+: the ADMIN option)."""
    bot = bot_role(conn)
    if bot.superuser:
        return True
    if not bot.admin_option_matters:
        return bot.createrole
    return bool(conn.execute(
        """SELECT pg_has_role(current_user, %s, 'USAGE WITH ADMIN OPTION')
                  OR pg_has_role(current_user, %s, 'MEMBER WITH ADMIN OPTION')""",
        (role, role)).fetchone()[0])


def can_act_for(conn: psycopg.Connection, role: str) -> bool:
    """Whether the bot holds `role`'s privileges (needed for ALTER DEFAULT PRIVILEGES FOR ROLE)."""
    return bool(conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)).fetchone()[0])


def default_grants(conn: psycopg.Connection, role: str) -> set[tuple[str, str, str]]:
    """(creator, schema, object type r|S) for which new objects grant SELECT to `role` by default."""
    rows = conn.execute(
        """SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype
           FROM pg_default_acl d
           JOIN pg_namespace n ON n.oid = d.defaclnamespace,
                aclexplode(d.defaclacl) x
           WHERE x.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) AND x.privilege_type = 'SELECT'""",
        (role,)).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def read_replicas(conn: psycopg.Connection) -> int:
    """Standbys streaming from this server (PostgreSQL shows the rows to every role)."""
    try:
        return int(conn.execute(
            """SELECT count(*)
               FROM pg_stat_replication""").fetchone()[0])
    except psycopg.Error:
        return 0
