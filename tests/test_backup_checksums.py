"""Content checksums: one changed value in any column of any row changes its table's checksum, whatever
the columns are named or typed; the same rows give the same checksum after a restore (the drill);
and a manifest is always checked with the method it was made with."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import BackupCatalog, BackupSettings, take_backup
from handlers.backup.manifest import (
    ROW_TEXT,
    ROW_VALUES,
    BackupManifest,
    UnknownChecksumMethod,
    capture_manifest,
    checksum_method,
)
from handlers.backup.storage import sha256_file
from handlers.drill import DrillSettings, run_drill
from handlers.drill import checks as C
from handlers.target import Target

# Columns named like the row alias and SQL words, and types hashed every way the checksum knows:
# by value, by text (no hash function: point, json, money; equality looser than the value: numeric,
# float, interval, jsonb, arrays; OID-based: enum, regclass), a domain, an extension type (citext).
SCHEMA = """
    CREATE EXTENSION citext;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN short_text AS varchar(20);
    CREATE TABLE empty_row ();
    INSERT INTO empty_row DEFAULT VALUES;
    CREATE TABLE odd (
        id int PRIMARY KEY, t text, "row" int, hash bigint, p point, n numeric, f float8, i interval,
        j jsonb, js json, a int[], m mood, d short_text, c citext, r regclass, money money, b bytea,
        ts timestamptz, u uuid, ip inet, ch char(4), ok boolean);
    INSERT INTO odd SELECT g, 'same', 7, 42, point(1, 2), 1.5, 0, '1 day', '{"a": 1.0}', '{"a": 1}',
        '{1,2,3,4}', 'ok', 'short', 'Case', 'empty_row', 12.5, '\\x0102', '2024-01-02 03:04:05+00',
        '00000000-0000-0000-0000-000000000001', '10.0.0.1/32', 'abcd', true
    FROM generate_series(1, 50) g;
