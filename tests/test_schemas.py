"""One filter of the application's schemas (handlers/schemas.py), run on a real server."""
import psycopg

from handlers import schemas


def test_application_schemas_leave_out_postgres_and_the_bot_and_keep_look_alikes(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        # Names that look like system or bot schemas but are the application's.
        for name in ("app", "pgx", "dbops_app", "Dbops", "information_schema2"):
            conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute("CREATE SCHEMA dbops")
        conn.execute("CREATE TEMP TABLE scratch (i int)")  # creates a pg_temp_N and pg_toast_temp_N
        found = {r[0] for r in conn.execute(
            f"SELECT n.nspname FROM pg_namespace n WHERE {schemas.application('n')}").fetchall()}
        system_free = {r[0] for r in conn.execute(
            f"SELECT n.nspname FROM pg_namespace n WHERE {schemas.not_system('n')}").fetchall()}
    assert found == {"public", "app", "pgx", "dbops_app", "Dbops", "information_schema2"}
    assert system_free == found | {"dbops"}


def test_extension_members_are_left_out(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.execute("CREATE TABLE public.own (i int)")
        functions = {r[0] for r in conn.execute(
            f"""SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE {schemas.application('n')} AND {schemas.not_extension_member('pg_proc', 'p')}""").fetchall()}
        tables = {r[0] for r in conn.execute(
            f"""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND {schemas.application('n')}
                  AND {schemas.not_extension_member('pg_class', 'c')}""").fetchall()}
    assert "similarity" not in functions  # pg_trgm's, installed in public
    assert tables == {"own"}
