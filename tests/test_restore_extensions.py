"""Restoring as a non-superuser into a target whose extension another role owns (as on Render, where
the platform creates them): the restore keeps the target's extension instead of failing on its
comment, says so, and "missing roles" lists roles only, never an extension."""
from __future__ import annotations

import os
import secrets

import psycopg
import pytest
from psycopg import sql

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import BackupCatalog, BackupSettings, take_backup
from handlers.restore import RestoreOptions, restore_backup
from handlers.target import Target

RESTORER = "restorer"
PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture
def databases(pg_server):
    tag = f"{os.getpid()}_{id(object())}"
    names = {role: f"{role}_{tag}" for role in ("src", "into", "state")}
    for name in names.values():
        demo_data.create_database(pg_server.dsn(), name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (RESTORER,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(RESTORER),
                                                                            sql.Literal(PASSWORD)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(names["into"]),
                                                                   sql.Identifier(RESTORER)))
    with psycopg.connect(pg_server.dsn(names["src"]), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION citext; CREATE EXTENSION pg_trgm;"
                     "CREATE TABLE people (id int PRIMARY KEY, email citext NOT NULL);"
                     "CREATE INDEX people_trgm ON people USING gin ((email::text) gin_trgm_ops);"
                     "INSERT INTO people SELECT g, 'P' || g || '@example.org' FROM generate_series(1, 50) g")
    with psycopg.connect(pg_server.dsn(names["into"]), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION citext")  # made by the superuser: the restorer does not own it
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(RESTORER)))
    migrate.apply(pg_server.dsn(names["state"]))
    yield {k: pg_server.dsn(v) for k, v in names.items()} | {
        "into_as_restorer": pg_server.dsn(names["into"], user=RESTORER, password=PASSWORD)}
    for name in names.values():
        demo_data.drop_database(pg_server.dsn(), name)


def test_a_non_superuser_restores_over_an_extension_another_role_owns(databases, tmp_path):
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0)
    catalog = BackupCatalog(databases["state"])
    taken = take_backup(Target("prod", databases["src"]), settings, catalog, "U1")
    report = restore_backup(catalog, settings, RestoreOptions(backup=taken.backup_id, source="prod", amcheck=False),
                            Target("recovery", databases["into_as_restorer"]), None)
    assert report.ok, (report.summary, report.data["restore_errors"])
    assert report.data["restore_errors"] == []
    assert report.data["missing_roles"] == []  # `citext` and `pg_trgm` are extensions, not roles
    [kept] = [c for c in report.data["checks"] if c["name"] == "extensions the target keeps"]
    assert "citext" in kept["detail"] and "pg_trgm" not in kept["detail"]
    with psycopg.connect(databases["into_as_restorer"]) as conn:
        assert conn.execute("SELECT count(*) FROM people WHERE email = 'p7@EXAMPLE.org'").fetchone()[0] == 1
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
    assert PASSWORD not in str(report.to_json())
