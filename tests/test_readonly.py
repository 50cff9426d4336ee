"""Read-only roles on a real PostgreSQL 18, run as a non-superuser owner with CREATEROLE, as on Render."""
from __future__ import annotations

import itertools
import json
import os
import secrets

import psycopg
import pytest
from psycopg import sql

from bot.core.state import migrate
from handlers import readonly
from handlers.errors import UsageError
from handlers.readonly import ReadonlySettings, RoleBook
from handlers.target import Target

OWNER = "app_owner"
_names = itertools.count(1)
_OWNER_PASSWORD = secrets.token_urlsafe(24)


def new_name() -> str:
    return f"ro_{os.getpid()}_{next(_names)}"


@pytest.fixture(scope="session")
def owner_password(pg_server):
    """app_owner: LOGIN, CREATEROLE, not superuser; the migration owner and the bot's user, like Render's."""
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:  # once per server, whichever module asks
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(OWNER), sql.Literal(_OWNER_PASSWORD)))
    return _OWNER_PASSWORD


def owner_dsn(pg_server, db: str, password: str) -> str:
    return pg_server.dsn(db, user=OWNER, password=password)


def hand_to_owner(pg_server, dsn: str) -> str:
    """The demo database as on Render: the database and every table owned by app_owner."""
    db = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(pg_server.dsn(db), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db), sql.Identifier(OWNER)))
        for (name,) in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                                    " AND relkind = 'r'").fetchall():
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier("public", name),
                                                                      sql.Identifier(OWNER)))
    return db


@pytest.fixture
def env(pg_server, demo_db, fresh_db, owner_password):
    db = hand_to_owner(pg_server, demo_db)
    migrate.apply(fresh_db)

    class Env:
        server = pg_server
        dbname = db
        target = Target("prod", owner_dsn(pg_server, db, owner_password))
        book = RoleBook(fresh_db)
        settings = ReadonlySettings()
        secrets_seen: list[str] = []

        def superuser(self):
            return psycopg.connect(pg_server.dsn(db), autocommit=True)

        def owner(self):
            return psycopg.connect(self.target.dsn, autocommit=True)

        def create(self, name=None, **kw):
            name = new_name() if name is None else name
            report, delivery = readonly.create_role(self.target, name, kw.pop("settings", self.settings), self.book,
                                                    requested_by="U0BOSS", on_secret=self.secrets_seen.append, **kw)
            return name, report, delivery

    return Env()


def check_named(report, title: str, name_part: str) -> dict:
    rows = [c for c in report.data["checks"][title] if name_part in c["check"]]
    assert rows, f"no check {name_part!r} in {title}: {[c['check'] for c in report.data['checks'][title]]}"
    return rows[0]


def test_the_owner_is_not_a_superuser(env):
    with env.owner() as conn:
        assert conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone() \
            == (False, True)


def test_create_proves_every_write_refused_by_privileges_and_audits_clean(env):
    name, report, delivery = env.create()
    assert report.ok, report.summary
    proof = f"Proof (connected as {name})"
    for part in ("INSERT on every table (10)", "UPDATE on every", "DELETE on every", "TRUNCATE on every", "DDL: ALTER TABLE", "DDL: CREATE SCHEMA",
                 "DDL: CREATE TABLE in public", "nextval(", "reading withheld column public.Users.PasswordHash",
                 "reading withheld column public.RefreshTokens.TokenHash", "SELECT * FROM public.Users",
                 "write after SET default_transaction_read_only = off", "write after BEGIN READ WRITE",
                 "write after SET SESSION CHARACTERISTICS", "write after SET transaction_read_only = off"):
        row = check_named(report, proof, part)
        assert row["ok"] and "42501" in row["detail"], row
    assert check_named(report, proof, "created after the grants")["ok"]
    assert check_named(report, proof, "reads the 10 tables")["ok"]
    assert all(c["ok"] for c in report.data["checks"]["Audit"])
    assert all(c["ok"] for c in report.data["checks"]["Coverage"])
    text = json.dumps(report.to_json())
    assert "pg_read_all_data" in text and "SELECT *" in text and "fails by design" in text
    assert "public.Users.PasswordHash" in text
    assert delivery is not None and delivery.role == name
    with env.owner() as conn:  # the probe table is gone, and the role is listed
        assert not conn.execute("SELECT 1 FROM pg_class WHERE relname LIKE 'dbops_readonly_probe%'").fetchall()
        assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (name,)).fetchone()[0] == 5
    assert [r.role_name for r in env.book.all("prod")] == [name]
    assert env.book.get("prod", name).check_ok is True


