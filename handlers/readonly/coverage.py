"""Whether the role still reads what it should and nothing it must not: every table, view and
sequence of its schemas (a table made by a creator the default privileges miss, or a column a
migration added to a table read column by column, is not readable), no withheld column (nor a view
or materialized view that reads one: the owner's default privileges grant those), default
privileges for every creator, and the limits on its sessions."""
from __future__ import annotations

import psycopg
from psycopg import sql

from . import system_catalog
from .grants import role_settings
from .result import Check
from .settings import ReadonlySettings


def _q(conn, *names: str) -> str:
    return sql.Identifier(*names).as_string(conn)


def coverage(conn: psycopg.Connection, role: str, schemas: list[str], settings: ReadonlySettings,
             name_for_repair: str | None = None) -> list[Check]:
    repair = f"`readonly repair {name_for_repair or role}`"
    checks = []
    dbname = conn.execute("SELECT current_database()").fetchone()[0]
    missing = [f"CONNECT on {dbname}"] if not conn.execute(
        "SELECT has_database_privilege(%s, current_database(), 'CONNECT')", (role,)).fetchone()[0] else []
    missing += [f"USAGE on schema {s}" for s in system_catalog.schemas_without_usage(conn, role, schemas)]
    checks.append(Check("connects and reaches its schemas", not missing,
                        "CONNECT and USAGE held" if not missing else "lacks " + ", ".join(missing),
                        "" if not missing else repair))

    unreadable, new_columns, leaked, revokes = [], [], [], []
    kinds = system_catalog.READABLE_KINDS + ("S",)
    rels = system_catalog.relations(conn, schemas, kinds)
    readable = system_catalog.readable_by(conn, role, schemas, kinds)
    views = system_catalog.views_reading(conn, settings.withheld)
    for rel in rels:
        whole, columns = readable.get((rel.schema, rel.name), (False, frozenset()))
        through = views.get((rel.schema, rel.name))
        if through:  # a view of a withheld column: withheld as a whole (default privileges grant it)
            if whole or columns:
                leaked.append(f"{rel.label} ({system_catalog.KIND_NAMES[rel.kind]} reading {', '.join(through)})")
                revokes.append(f"REVOKE SELECT ON TABLE {_q(conn, rel.schema, rel.name)} FROM {_q(conn, role)}")
            continue
        withheld = settings.withheld_in(rel.schema, rel.name) & set(rel.columns)
        if rel.kind == "S" or not withheld:
            if not whole:
                unreadable.append(f"{rel.label} (owner {rel.owner})")
            continue
        if whole:
            leaked.append(f"{rel.label}: SELECT on the whole table reads {', '.join(sorted(withheld))}")
        for column in rel.columns:
            if column in withheld and column in columns:
                leaked.append(f"{rel.label}.{column}")
            elif column not in withheld and column not in columns:
                new_columns.append(f"{rel.label}.{column}")
    checks.append(Check(f"reads every table, view and sequence of {', '.join(schemas)} ({len(rels)})", not unreadable,
                        "all readable" if not unreadable else "cannot read " + ", ".join(unreadable[:10]),
                        "" if not unreadable else repair + " (and see default privileges below)"))
    checks.append(Check("reads every column it is given", not new_columns,
                        "all readable" if not new_columns else "cannot read " + ", ".join(new_columns[:10]) +
                        " (added after the grants: column-level grants do not cover new columns)",
                        "" if not new_columns else repair))
    shown = ", ".join(str(c) for c in settings.withheld) or "none configured"
    checks.append(Check("withheld columns stay unreadable, through views too", not leaked,
                        f"withheld: {shown}" if not leaked else "READABLE: " + ", ".join(leaked[:10]),
                        "" if not leaked else "; ".join(revokes[:4] + [repair])))

    have = system_catalog.default_grants(conn, role)
    creators = system_catalog.creator_roles(conn, schemas, settings.migration_owners)
    gaps = []
    for creator in creators:
        for schema in schemas:
            for objtype, label in (("r", "TABLES"), ("S", "SEQUENCES")):
                if (creator, schema, objtype) not in have:
                    gaps.append((creator, schema, label))
    fixes = [f"ALTER DEFAULT PRIVILEGES FOR ROLE {_q(conn, c)} IN SCHEMA {_q(conn, s)} GRANT SELECT ON {t} TO "
             f"{_q(conn, role)}" for c, s, t in gaps]
    checks.append(Check("default privileges cover every creator", not gaps,
                        "tables and sequences made later by " + ", ".join(creators) + " are readable" if not gaps else
                        "not covered: " + ", ".join(f"new {t.lower()} of {c} in {s}" for c, s, t in gaps[:6]),
                        "" if not gaps else f"{repair}, or as that creator: " + "; ".join(fixes[:4])))

    configured = dict(item.split("=", 1) for item in (conn.execute(
        """SELECT s.setconfig
           FROM pg_db_role_setting s
           JOIN pg_roles r ON r.oid = s.setrole
           WHERE r.rolname = %s AND s.setdatabase = 0""",
        (role,)).fetchone() or [[]])[0] or [])
    wrong = [f"{k} (is {configured.get(k, 'unset')})" for k, v in role_settings(settings).items()
             if configured.get(k) != v]
    checks.append(Check("session limits on the role", not wrong,
                        ", ".join(f"{k} = {v}" for k, v in role_settings(settings).items()) +
                        " (a session may change them: limits, not the boundary)" if not wrong else
                        "not as configured: " + ", ".join(wrong), "" if not wrong else repair))
    return checks
