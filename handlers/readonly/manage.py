"""Create, rotate, check, repair and drop read-only roles, and list those the bot manages.

Each takes a target (and the bot's list of roles) and returns a plain `Report`; creating and
rotating also return a `Delivery` beside it: the connection string goes to the requester through
the front end, never into the report (which is stored in the job record)."""
from __future__ import annotations

import secrets
from typing import Callable

import psycopg
from psycopg import sql

from .. import fmt
from ..errors import DbopsError, UsageError
from ..report import Note, Outcome, Report, Section, Table
from ..target import Target, connect, scrub
from . import system_catalog
from .audit import audit
from .book import RoleBook
from .coverage import coverage
from .credentials import Delivery, new_password, role_conninfo, role_url, scram_verifier
from .grants import apply_steps, create_role_statement, grant_steps, set_statements
from .names import check_role_name
from .proof import prove
from .result import Check, checks_data, checks_section, verdict_word
from .settings import ReadonlySettings

SecretSink = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


class MissingPrivilege(DbopsError):
    """The bot's own role lacks what the operation needs; the message names it and the fix."""


def _q(conn, *names: str) -> str:
    return sql.Identifier(*names).as_string(conn)


def _server_error(exc: psycopg.Error, what: str) -> DbopsError:
    diag = exc.diag
    text = diag.message_primary or type(exc).__name__
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return DbopsError(f"{what} failed: {text}{detail} [SQLSTATE {exc.sqlstate}]")


# -- what the bot's role can do --------------------------------------------------------------
def require_createrole(conn: psycopg.Connection) -> system_catalog.BotRole:
    bot = system_catalog.bot_role(conn)
    if not bot.can_create_roles:
        raise MissingPrivilege(
            f"the bot's role `{bot.name}` lacks CREATEROLE, which creating, rotating and dropping roles need: "
            f"run `ALTER ROLE {_q(conn, bot.name)} CREATEROLE` as a superuser (on Render the database's default "
            "user has CREATEROLE; connect the bot as that user)")
    return bot


def require_admin(conn: psycopg.Connection, role: str) -> system_catalog.BotRole:
    bot = require_createrole(conn)
    if not system_catalog.has_admin_on(conn, role):
        raise MissingPrivilege(
            f"the bot's role `{bot.name}` has CREATEROLE but not the ADMIN option on `{role}`, which PostgreSQL 16 "
            f"and later require to alter, grant or drop it: run `GRANT {_q(conn, role)} TO {_q(conn, bot.name)} WITH "
            "ADMIN OPTION` as a role that holds it (the role that created it, or a superuser)")
    return bot


def _self_membership(conn: psycopg.Connection, bot: system_catalog.BotRole, role: str, inherit: bool = False) -> None:
    """The bot's membership in the role: SET (no INHERIT) lets `readonly check` try writes as the role
    with SET ROLE; INHERIT is taken for dropping (REASSIGN/DROP OWNED need the role's privileges)."""
    if bot.superuser:
        return
    if bot.server_version >= 160000:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT {}, SET TRUE").format(
            sql.Identifier(role), sql.SQL("TRUE" if inherit else "FALSE")))
    else:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))


def _managed(book: RoleBook | None, target: Target, name: str):
    if book is None:
        raise DbopsError("read-only roles need the state store (the bot's list of the roles it manages): "
                         "set DBOPS_STATE_URL (or DATABASE_URL)")
    found = book.get(target.name, name)
    if found is None:
        raise UsageError(f"`{name}` is not a read-only role dbops manages on `{target.name}`; `readonly list` "
                         "shows them (dbops never rotates, repairs or drops a role it did not create)")
    return found