def test_the_delivered_connection_reads_but_every_escape_from_read_only_still_cannot_write(env):
    name, _, delivery = env.create()
    assert len(delivery.password) >= 32
    with psycopg.connect(delivery.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == name
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
        assert conn.execute('SELECT count("Email") FROM "Users"').fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT "PasswordHash" FROM "Users" LIMIT 1')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT * FROM "RefreshTokens" LIMIT 1')
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("""UPDATE "Notes" SET "Title" = 'owned' """)
        conn.execute("BEGIN READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('DELETE FROM "Users"')
        conn.execute("ROLLBACK")
        # A role may lift its own default: that is why the default is not the boundary ...
        conn.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")
    with psycopg.connect(delivery.url, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        for statement in ('TRUNCATE "Notes"', 'INSERT INTO "Boards" ("UserId", "Name") VALUES (1, \'x\')',
                          'CREATE TABLE public.mine (id int)', "SELECT nextval('\"Notes_Id_seq\"')",
                          'ALTER TABLE "Users" DROP COLUMN "Email"', "CREATE SCHEMA mine"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with env.owner() as conn:  # ... and `check` sees it was lifted and says how to put it back
        conn.execute("SELECT 1")
    report = readonly.check_role(env.target, name, env.settings, env.book)
    limits = check_named(report, "Coverage", "session limits")
    assert not limits["ok"] and "default_transaction_read_only (is off)" in limits["detail"]
    assert report.data["checks"][f"Proof (SET ROLE {name})"] and all(
        c["ok"] for c in report.data["checks"][f"Proof (SET ROLE {name})"])
    repaired = readonly.repair_role(env.target, name, env.settings, env.book)
    assert repaired.ok, repaired.summary


def test_a_table_the_migration_owner_creates_later_is_readable(env):
    name, _, delivery = env.create()
    with env.owner() as conn:
        conn.execute('CREATE TABLE "Tags" ("Id" bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "Name" text)')
        conn.execute("""INSERT INTO "Tags" ("Name") VALUES ('work')""")
    with psycopg.connect(delivery.url, autocommit=True) as conn:
        assert conn.execute('SELECT "Name" FROM "Tags"').fetchall() == [("work",)]
        assert conn.execute('SELECT last_value FROM "Tags_Id_seq"').fetchone() is not None
    report = readonly.check_role(env.target, name, env.settings, env.book)
    assert report.ok, report.summary


def test_a_new_owner_escapes_default_privileges_check_says_so_and_repair_fixes_it_once_allowed(env):
    name, _, _ = env.create()
    newcomer = f"rotated_{name}"
    with env.superuser() as conn:  # a Render credential rotation: a new user runs the next migration
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(newcomer)))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(newcomer)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(newcomer)))
        conn.execute('CREATE TABLE "Invoices" ("Id" bigint PRIMARY KEY, "Total" numeric)')
    report = readonly.check_role(env.target, name, env.settings, env.book)
    assert not report.ok
    reads = check_named(report, "Coverage", "reads every table")
    assert not reads["ok"] and f"public.Invoices (owner {newcomer})" in reads["detail"]
    defaults = check_named(report, "Coverage", "default privileges")
    assert not defaults["ok"] and f'ALTER DEFAULT PRIVILEGES FOR ROLE "{newcomer}" IN SCHEMA "public"' in defaults["fix"]
    assert env.book.get("prod", name).check_ok is False
    ok, line = readonly.status_line(env.book, "prod")
    assert not ok and name in line and "FAILED" in line

    refused = readonly.repair_role(env.target, name, env.settings, env.book)
    assert not refused.ok and "could not be made" in refused.summary  # the bot does not hold the newcomer's rights
    with env.superuser() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(newcomer), sql.Identifier(OWNER)))
    repaired = readonly.repair_role(env.target, name, env.settings, env.book)
    assert repaired.ok, repaired.summary
    assert readonly.status_line(env.book, "prod")[0]


