"""Issue 23: no command changes shared state by accident, and what the person types is read as meant.

A `backup verify` without the key (an operator's laptop) leaves the shared catalog, the records in
storage and `status` exactly as they were; with `backup.encrypt = true` and no key only what needs
the key refuses, naming it. Then the smaller readings: `-- dbops:ignore` at the end of a statement's
line, a byte order mark, a mistyped subcommand. Real `dbops` processes on a real database."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import psycopg
import psycopg.rows
import pytest

from handlers.errors import UsageError
from handlers.migrations.check import check_migration
from handlers.migrations.parsing import parse_statements
from tests.test_cli import dbops
from tests.test_golden import normalise


def _catalog(dsn: str) -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM dbops.backups ORDER BY id").fetchall()


def _changed(before: list[dict], after: list[dict]) -> list[str]:
    """What differs between two reads of the catalog: "b001.verify_status", "b002 (new)"."""
    old = {r["id"]: r for r in before}
    return [f"{r['id']} (new)" if r["id"] not in old else f"{r['id']}.{k}"
            for r in after for k in r if r["id"] not in old or r[k] != old[r["id"]][k]]


def _records_in_storage(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def encrypted(demo_db, tmp_path):
    """A target with one encrypted, verified backup b001; (env without the key, env with it)."""
    config = tmp_path / "dbops.toml"
    config.write_text("[backup]\nencrypt = true\n")
    env = {"DATABASE_URL": demo_db, "DBOPS_BACKUP_DIR": str(tmp_path / "backups"), "DBOPS_CONFIG": str(config)}
    with_key = {**env, "DBOPS_BACKUP_KEY": base64.b64encode(os.urandom(32)).decode()}
    taken = dbops("backup", env=with_key)
    assert taken.returncode == 0, taken.stderr
    return env, with_key


def test_backup_verify_without_the_key_leaves_the_catalog_and_status_as_they_were(encrypted, demo_db, tmp_path):
    env, with_key = encrypted
    rows, stored = _catalog(demo_db), _records_in_storage(tmp_path / "backups")
    status = dbops("status", env=with_key)  # exit 1: no drill has passed yet; backups are fine
    assert "newest verified backup of prod is b001" in status.stdout, status.stdout + status.stderr
    assert "Backups:" not in status.stdout.split("== Targets")[0]

    verify = dbops("backup", "verify", "b001", env=env)
    assert verify.returncode == 1
    assert "not checked here (no key)" in verify.stdout and "DBOPS_BACKUP_KEY" in verify.stdout
    assert 'Nothing was recorded: its verification stays "yes"' in " ".join(verify.stdout.split())

    assert _changed(rows, _catalog(demo_db)) == []  # the shared catalog: nothing changed
    assert _records_in_storage(tmp_path / "backups") == stored  # nor the verification record beside the archive
    again = dbops("status", env=with_key)
    assert (again.returncode, normalise(again.stdout)) == (status.returncode, normalise(status.stdout))


def test_with_encryption_on_and_no_key_only_what_needs_the_key_refuses_naming_it(encrypted, demo_db):
    env, _ = encrypted
    rows = _catalog(demo_db)
    status = dbops("status", env=env)
    assert status.returncode in (0, 1) and not status.stderr, status.stderr  # it answers: no key is needed for it
    shown = " ".join(status.stdout.split())
    assert "newest verified backup of prod is b001" in shown and "not checked here (no key)" in shown
    assert "Backups:" not in status.stdout.split("== Targets")[0]  # not a problem of the backups
    listed = dbops("backup", "list", env=env)
    assert listed.returncode == 0 and "not checked here (no key)" in " ".join(listed.stdout.split())
    assert "b001" in listed.stdout

    backup = dbops("backup", env=env)
    assert backup.returncode == 2 and "DBOPS_BACKUP_KEY is not set here" in backup.stderr
    drill = dbops("drill", env=env)
    assert drill.returncode == 2
    assert "backup b001 is encrypted and DBOPS_BACKUP_KEY is not set here" in drill.stderr
    assert "backup.encrypt is on" not in drill.stderr  # the reason is the backup's encryption, not the setting
    assert _changed(rows, _catalog(demo_db)) == []  # no failed backup recorded for everyone to see, no drill either
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM dbops.drills").fetchone()[0] == 0


# -- where a dbops:ignore comment goes -----------------------------------------------------------
def test_ignore_at_the_end_of_a_statements_line_silences_that_statement_only():
    sql = ('ALTER TABLE "Notes" RENAME COLUMN "Title" TO "Heading"; -- dbops:ignore rename-column\n'
           'ALTER TABLE "Users" RENAME COLUMN "Bio" TO "About";\n'
           '-- dbops:ignore rename-column, rename-table\n'
           'ALTER TABLE "Boards" RENAME COLUMN "Name" TO "Title";\n'
           "ALTER TABLE \"Projects\" RENAME COLUMN \"Code\" TO \"Key\" /* dbops:ignore rename-column */;\n"
           "SELECT '-- dbops:ignore truncate'; TRUNCATE \"AuditLogs\"; -- dbops:ignore truncate\n")
    statements = parse_statements(sql)
    assert [sorted(s.ignored) for s in statements] == [
        ["rename-column"], [], ["rename-column", "rename-table"], ["rename-column"], [], ["truncate"]]
    found = check_migration(sql, filename="x.sql").findings
    assert [(f.code, f.line) for f in found if f.code == "rename-column"] == [("rename-column", 2)]
    assert any(f.code == "truncate" for f in found)  # a forbidden finding is never silenced


def test_a_byte_order_mark_is_left_out_at_the_start_and_refused_elsewhere():
    sql = '\ufeffALTER TABLE "Notes" ADD COLUMN "Rank" integer;'
    statements = parse_statements(sql)
    assert statements[0].text.startswith("ALTER TABLE") and statements[0].line == 1
    found = check_migration(sql, filename="x.sql").findings
    assert found[0].code == "byte-order-mark" and "leaves it out" in found[0].message
    with pytest.raises(UsageError, match=r"x\.sql contains a byte order mark \(U\+FEFF\) after the start at byte "
                                         r"offset 10"):
        parse_statements("SELECT 1;\n\ufeffSELECT 2;", "x.sql")


# -- what a mistyped command is taken for --------------------------------------------------------
@pytest.mark.parametrize("typed, said", [
    (["backup", "lst"], "unknown subcommand backup lst. Did you mean backup list? Try dbops help backup."),
    (["frobnicate"], "unknown subcommand frobnicate. Try dbops help."),
    (["drill", "histroy"], "unknown subcommand drill histroy. Did you mean drill history?"),
    (["readonly"], "readonly needs a subcommand: check, create, drop, list, repair, rotate."),
    (["stauts"], "unknown subcommand stauts. Did you mean status?"),
])
def test_a_mistyped_subcommand_is_named_with_the_close_one_only(typed, said):
    done = dbops(*typed)
    assert done.returncode == 2
    assert said in " ".join(done.stderr.split()), done.stderr