def _schemas(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    found = system_catalog.existing_schemas(conn, schemas)
    missing = [s for s in schemas if s not in found]
    if missing:
        raise UsageError(f"no schema {', '.join(f'`{s}`' for s in missing)} in the target database: check --schemas "
                         "or [readonly].schemas")
    return schemas


# -- the report ------------------------------------------------------------------------------
def _boundary_section(conn: psycopg.Connection, settings: ReadonlySettings) -> Section:
    lines = ["The boundary is the privileges proven above. `default_transaction_read_only = on` is set on the role "
             "as a convenience only: any session can SET it off, BEGIN READ WRITE, or ALTER ROLE itself.",
             "Not governed by privileges in PostgreSQL: creating temporary tables and new large objects (they add "
             "data, they change no existing row); the session limits (statement_timeout, "
             "idle_in_transaction_session_timeout) can also be SET by the session itself."]
    if settings.replica or system_catalog.read_replicas(conn):
        lines.append("A read replica exists: pointing analytics at the replica is the stronger boundary (it cannot "
                     "write at all, and heavy queries do not load the primary). Create the role here; it reaches the "
                     "replica too.")
    return Section("Boundary", text="\n".join(f"• {line}" for line in lines))


def _withheld_section(conn: psycopg.Connection, schemas: list[str], settings: ReadonlySettings) -> Section:
    rels = {(r.schema, r.name): r for r in system_catalog.relations(conn, schemas)}
    present = [c for c in settings.withheld
               if (c.schema, c.table) in rels and c.column in rels[(c.schema, c.table)].columns]
    absent = [c for c in settings.withheld if c not in present and c.schema in schemas]
    tables = sorted({f"{c.schema}.{c.table}" for c in present})
    lines = [("Withheld (never granted): " + ", ".join(str(c) for c in present)) if present else
             "No withheld column exists in these schemas."]
    if present:
        lines.append(f"`SELECT *` on {', '.join(tables)} fails by design (permission denied): name the columns.")
        lines.append("That is also why the role is not given pg_read_all_data: it reads every column of every table "
                     "and ignores column privileges.")
    if absent:
        lines.append("Configured but not found (nothing to withhold): " + ", ".join(str(c) for c in absent))
    return Section("Withheld columns", text="\n".join(lines))


def _finish(report: Report, groups: list[tuple[str, list[Check]]]) -> Report:
    failed = [c for _, checks in groups for c in checks if not c.ok]
    for title, checks in groups:
        if checks:
            report.sections.append(checks_section(title, checks))
    report.data["checks"] = {title: checks_data(checks) for title, checks in groups}
    report.data["failed"] = len(failed)
    if failed:
        report.outcome = Outcome.FAILED
        report.summary += f"; {fmt.plural(len(failed), 'check')} FAILED: " + \
            ", ".join(c.name for c in failed[:5])
    else:
        report.summary += f"; all {sum(len(c) for _, c in groups)} checks passed"
    return report


# -- create ----------------------------------------------------------------------------------
def plan(target: Target, name: str, settings: ReadonlySettings, schemas: list[str] | None = None) -> Report:
    """What `create` will do, checked against the target without changing it: shown to approvers."""
    check_role_name(name)
    schemas = list(schemas or settings.schemas)
    with target.connect() as conn:
        conn.read_only = True
        bot = require_createrole(conn)
        if system_catalog.role_exists(conn, name):
            raise UsageError(f"a role `{name}` already exists on `{target.name}`: choose another name")
        _schemas(conn, schemas)
        rels = system_catalog.relations(conn, schemas)
        creators = system_catalog.creator_roles(conn, schemas, settings.migration_owners)
        cannot = [c for c in creators if not system_catalog.can_act_for(conn, c)]
        sections = [Section("What it gets", text="\n".join([
            f"• LOGIN role `{name}` on `{target.name}` ({target.label}), password generated by the bot "
            "(43 characters) and handed only to the requester, once",
            f"• CONNECT, USAGE on {', '.join(schemas)}; SELECT on its {len(rels)} tables and views and its sequences",
            f"• default privileges for tables made later by {', '.join(creators)}",
            f"• limits: statement_timeout {settings.statement_timeout}, idle_in_transaction_session_timeout "
            f"{settings.idle_in_transaction_session_timeout}, {settings.connection_limit} connections; "
            "default_transaction_read_only = on (a convenience)",
            "• after creating it the bot connects as the role and proves it cannot write, then audits it"])),
            _withheld_section(conn, schemas, settings)]
        if cannot:
            sections.append(Section("Missing", notes=[Note.warning(
                f"the bot's role is not a member of {', '.join(cannot)}: tables those roles create later will not "
                "be covered (the check will fail until fixed)")]))
        if bot.admin_option_matters:
            sections.append(Section("Privileges of the bot", text=f"`{bot.name}` has CREATEROLE (not superuser); "
                                    "on PostgreSQL 16+ it gets the ADMIN option on the role it creates."))
    return Report(title=f"Read-only role {name}", summary=f"create `{name}` on `{target.name}` reading "
                  f"{', '.join(schemas)}: it can read every user's data", sections=sections,
                  data={"role": name, "target": target.name, "schemas": schemas})


def create_role(target: Target, name: str, settings: ReadonlySettings, book: RoleBook | None, *,
                requested_by: str, schemas: list[str] | None = None, request_id: int | None = None,
                on_secret: SecretSink = _ignore) -> tuple[Report, Delivery | None]:
    check_role_name(name)
    if book is None:
        _managed(None, target, name)
    schemas = list(schemas or settings.schemas)
    with target.connect(autocommit=True) as conn:
        bot = require_createrole(conn)
        if system_catalog.role_exists(conn, name):
            raise UsageError(f"a role `{name}` already exists on `{target.name}`: choose another name")
        _schemas(conn, schemas)
        password, verifier = _new_credentials(conn, name, on_secret)
        try:
            with conn.transaction():
                conn.execute(create_role_statement(name, verifier, settings))
                for statement in set_statements(name, settings):
                    conn.execute(statement)
                _self_membership(conn, bot, name)
                grant_failures = apply_steps(conn, grant_steps(conn, name, schemas, settings))
        except psycopg.Error as exc:
            raise _server_error(exc, f"creating role `{name}`") from None
        book.add(target.name, name, schemas, [str(c) for c in settings.withheld], requested_by, request_id)
        report = Report(title=f"Read-only role {name}", summary=f"created `{name}` on `{target.name}`",
                        data={"role": name, "target": target.name, "schemas": schemas})
        report = _verify(conn, target, name, password, schemas, settings, report, grant_failures)
    delivery = _delivery(report, target, name, password)
    book.record_check(target.name, name, report.ok, report.summary)
    return report, delivery


def _verify(conn: psycopg.Connection, target: Target, name: str, password: str, schemas: list[str],
            settings: ReadonlySettings, report: Report, grant_failures: list[Check]) -> Report:
    """Prove by logging in as the role (with a table made afterwards by the bot as creator), then the
    catalog: coverage and audit."""
    probes = _make_probe_tables(conn, schemas)
    try:
        try:
            with connect(role_conninfo(target.dsn, name, password), name=f"{target.name} as {name}",
                         autocommit=True) as role_conn:
                proof = prove(role_conn, name, schemas, settings, probes)
        except DbopsError as exc:
            proof = [Check(f"log in as {name}", False, scrub(str(exc), [password]),
                           "check pg_hba.conf allows password logins for the role")]
    finally:
        _drop_probe_tables(conn, probes)
    bot = system_catalog.bot_role(conn).name
    report.sections.append(_withheld_section(conn, schemas, settings))
    report.sections.append(_boundary_section(conn, settings))
    return _finish(report, [("Grants", grant_failures), (f"Proof (connected as {name})", proof),
                            ("Coverage", coverage(conn, name, schemas, settings)), ("Audit", audit(conn, name, bot))])


def _delivery(report: Report, target: Target, name: str, password: str) -> Delivery | None:
    """Fail closed: credentials of a role that is not proven read-only are not handed over."""
    if not report.ok:
        report.summary += f". The password is NOT handed over: fix the failed checks, then `readonly rotate {name}`"
        return None
    report.summary += (". The connection string goes to the requester only "
                       "(direct or ephemeral message, or the terminal)")
    return Delivery(role=name, target=target.name, url=role_url(target.dsn, name, password), password=password)


def _make_probe_tables(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    """A table the bot makes, as a creator, after the grants: the role must read it through default
    privileges. Committed (the role's session must see it) and dropped right after."""
    made = []
    for schema in schemas:
        if not conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()[0]:
            continue
        name = f"dbops_readonly_probe_{secrets.token_hex(4)}"
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(schema, name)))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(schema, name)))
        made.append(f"{schema}.{name}")
    return made