def test_a_column_added_to_a_withheld_table_is_caught_and_repaired(env):
    name, _, _ = env.create()
    with env.owner() as conn:
        conn.execute('ALTER TABLE "Users" ADD COLUMN "Bio" text')
    report = readonly.check_role(env.target, name, env.settings, env.book)
    columns = check_named(report, "Coverage", "every column")
    assert not columns["ok"] and "public.Users.Bio" in columns["detail"]
    assert readonly.repair_role(env.target, name, env.settings, env.book).ok


def test_a_withheld_column_made_readable_by_a_grant_and_a_sequence_made_unreadable_are_caught(env):
    name, _, _ = env.create()
    with env.owner() as conn:
        conn.execute(sql.SQL('GRANT SELECT ("PasswordHash") ON "Users" TO {}').format(sql.Identifier(name)))
        conn.execute(sql.SQL('GRANT SELECT ON "RefreshTokens" TO {}').format(sql.Identifier(name)))
        conn.execute('CREATE SEQUENCE "InvoiceNumbers"')
        conn.execute(sql.SQL('REVOKE ALL ON SEQUENCE "InvoiceNumbers" FROM {}').format(sql.Identifier(name)))
    report = readonly.check_role(env.target, name, env.settings, env.book)
    withheld = check_named(report, "Coverage", "withheld columns")
    assert not withheld["ok"]
    assert "public.Users.PasswordHash" in withheld["detail"]
    assert "public.RefreshTokens: SELECT on the whole table reads" in withheld["detail"]
    reads = check_named(report, "Coverage", "reads every table")
    assert not reads["ok"] and "public.InvoiceNumbers (owner" in reads["detail"]
    columns = check_named(report, "Coverage", "every column")
    assert columns["ok"], columns["detail"]  # the other columns are all still readable


def test_a_planted_security_definer_function_is_caught_with_its_fix(env):
    name, _, delivery = env.create()
    with env.owner() as conn:
        conn.execute('CREATE FUNCTION public.purge_notes() RETURNS void LANGUAGE sql SECURITY DEFINER'
                     ' AS $$ DELETE FROM "Notes" $$')
    with psycopg.connect(delivery.url, autocommit=True) as conn:  # the danger is real ...
        conn.execute("BEGIN READ WRITE")
        conn.execute("SELECT public.purge_notes()")
        assert conn.execute('SELECT count(*) FROM "Notes"').fetchone()[0] == 0
        conn.execute("ROLLBACK")
    report = readonly.check_role(env.target, name, env.settings, env.book)
    found = check_named(report, "Audit", "SECURITY DEFINER")
    assert not found["ok"] and "purge_notes()" in found["detail"] and "runs as app_owner" in found["detail"]
    assert found["fix"].startswith("REVOKE EXECUTE ON ROUTINE purge_notes() FROM PUBLIC")
    with env.owner() as conn:
        conn.execute("REVOKE EXECUTE ON ROUTINE purge_notes() FROM PUBLIC")
    assert readonly.check_role(env.target, name, env.settings, env.book).ok


