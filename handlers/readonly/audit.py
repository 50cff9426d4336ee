"""What could still let a read-only role change things, read from the catalog with PostgreSQL's
own privilege functions (they count PUBLIC's grants and memberships). Each finding is a failed
check carrying the statement that removes it."""
from __future__ import annotations

from typing import Callable

import psycopg
from psycopg import sql

from .. import schemas
from .result import Check

_NOT_SYSTEM = schemas.not_system("n")  # the bot's own schema is audited too: the role must not write there
# Predefined roles that write, signal or reach outside the database; any membership fails anyway.
DANGEROUS_ROLES = ("pg_write_all_data", "pg_signal_backend", "pg_write_server_files", "pg_execute_server_program",
                   "pg_read_server_files", "pg_create_subscription", "pg_maintain", "pg_checkpoint",
                   "pg_signal_autovacuum_worker", "pg_use_reserved_connections")
WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SHOWN = 8  # items named per finding; the rest are counted


def _q(conn: psycopg.Connection, *names: str) -> str:
    return sql.Identifier(*names).as_string(conn)


def _grantee(conn, public: bool, role: str) -> str:
    return "PUBLIC" if public else _q(conn, role)


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _finding(name: str, found: list[str], fixes: list[str], clean: str,
             say: Callable[[str], str] = lambda listed: listed, fix_note: str = "") -> Check:
    """A check from what its query found: passed when nothing was, else the items named (the first
    few, the rest counted) with the statements that remove them."""
    if not found:
        return Check(name, True, clean, "")
    return Check(name, False, say(_listed(found)), "; ".join(fixes[:SHOWN]) + fix_note)


def audit(conn: psycopg.Connection, role: str, bot: str) -> list[Check]:
    version = int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])
    checks = [_attributes(conn, role), _memberships(conn, role), _owned(conn, role, bot),
              _relation_writes(conn, role, version), _sequence_writes(conn, role),
              _security_definer(conn, role), *_remote_access(conn, role), _large_objects(conn, role),
              _create_rights(conn, role)]
    if version >= 150000:
        checks.append(_parameters(conn, role))
    return checks


def _attributes(conn, role: str) -> Check:
    row = conn.execute(
        """SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
           FROM pg_roles
           WHERE rolname = %s""",
        (role,)).fetchone()
    names = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
    found = [n for n, on in zip(names, row) if on]
    return _finding("role attributes", found, [f"ALTER ROLE {_q(conn, role)} " + " ".join(f"NO{n}" for n in found)],
                    "none beyond LOGIN", say=lambda listed: f"has {listed}")


def _memberships(conn, role: str) -> Check:
    rows = conn.execute(
        """SELECT r.rolname
           FROM pg_roles r
           WHERE r.rolname <> %s AND pg_has_role(%s, r.oid, 'MEMBER')
           ORDER BY 1""",
        (role, role)).fetchall()
    found = [r[0] for r in rows]
    dangerous = ", ".join(n for n in found if n in DANGEROUS_ROLES)
    return _finding("memberships (pg_write_all_data, pg_signal_backend, any role)", found,
                    [f"REVOKE {_q(conn, n)} FROM {_q(conn, role)}" for n in found], "member of no role",
                    say=lambda listed: (f"member of {listed}"
                                        + (f" (writes or signals: {dangerous})" if dangerous else "")))


def _owned(conn, role: str, bot: str) -> Check:
    rows = conn.execute(
        """SELECT CASE WHEN s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                       THEN pg_describe_object(s.classid, s.objid, s.objsubid)
                       ELSE 'an object in database ' || (SELECT datname FROM pg_database WHERE oid = s.dbid)
                  END
           FROM pg_shdepend s
           WHERE s.deptype = 'o' AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s)
           ORDER BY 1""",
        (role,)).fetchall()
    return _finding("owned objects", [r[0] for r in rows],
                    [f"REASSIGN OWNED BY {_q(conn, role)} TO {_q(conn, bot)} (in each database)"], "owns nothing",
                    say=lambda listed: f"owns {listed}")


