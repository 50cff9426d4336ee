"""Integrity by default: a backup's manifest carries row checksums, and a changed row fails the
drill's data check, also in a table with a column named `t` (the row alias once hashed that column)."""
from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import BackupCatalog, BackupSettings, take_backup
from handlers.drill import checks as C
from handlers.postgres import pg_tool
from handlers.target import Target


@pytest.fixture
def source(pg_server):
    name = f"integrity_{os.getpid()}_{time.monotonic_ns()}"
    demo_data.create_database(pg_server.dsn(), name)
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE shadowed (id int PRIMARY KEY, t text, note text)")
        conn.execute("INSERT INTO shadowed SELECT g, 'same', 'note ' || g FROM generate_series(1, 300) g")
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.mark.parametrize("column", ["note", "id"])
def test_a_changed_row_fails_the_default_drill_check(source, fresh_db, pg_server, tmp_path, column):
    migrate.apply(fresh_db)
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False)
    assert settings.integrity == "checksums"  # the default
    result = take_backup(Target("prod", source), settings, BackupCatalog(fresh_db), "U1")
    manifest = result.manifest.to_dict()
    assert manifest["integrity_level"] == "checksums" and manifest["tables"][0]["checksum"]

    name = f"restored_{os.getpid()}_{time.monotonic_ns()}"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        dsn = pg_server.dsn(name)
        done = subprocess.run([pg_tool("pg_restore"), "--no-owner", "-d", dsn, result.location],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert C.table_data_check(manifest, C.capture_restored(conn, manifest["integrity_level"])).ok
            # One value of one row, the column `t` untouched: the row count stays, the content does not.
            value = "'changed'" if column == "note" else "1000"
            conn.execute(f"UPDATE shadowed SET {column} = {value} WHERE id = 7")
            check = C.table_data_check(manifest, C.capture_restored(conn, manifest["integrity_level"]))
        assert not check.ok and "content differs" in check.detail
    finally:
        demo_data.drop_database(pg_server.dsn(), name)