def test_the_audit_names_every_way_left_to_write_with_the_statement_that_fixes_it(env):
    name, _, _ = env.create()
    q = sql.Identifier(name)
    with env.superuser() as conn:
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(q))
        conn.execute(sql.SQL('GRANT INSERT ON "Notes" TO {}').format(q))
        conn.execute('GRANT UPDATE ON "Boards" TO PUBLIC')
        conn.execute(sql.SQL('GRANT UPDATE ("Title") ON "Notes" TO {}').format(q))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(q))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(env.dbname), q))
        conn.execute(sql.SQL('GRANT USAGE ON SEQUENCE "Users_Id_seq" TO {}').format(q))
        conn.execute(sql.SQL('CREATE TABLE public.owned_by_ro (id int)'))
        conn.execute(sql.SQL('ALTER TABLE public.owned_by_ro OWNER TO {}').format(q))
        loid = conn.execute("SELECT lo_from_bytea(0, 'x')").fetchone()[0]
        conn.execute(sql.SQL("GRANT UPDATE ON LARGE OBJECT {} TO {}").format(sql.Literal(loid), q))
    report = readonly.check_role(env.target, name, env.settings, env.book)
    audit = {c["check"]: c for c in report.data["checks"]["Audit"]}
    member = audit["memberships (pg_write_all_data, pg_signal_backend, any role)"]
    assert not member["ok"] and member["fix"] == f'REVOKE "pg_signal_backend" FROM "{name}"'
    writes = audit["privileges beyond reading on tables and views"]
    assert not writes["ok"]
    assert 'REVOKE UPDATE ON TABLE "public"."Boards" FROM PUBLIC' in writes["fix"]
    assert f'REVOKE INSERT ON TABLE "public"."Notes" FROM "{name}"' in writes["fix"]
    assert not audit["CREATE on a schema or the database"]["ok"]
    assert f'REVOKE CREATE ON SCHEMA "public" FROM "{name}"' in audit["CREATE on a schema or the database"]["fix"]
    assert f'REVOKE CREATE ON DATABASE "{env.dbname}" FROM "{name}"' in audit["CREATE on a schema or the database"]["fix"]
    assert not audit["nextval/setval on sequences"]["ok"]
    assert not audit["owned objects"]["ok"] and "owned_by_ro" in audit["owned objects"]["detail"]
    assert not audit["large-object writes"]["ok"] and str(loid) in audit["large-object writes"]["fix"]
    nextval = check_named(report, f"Proof (SET ROLE {name})", "nextval(public.Users_Id_seq)")
    assert not nextval["ok"]  # not tried (it would move the sequence): the catalog says it is allowed
    with env.superuser() as conn:  # every fix the audit gave, run as is, makes it pass
        for check in audit.values():
            for statement in filter(None, (s.strip() for s in check["fix"].split(";"))):
                conn.execute(statement.replace(" (in each database)", ""))
        conn.execute(sql.SQL("DROP TABLE public.owned_by_ro"))  # reassigned to the bot by the fix
    after = readonly.check_role(env.target, name, env.settings, env.book)
    assert after.ok, after.summary


def test_hostile_and_reserved_names_are_refused_clearly(env):
    for name, why in (('x; DROP TABLE "Users"', "not a valid role name"), ("Analytics", "not a valid role name"),
                      ("a" * 64, "not a valid role name"), ("pg_reader", "reserved"), ("postgres", "reserved"),
                      ("public", "reserved"), ("", "not a valid role name"), ("ro\x00x", "not a valid role name")):
        with pytest.raises(UsageError) as caught:
            env.create(name)
        assert why in str(caught.value) and caught.value.exit_code == 2
    with pytest.raises(UsageError, match="already exists") as caught:
        env.create(OWNER)
    assert caught.value.exit_code == 2
    with env.owner() as conn:
        assert conn.execute('SELECT count(*) FROM "Users"').fetchone()[0] > 0
    with pytest.raises(UsageError, match="no schema `nope`"):
        env.create(schemas=["public", "nope"])


def test_a_role_dbops_did_not_create_is_never_rotated_repaired_or_dropped(env):
    for action in (readonly.rotate_password, readonly.repair_role, readonly.drop_role, readonly.check_role):
        with pytest.raises(UsageError, match="not a read-only role dbops manages"):
            action(env.target, OWNER, env.settings, env.book)


def test_missing_createrole_and_missing_admin_option_are_named(env, pg_server):
    plain = f"plain_{os.getpid()}_{next(_names)}"
    password = secrets.token_urlsafe(24)
    with env.superuser() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(plain), sql.Literal(password)))
    weak = Target("prod", pg_server.dsn(env.dbname, user=plain, password=password))
    with pytest.raises(readonly.MissingPrivilege, match=f'lacks CREATEROLE.*ALTER ROLE "{plain}" CREATEROLE'):
        readonly.create_role(weak, new_name(), env.settings, env.book, requested_by="U0BOSS")
    foreign = new_name()  # made by someone else: app_owner holds no ADMIN option on it
    with env.superuser() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(foreign)))
    env.book.add("prod", foreign, ["public"], [], "U0BOSS")
    with pytest.raises(readonly.MissingPrivilege, match=f'not the ADMIN option on `{foreign}`.*GRANT "{foreign}" TO '
                                                        f'"{OWNER}" WITH ADMIN OPTION'):
        readonly.rotate_password(env.target, foreign, env.settings, env.book)