def _relation_writes(conn, role: str, version: int) -> Check:
    privileges = list(WRITE_PRIVILEGES) + (["MAINTAIN"] if version >= 170000 else [])
    rows = conn.execute(
        f"""SELECT n.nspname, c.relname, p.priv, has_table_privilege('public', c.oid, p.priv)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN unnest(%s::text[]) p(priv)
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND {_NOT_SYSTEM}
             AND has_table_privilege(%s, c.oid, p.priv)
           ORDER BY 1, 2, 3""",
        (privileges, role)).fetchall()
    # Column grants stay when a table-level privilege is absent; REVOKE on the table removes them too.
    cols = conn.execute(
        f"""SELECT n.nspname, c.relname, p.priv, has_any_column_privilege('public', c.oid, p.priv)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'REFERENCES']) p(priv)
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND {_NOT_SYSTEM}
             AND has_any_column_privilege(%s, c.oid, p.priv) AND NOT has_table_privilege(%s, c.oid, p.priv)
           ORDER BY 1, 2, 3""",
        (role, role)).fetchall()
    by_rel: dict[tuple[str, str, bool], list[str]] = {}
    for schema, name, priv, public in rows:
        by_rel.setdefault((schema, name, public), []).append(priv)
    found = [f"{s}.{n}: {', '.join(p)}" for (s, n, _), p in by_rel.items()] + \
        [f"{s}.{n}: {p} on some columns" for s, n, p, _ in cols]
    fixes = [f"REVOKE {', '.join(p)} ON TABLE {_q(conn, s, n)} FROM {_grantee(conn, pub, role)}"
             for (s, n, pub), p in by_rel.items()]
    fixes += [f"REVOKE {p} ON TABLE {_q(conn, s, n)} FROM {_grantee(conn, pub, role)}" for s, n, p, pub in cols]
    return _finding("privileges beyond reading on tables and views", found, fixes, "SELECT only")


def _sequence_writes(conn, role: str) -> Check:
    rows = conn.execute(
        # The privilege functions inside CASE: the planner may test them before the relkind filter.
        f"""SELECT n.nspname, c.relname,
                  CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('public', c.oid, 'USAGE, UPDATE') END
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'S' AND {_NOT_SYSTEM}
             AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%s, c.oid, 'USAGE, UPDATE') ELSE false END
           ORDER BY 1, 2""",
        (role,)).fetchall()
    fixes = [f"REVOKE USAGE, UPDATE ON SEQUENCE {_q(conn, s, n)} FROM {_grantee(conn, pub, role)}"
             for s, n, pub in rows]
    return _finding("nextval/setval on sequences", [f"{s}.{n}" for s, n, _ in rows], fixes, "none",
                    say=lambda listed: f"can advance {listed}")


def _security_definer(conn, role: str) -> Check:
    rows = conn.execute(
        f"""SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner),
                  has_function_privilege('public', p.oid, 'EXECUTE')
           FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.prosecdef AND {_NOT_SYSTEM} AND has_function_privilege(%s, p.oid, 'EXECUTE')
           ORDER BY 1""",
        (role,)).fetchall()
    fixes = [f"REVOKE EXECUTE ON ROUTINE {sig} FROM {_grantee(conn, pub, role)}" for sig, _, pub in rows]
    return _finding("SECURITY DEFINER functions it can execute", [f"{sig} (runs as {owner})" for sig, owner, _ in rows],
                    fixes, "none", say=lambda listed: f"{listed}: each runs with its owner's rights",
                    fix_note=" (as the owner)")