"""

# One value changed in row 7, column by column: a flipped byte of its text, and for the types whose
# equality is looser than their value, a value equal to the old one that prints otherwise.
CHANGES = [
    ("t", "'samd'"), ("row", "6"), ("hash", "43"), ("p", "point(1, 3)"), ("n", "1.4"), ("n", "1.50"),
    ("f", "1"), ("f", "'-0'"), ("i", "'24 hours'"), ("j", """'{"a": 1.00}'"""),
    ("j", """'{"b": 1.0}'"""), ("js", """'{"a": 0}'"""), ("a", "'{{1,2},{3,4}}'"), ("a", "'[0:3]={1,2,3,4}'"),
    ("a", "'{1,2,3,5}'"), ("m", "'sad'"), ("d", "'shorp'"), ("c", "'case'"), ("r", "'odd'"),
    ("money", "12.6"), ("b", "'\\x0103'"), ("ts", "'2024-01-02 03:04:04+00'"),
    ("u", "'00000000-0000-0000-0000-000000000003'"), ("ip", "'10.0.0.1/31'"), ("ch", "'abce'"), ("ok", "false"),
    ("t", "NULL"), ("n", "NULL"), ("id", "1000"),
]


@pytest.fixture
def odd_db(pg_server):
    name = f"checksums_{os.getpid()}_{time.monotonic_ns()}"
    demo_data.create_database(pg_server.dsn(), name)
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


def checksums(conn: psycopg.Connection, method: str | None = None) -> dict[str, str]:
    manifest = capture_manifest(conn, "checksums", method)
    return {t["name"]: t["checksum"] for t in manifest["tables"]}


@pytest.mark.parametrize("method", [ROW_VALUES, ROW_TEXT])
def test_one_changed_value_in_any_column_changes_the_table_checksum(odd_db, method):
    with psycopg.connect(odd_db) as conn:
        with conn.transaction():
            before = checksums(conn, method)
            assert capture_manifest(conn, "checksums", method)["checksum_method"] == method
        for column, value in CHANGES:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("UPDATE odd SET {} = ").format(sql.Identifier(column)) + sql.SQL(value)
                             + sql.SQL(" WHERE id = 7"))
                after = checksums(conn, method)
            assert after["odd"] != before["odd"], f"{method}: changing {column} to {value} kept the checksum"
            assert after["empty_row"] == before["empty_row"]
        with conn.transaction():
            assert checksums(conn, method) == before  # every change was rolled back: the same rows again


def test_rows_swapping_a_column_value_change_the_checksum(odd_db):
    # Each row's hash is mixed before the sum: a sum of plain per-column hashes would not see this.
    with psycopg.connect(odd_db) as conn:
        conn.execute("UPDATE odd SET hash = id, t = 'text ' || id")
        conn.commit()
        with conn.transaction():
            before = checksums(conn)
        for column in ("hash", "t"):
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("UPDATE odd SET {c} = CASE id WHEN 3 THEN (SELECT {c} FROM odd WHERE id = 4) "
                                     "ELSE (SELECT {c} FROM odd WHERE id = 3) END WHERE id IN (3, 4)").format(
                    c=sql.Identifier(column)))
                assert checksums(conn)["odd"] != before["odd"], f"swapping {column} of two rows went unseen"


def test_the_checksum_does_not_depend_on_row_order_or_output_settings(odd_db):
    with psycopg.connect(odd_db) as conn:
        with conn.transaction():
            before = checksums(conn)
        # A rewritten table (another physical order) under other session settings: the same rows.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        conn.execute("SET extra_float_digits = 0")
        conn.execute("CLUSTER odd USING odd_pkey")
        conn.execute("UPDATE odd SET id = id WHERE id % 2 = 0")
        conn.commit()
        with conn.transaction():
            assert checksums(conn) == before


def test_enum_and_regclass_values_are_hashed_by_name_not_by_their_oids(odd_db):
    # A restore creates the enum and the tables anew, with other OIDs: the same rows must agree.
    with psycopg.connect(odd_db) as conn:
        with conn.transaction():
            before = checksums(conn)
        conn.execute("ALTER TABLE odd ALTER m TYPE text")
        conn.execute("DROP TYPE mood")
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute("ALTER TABLE odd ALTER m TYPE mood USING m::mood")
        old_oid = conn.execute("SELECT 'empty_row'::regclass::oid").fetchone()[0]
        conn.execute("DROP TABLE empty_row")
        conn.execute("CREATE TABLE empty_row (); INSERT INTO empty_row DEFAULT VALUES")
        conn.execute("UPDATE odd SET r = 'empty_row'")  # the dropped table's number, now the new table
        assert conn.execute("SELECT 'empty_row'::regclass::oid").fetchone()[0] != old_oid
        conn.commit()
        with conn.transaction():
            assert checksums(conn) == before
            conn.execute("UPDATE public.odd SET r = 'public.odd' WHERE id = 7")
            assert checksums(conn)["odd"] != before["odd"]


def test_a_drill_restores_the_same_checksums_and_catches_a_changed_value(odd_db, fresh_db, tmp_path):
    migrate.apply(fresh_db)
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False, compression="none")
    result = take_backup(Target("prod", odd_db), settings, BackupCatalog(fresh_db), "U1")
    manifest = result.manifest.to_dict()
    assert manifest["integrity_level"] == "checksums" and manifest["checksum_method"] == ROW_VALUES
    work = Path(tempfile.mkdtemp(prefix="ck-", dir="/tmp"))  # short: a Unix socket path holds 107 bytes
    work.chmod(0o755)
    try:
        drill = DrillSettings.from_dict({"work_dir": str(work / "drills"), "jobs": 2, "amcheck": False})
        passed = run_drill(manifest, result.location, drill)
        data = next(c for c in passed.checks if c.name.startswith("row counts and content checksums"))
        # Enum and regclass values have other OIDs in the restored copy: hashed by text, they agree.
        assert data.ok, data.detail
        assert passed.passed, passed.to_markdown()

        # A manifest from before "checksum_method" (row text): the drill recomputes row text.
        with psycopg.connect(odd_db) as conn, conn.transaction():
            old_tables = capture_manifest(conn, "checksums", ROW_TEXT)["tables"]
        assert {t["checksum"] for t in old_tables}.isdisjoint({t["checksum"] for t in manifest["tables"]})
        old = {k: v for k, v in manifest.items() if k != "checksum_method"} | {"tables": old_tables}
        data = next(c for c in run_drill(old, result.location, drill).checks
                    if c.name.startswith("row counts and content checksums"))
        assert data.ok, data.detail

        # One byte of one value in the archive (uncompressed: the row's text is in the file).
        archive = tmp_path / "changed.dump"
        shutil.copy(result.location, archive)
        raw = bytearray(archive.read_bytes())
        at = raw.find(b"Case")
        assert at > 0
        raw[at] ^= 0x20  # 'C' -> 'c': the same citext value to its equality, another value to the app
        archive.write_bytes(bytes(raw))
        damaged = {**manifest, "archive": {**manifest["archive"], "sha256": sha256_file(archive),
                                           "path": str(archive)}}
        failed = run_drill(damaged, archive, drill)
        data = next(c for c in failed.checks if c.name.startswith("row counts and content checksums"))
        assert not data.ok and "table public.odd: same row count (50) but the content differs" in data.detail
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_an_older_manifest_is_checked_with_the_row_text_method(odd_db, pg_server):
    with psycopg.connect(odd_db) as conn:
        with conn.transaction():
            old = capture_manifest(conn, "checksums", ROW_TEXT)
    del old["checksum_method"]  # as dbops wrote manifests before the field
    assert checksum_method(old) == ROW_TEXT
    with psycopg.connect(odd_db, autocommit=True) as conn:
        assert C.table_data_check(old, C.capture_restored(conn, "checksums", checksum_method(old))).ok
        # Checksums of the other method are never compared with it as if the data differed.
        mixed = C.table_data_check(old, C.capture_restored(conn, "checksums", ROW_VALUES))
        assert not mixed.ok and "cannot be compared" in mixed.detail and "content differs" not in mixed.detail
        conn.execute("UPDATE odd SET t = 'samd' WHERE id = 7")
        changed = C.table_data_check(old, C.capture_restored(conn, "checksums", checksum_method(old)))
        assert not changed.ok and "table public.odd: same row count (50) but the content differs" in changed.detail


def test_an_unknown_checksum_method_is_a_clear_error(odd_db):
    with psycopg.connect(odd_db) as conn, conn.transaction():
        with pytest.raises(UnknownChecksumMethod, match="'row-sha3'.*upgrade dbops"):
            capture_manifest(conn, "checksums", "row-sha3")


def test_the_method_is_kept_in_the_manifest_document_and_absent_from_older_ones():
    doc = {"backup_id": "b1", "target": "prod", "database": "d", "created_at": "2024-01-01T00:00:00+00:00",
           "integrity_level": "checksums", "tables": [], "schema": {}}
    old = BackupManifest.from_dict(doc)
    assert old.checksum_method is None and "checksum_method" not in old.to_dict()
    assert checksum_method(old.to_dict()) == ROW_TEXT
    new = BackupManifest.from_dict({**doc, "checksum_method": ROW_VALUES})
    assert new.to_dict()["checksum_method"] == ROW_VALUES
    assert checksum_method({**doc, "integrity_level": "counts"}) is None