def _drop_probe_tables(conn: psycopg.Connection, probes: list[str]) -> None:
    for probe in probes:
        schema, name = probe.split(".", 1)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))


def _new_credentials(conn: psycopg.Connection, name: str, on_secret: SecretSink) -> tuple[str, str]:
    """A new password and its SCRAM verifier, each handed to `on_secret` (the scrub list) before any use."""
    password = new_password()
    on_secret(password)
    verifier = scram_verifier(conn, name, password)
    on_secret(verifier)
    return password, verifier


# -- rotate, check, repair, drop -------------------------------------------------------------
def rotate_password(target: Target, name: str, settings: ReadonlySettings, book: RoleBook | None, *,
                    on_secret: SecretSink = _ignore) -> tuple[Report, Delivery | None]:
    managed = _managed(book, target, name)
    with target.connect(autocommit=True) as conn:
        require_admin(conn, name)
        password, verifier = _new_credentials(conn, name, on_secret)
        try:
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                                sql.Literal(verifier)))
        except psycopg.Error as exc:
            raise _server_error(exc, f"rotating the password of `{name}`") from None
        book.rotated(target.name, name)
        report = Report(title=f"Read-only role {name}", summary=f"new password for `{name}` on `{target.name}` "
                        "(sessions already open keep running until they end)",
                        data={"role": name, "target": target.name, "schemas": managed.schemas})
        report = _verify(conn, target, name, password, managed.schemas, settings, report, [])
    delivery = _delivery(report, target, name, password)
    book.record_check(target.name, name, report.ok, report.summary)
    return report, delivery