def _remote_access(conn, role: str) -> list[Check]:
    rows = conn.execute(
        """SELECT p.oid::regprocedure::text, has_function_privilege('public', p.oid, 'EXECUTE')
           FROM pg_extension e
           JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                           AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
           JOIN pg_proc p ON p.oid = d.objid
           WHERE e.extname = 'dblink' AND has_function_privilege(%s, p.oid, 'EXECUTE')
             AND p.proname LIKE 'dblink%%'
           ORDER BY 1""",
        (role,)).fetchall()
    dblink = _finding("dblink", [sig for sig, _ in rows],
                      [f"REVOKE EXECUTE ON FUNCTION {sig} FROM {_grantee(conn, pub, role)}" for sig, pub in rows],
                      "not installed, or none of its functions executable",
                      say=lambda listed: f"can run {listed}: it can open connections as other roles")
    wrappers = conn.execute(
        """SELECT 'FOREIGN DATA WRAPPER', fdwname, has_foreign_data_wrapper_privilege('public', oid, 'USAGE')
           FROM pg_foreign_data_wrapper
           WHERE has_foreign_data_wrapper_privilege(%s, oid, 'USAGE')
           UNION ALL
           SELECT 'FOREIGN SERVER', srvname, has_server_privilege('public', oid, 'USAGE')
           FROM pg_foreign_server
           WHERE has_server_privilege(%s, oid, 'USAGE')
           ORDER BY 1, 2""",
        (role, role)).fetchall()
    mappings = conn.execute(
        """SELECT srvname, usename
           FROM pg_user_mappings
           WHERE usename IN (%s, 'public')
           ORDER BY 1""",
        (role,)).fetchall()
    found = ([f"{kind.lower()} {name}" for kind, name, _ in wrappers]
             + [f"user mapping for {u} on {s}" for s, u in mappings])
    fixes = [f"REVOKE USAGE ON {kind} {_q(conn, name)} FROM {_grantee(conn, pub, role)}"
             for kind, name, pub in wrappers]
    fixes += [f"DROP USER MAPPING FOR {'PUBLIC' if u == 'public' else _q(conn, u)} SERVER {_q(conn, s)}"
              for s, u in mappings]
    fdw = _finding("postgres_fdw and foreign servers", found, fixes, "no usable wrapper, server or user mapping")
    return [dblink, fdw]


def _large_objects(conn, role: str) -> Check:
    compat = conn.execute("SELECT current_setting('lo_compat_privileges')").fetchone()[0] == "on"
    rows = conn.execute(
        """SELECT l.oid, x.grantee = 0
           FROM pg_largeobject_metadata l, aclexplode(l.lomacl) x
           WHERE x.privilege_type = 'UPDATE' AND x.grantee IN (0, (SELECT oid FROM pg_roles WHERE rolname = %s))
           ORDER BY 1""",
        (role,)).fetchall()
    found = (["lo_compat_privileges is on: every role may write every large object"] if compat else []) + \
        [f"large object {oid}" for oid, _ in rows]
    fixes = (["ALTER SYSTEM SET lo_compat_privileges = off (a superuser; on Render ask support)"] if compat else []) + \
        [f"REVOKE UPDATE ON LARGE OBJECT {oid} FROM {_grantee(conn, pub, role)}" for oid, pub in rows]
    return _finding("large-object writes", found, fixes,
                    "cannot write existing large objects (creating new ones is open to every role in PostgreSQL: "
                    "no privilege governs it)")


def _create_rights(conn, role: str) -> Check:
    rows = conn.execute(
        """SELECT 'SCHEMA', nspname, has_schema_privilege('public', oid, 'CREATE')
           FROM pg_namespace
           WHERE has_schema_privilege(%s, oid, 'CREATE')
           UNION ALL
           SELECT 'DATABASE', datname, has_database_privilege('public', oid, 'CREATE')
           FROM pg_database
           WHERE datname = current_database() AND has_database_privilege(%s, oid, 'CREATE')
           ORDER BY 1, 2""",
        (role, role)).fetchall()
    fixes = [f"REVOKE CREATE ON {kind} {_q(conn, name)} FROM {_grantee(conn, pub, role)}" for kind, name, pub in rows]
    return _finding("CREATE on a schema or the database", [f"{kind.lower()} {name}" for kind, name, _ in rows], fixes,
                    "none")


def _parameters(conn, role: str) -> Check:
    rows = conn.execute(
        """SELECT a.parname, x.privilege_type, x.grantee = 0
           FROM pg_parameter_acl a, aclexplode(a.paracl) x
           WHERE x.grantee IN (0, (SELECT oid FROM pg_roles WHERE rolname = %s))
           ORDER BY 1""",
        (role,)).fetchall()
    fixes = [f"REVOKE {priv} ON PARAMETER {name} FROM {_grantee(conn, pub, role)}" for name, priv, pub in rows]
    return _finding("SET/ALTER SYSTEM on protected settings", [f"{priv} on {name}" for name, priv, _ in rows], fixes,
                    "none")