def test_rotate_replaces_the_password_and_hands_over_the_new_one(env):
    name, _, first = env.create()
    report, second = readonly.rotate_password(env.target, name, env.settings, env.book, on_secret=env.secrets_seen.append)
    assert report.ok and second is not None and second.password != first.password
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(first.url).close()
    with psycopg.connect(second.url) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == name
    assert env.book.get("prod", name).rotated_at is not None


def test_drop_revokes_reassigns_ends_sessions_and_forgets(env):
    name, _, delivery = env.create()
    session = psycopg.connect(delivery.url, autocommit=True)
    with env.superuser() as conn:
        conn.execute(sql.SQL("CREATE TABLE public.leftover (id int)"))
        conn.execute(sql.SQL("ALTER TABLE public.leftover OWNER TO {}").format(sql.Identifier(name)))
    report = readonly.drop_role(env.target, name, env.settings, env.book)
    assert report.ok and report.data["sessions_ended"] == 1
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    with env.owner() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None
        assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'leftover'").fetchone() \
            == (OWNER,)
    assert env.book.get("prod", name) is None
    assert "No read-only roles" in readonly.list_roles(env.book, "prod").summary


def test_a_role_that_fails_its_proof_gets_no_password(env):
    settings = ReadonlySettings(withheld=())
    with env.superuser() as conn:  # PUBLIC may write one table: nothing the role is given can fix that
        conn.execute('GRANT DELETE ON "Notes" TO PUBLIC')
    name, report, delivery = env.create(settings=settings)
    assert not report.ok and delivery is None and "NOT handed over" in report.summary
    delete = check_named(report, f"Proof (connected as {name})", "DELETE")
    assert not delete["ok"] and "public.Notes (it worked)" in delete["detail"]
    with env.superuser() as conn:
        conn.execute('REVOKE DELETE ON "Notes" FROM PUBLIC')


def test_a_replica_makes_the_report_point_at_it(env):
    _, report, _ = env.create(settings=ReadonlySettings(replica=True))
    boundary = next(s for s in report.sections if s.title == "Boundary").text
    assert "read replica" in boundary and "stronger boundary" in boundary


def test_no_password_reaches_a_report_the_server_log_or_pg_stat_statements(env):
    name, report, delivery = env.create()
    _, rotated = readonly.rotate_password(env.target, name, env.settings, env.book, on_secret=env.secrets_seen.append)
    passwords = [delivery.password, rotated.password]
    assert all(p in env.secrets_seen for p in passwords)
    from bot.core import output

    shown = output.to_text(report) + output.to_json(report) + repr(delivery) + str(delivery)
    log = (env.server.server_dir / "server.log").read_text(errors="replace")
    with env.superuser() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        statements = " ".join(r[0] for r in conn.execute("SELECT query FROM pg_stat_statements").fetchall())
    for password in passwords:
        assert password not in shown and password not in log and password not in statements
    assert env.book.get("prod", name) is not None
    with env.superuser() as conn:
        stored = json.dumps(conn.execute("SELECT row_to_json(r) FROM (SELECT 1) r").fetchall())
    assert all(p not in stored for p in passwords)


def test_settings_are_checked():
    from handlers.errors import ConfigError

    parsed = ReadonlySettings.from_dict({"schemas": ["public", "reporting"], "withheld": ["Users.Email"],
                                         "statement_timeout": "5min", "check_time": "off"})
    assert parsed.schemas == ("public", "reporting") and str(parsed.withheld[0]) == "public.Users.Email"
    assert parsed.check_time is None
    for bad in ({"withheld": ["Email"]}, {"statement_timeout": "0"}, {"statement_timeout": "1 day"},
                {"schemas": []}, {"connection_limit": 0}, {"colour": "red"}, {"check_time": "25h"},
                {"replica": "yes"}):
        with pytest.raises(ConfigError):
            ReadonlySettings.from_dict(bad)