def check_role(target: Target, name: str, settings: ReadonlySettings, book: RoleBook | None) -> Report:
    """Everything again, without the password (never stored): the catalog, and the write attempts on
    the bot's own session after SET ROLE (its membership in the role, made at create)."""
    managed = _managed(book, target, name)
    report = Report(title=f"Read-only role {name}", summary=f"check of `{name}` on `{target.name}`",
                    data={"role": name, "target": target.name, "schemas": managed.schemas})
    with target.connect(autocommit=True) as conn:
        if not system_catalog.role_exists(conn, name):
            report.outcome = Outcome.FAILED
            report.summary += ": the role no longer exists (dropped outside dbops?)"
            book.record_check(target.name, name, False, report.summary)
            return report
        bot = system_catalog.bot_role(conn)
        proof = _proof_by_set_role(target, conn, bot, name, managed.schemas, settings)
        report.sections.append(_withheld_section(conn, managed.schemas, settings))
        report.sections.append(_boundary_section(conn, settings))
        report = _finish(report, [(f"Proof (SET ROLE {name})", proof),
                                  ("Coverage", coverage(conn, name, managed.schemas, settings)),
                                  ("Audit", audit(conn, name, bot.name))])
    book.record_check(target.name, name, report.ok, report.summary)
    return report


def _proof_by_set_role(target: Target, conn, bot: system_catalog.BotRole, name: str, schemas: list[str],
                       settings: ReadonlySettings) -> list[Check]:
    kind = "SET" if bot.server_version >= 160000 else "MEMBER"
    if not bot.superuser and not conn.execute("SELECT pg_has_role(current_user, %s, %s)", (name, kind)).fetchone()[0]:
        grant = (f"GRANT {_q(conn, name)} TO {_q(conn, bot.name)} WITH INHERIT FALSE, SET TRUE"
                 if bot.server_version >= 160000 else f"GRANT {_q(conn, name)} TO {_q(conn, bot.name)}")
        return [Check("write attempts as the role", False, f"not tried: the bot cannot SET ROLE {name}", grant)]
    with target.connect(autocommit=True) as as_role:
        as_role.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(name)))
        return prove(as_role, name, schemas, settings)


def repair_role(target: Target, name: str, settings: ReadonlySettings, book: RoleBook | None) -> Report:
    managed = _managed(book, target, name)
    with target.connect(autocommit=True) as conn:
        require_admin(conn, name)
        _schemas(conn, managed.schemas)
        try:
            with conn.transaction():
                for statement in set_statements(name, settings):
                    conn.execute(statement)
                failures = apply_steps(conn, grant_steps(conn, name, managed.schemas, settings))
        except psycopg.Error as exc:
            raise _server_error(exc, f"repairing `{name}`") from None
    report = check_role(target, name, settings, book)
    report.summary = f"re-applied the grants of `{name}`; " + report.summary
    if failures:
        report.sections.insert(0, checks_section("Grants not made", failures))
        report.outcome = Outcome.FAILED
        report.summary += f"; {fmt.plural(len(failures), 'grant')} could not be made"
    return report


def drop_role(target: Target, name: str, settings: ReadonlySettings, book: RoleBook | None) -> Report:
    """Revokes what it was given (default privileges included), reassigns what it owns to the bot,
    ends its sessions, then drops it; all or nothing."""
    _managed(book, target, name)
    with target.connect(autocommit=True) as conn:
        if not system_catalog.role_exists(conn, name):
            book.remove(target.name, name)
            return Report(title=f"Read-only role {name}", summary=f"`{name}` did not exist on `{target.name}` any "
                          "more; removed from the list")
        bot = require_admin(conn, name)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))
                _self_membership(conn, bot, name, inherit=True)
            ended = conn.execute(
                """SELECT count(pg_terminate_backend(pid))
                   FROM pg_stat_activity
                   WHERE usename = %s""",
                (name,)).fetchone()[0]
            with conn.transaction():
                for creator, schema, objtype in sorted(system_catalog.default_grants(conn, name)):
                    objects = "TABLES" if objtype == "r" else "SEQUENCES"
                    statement = sql.SQL(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE ALL ON {} FROM {}").format(
                        sql.Identifier(creator), sql.Identifier(schema), sql.SQL(objects), sql.Identifier(name))
                    try:
                        with conn.transaction():
                            conn.execute(statement)
                    except psycopg.errors.InsufficientPrivilege:
                        pass  # DROP OWNED below removes it, or DROP ROLE names it
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise _server_error(exc, f"dropping `{name}`") from None
    book.remove(target.name, name)
    return Report(title=f"Read-only role {name}", summary=f"dropped `{name}` on `{target.name}`: its privileges "
                  f"revoked, anything it owned reassigned to `{bot.name}`, {fmt.plural(ended, 'open session')} ended",
                  data={"role": name, "target": target.name, "sessions_ended": ended})


def list_roles(book: RoleBook | None, target: str | None = None, prefix: str = "dbops") -> Report:
    """The managed roles; `prefix` is how the reader types a command, for naming the next one when
    there is none."""
    if book is None:
        _managed(None, Target(target or "prod", ""), "")
    roles = book.all(target)
    if not roles:
        return Report(title="Read-only roles", summary="No read-only roles managed by dbops yet. "
                      f"Ask for one: `{prefix} readonly create NAME`", data={"roles": []})
    headers = ["target", "role", "schemas", "created by", "created", "password rotated", "last check", "verdict"]
    rows = [[r.target, r.role_name, ", ".join(r.schemas), r.created_by, r.created_at, r.rotated_at, r.checked_at,
             "never checked" if r.check_ok is None else verdict_word(r.check_ok)] for r in roles]
    failing = [r.role_name for r in roles if r.check_ok is False]
    summary = f"{fmt.plural(len(roles), 'read-only role')} managed by dbops" + \
        (f"; failing: {', '.join(failing)}" if failing else "")
    return Report(title="Read-only roles", summary=summary, sections=[Section(
        "Roles (made with CREATE ROLE: Render's dashboard does not show them)", table=Table(headers, rows))],
        data={"roles": [dict(zip(headers, row)) for row in rows]})


def status_line(book: RoleBook, target: str) -> tuple[bool, str]:
    """For /db status and the digest: the last daily check of each role."""
    roles = book.all(target)
    if not roles:
        return True, "none managed"
    failing = [r for r in roles if r.check_ok is False]
    unchecked = [r for r in roles if r.check_ok is None]
    if failing:
        return False, "; ".join(f"`{r.role_name}` FAILED its check ({r.checked_at:%Y-%m-%d %H:%M %Z}): "
                                f"{r.check_summary}" for r in failing[:3])
    names = ", ".join(f"`{r.role_name}`" for r in roles)
    if unchecked:
        return True, f"{names}: not checked yet ({', '.join(r.role_name for r in unchecked)})"
    oldest = min(r.checked_at for r in roles)
    return True, f"{names}: proven read-only (checked {oldest:%Y-%m-%d %H:%M %Z})"
