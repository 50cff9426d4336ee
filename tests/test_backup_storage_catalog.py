"""The storage is the catalog: sealed manifests, a catalog rebuilt from storage, and what a backup
killed at each step of its final write leaves (adopted, quarantined, or nothing)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import (
    BackupCatalog,
    BackupSettings,
    StorageCatalog,
    cleanup_incomplete,
    list_backups,
    sync_catalog,
    take_backup,
    verify_backup,
)
from handlers.backup.seal import ManifestDamaged, seal, unseal
from handlers.backup.storage_catalog import INDEX_NAME, LocalStorage, scan
from handlers.report import Outcome
from handlers.target import Target

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def state_dsn(fresh_db):
    migrate.apply(fresh_db)
    return fresh_db


@pytest.fixture
def settings(tmp_path):
    return BackupSettings(dir=tmp_path / "backups", min_free_mb=0, verify_after=False)


@pytest.fixture
def small_db(pg_server):
    name = f"small_{id(object())}"
    demo_data.create_database(pg_server.dsn(), name)
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, t text, note text)")
        conn.execute("INSERT INTO items SELECT g, 'x' || g, 'n' FROM generate_series(1, 500) g")
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


def manifest_file(result) -> Path:
    return Path(result.location + ".manifest.json")


# -- the sealed manifest -------------------------------------------------------------

def test_every_flipped_byte_of_a_manifest_is_caught(small_db, state_dsn, settings):
    result = take_backup(Target("prod", small_db), settings, BackupCatalog(state_dsn), "U1")
    data = manifest_file(result).read_bytes()
    manifest, sealed = unseal(data)
    assert sealed and manifest.backup_id == result.backup_id and seal(manifest) == data
    assert manifest.requested_by == "U1" and manifest.archive.sha256 == result.manifest.archive.sha256
    # Every position, including whitespace and the digest itself: no change goes unnoticed.
    step = max(1, len(data) // 400)
    for i in range(0, len(data), step):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(ManifestDamaged):
            unseal(bytes(flipped))


def test_backup_verify_fails_on_a_changed_manifest(small_db, state_dsn, settings):
    catalog = BackupCatalog(state_dsn)
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    assert verify_backup(catalog, settings, result.backup_id).outcome is Outcome.OK
    path = manifest_file(result)
    doc = json.loads(path.read_bytes())
    doc["manifest"]["tables"][0]["rows"] += 1  # a plausible edit, still valid JSON
    path.write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "manifest" in report.summary and "changed" in report.summary
    assert catalog.get(result.backup_id).verify_status == "failed"
    path.unlink()
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "missing" in report.summary


# -- the catalog is a cache of the storage ---------------------------------------------

def test_an_empty_state_database_is_rebuilt_from_storage(small_db, state_dsn, settings, pg_server):
    old = BackupCatalog(state_dsn)
    first = take_backup(Target("prod", small_db), settings, old, "U1")
    second = take_backup(Target("prod", small_db), settings, old, "scheduler", scheduled=True)
    index = json.loads((settings.dir / INDEX_NAME).read_text())
    assert {b["id"] for b in index["backups"]} == {first.backup_id, second.backup_id}

    name = f"newstate_{id(object())}"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        new_dsn = pg_server.dsn(name)
        migrate.apply(new_dsn)
        new = BackupCatalog(new_dsn)
        assert new.is_empty()
        synced = sync_catalog(new, settings)
        assert sorted(synced.added) == sorted([first.backup_id, second.backup_id]) and not synced.problems
        rows = {r.id: r for r in new.list("prod")}
        assert rows[first.backup_id].requested_by == "U1" and rows[second.backup_id].scheduled
        assert rows[first.backup_id].sha256 == first.manifest.archive.sha256
        assert verify_backup(new, settings, first.backup_id).outcome is Outcome.OK
        # The id sequences moved past what storage holds: the next backup never reuses an id.
        third = take_backup(Target("prod", small_db), settings, new, "U1")
        assert third.backup_id not in (first.backup_id, second.backup_id)
        assert sync_catalog(new, settings).added == []  # nothing more to add
    finally:
        demo_data.drop_database(pg_server.dsn(), name)


def test_storage_alone_lists_and_verifies(small_db, state_dsn, settings):
    result = take_backup(Target("prod", small_db), settings, BackupCatalog(state_dsn), "U1")
    storage = StorageCatalog(settings)
    report = list_backups(storage, "prod")
    assert [b["id"] for b in report.data["backups"]] == [result.backup_id]
    assert verify_backup(storage, settings, result.backup_id).outcome is Outcome.OK
    # A damaged manifest is listed as such, never as a good backup.
    path = manifest_file(result)
    path.write_bytes(path.read_bytes().replace(b'"rows": 500', b'"rows": 501'))
    record = StorageCatalog(settings).get(result.backup_id)
    assert record.status == "failed" and "changed" in record.error and not record.usable
    assert verify_backup(StorageCatalog(settings), settings, result.backup_id).outcome is Outcome.FAILED


def test_a_verification_is_kept_in_storage_beside_its_archive(small_db, state_dsn, settings, pg_server):
    """Verified from storage alone, the catalog rebuilt: the backup is still known verified (so
    `restore latest` picks the same one); a record of another archive under the same name counts for nothing."""
    first = take_backup(Target("prod", small_db), settings, BackupCatalog(state_dsn), "U1")
    with psycopg.connect(small_db, autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (501, 'x501', 'n')")  # another archive, another SHA-256
    second = take_backup(Target("prod", small_db), settings, BackupCatalog(state_dsn), "U1")
    assert first.manifest.archive.sha256 != second.manifest.archive.sha256
    assert StorageCatalog(settings).get(first.backup_id).verify_status == "pending"
    assert verify_backup(StorageCatalog(settings), settings, first.backup_id).outcome is Outcome.OK
    recorded = Path(first.location + ".verified.json")
    doc = json.loads(recorded.read_text())
    assert doc["status"] == "verified" and doc["archive_sha256"] == first.manifest.archive.sha256
    found = StorageCatalog(settings).get(first.backup_id)
    assert found.verify_status == "verified" and found.verified_at is not None

    name = f"rebuilt_{id(object())}"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        migrate.apply(pg_server.dsn(name))
        rebuilt = BackupCatalog(pg_server.dsn(name))
        sync_catalog(rebuilt, settings)
        assert rebuilt.get(first.backup_id).verify_status == "verified"
        # A backup the catalog never knew is catalogued only after a full verify of its own.
        assert rebuilt.get(second.backup_id).verify_status == "verified"
    finally:
        demo_data.drop_database(pg_server.dsn(), name)

    # A record copied beside another archive (or left from a replaced one) names another SHA-256.
    Path(second.location + ".verified.json").write_text(recorded.read_text())
    assert StorageCatalog(settings).get(second.backup_id).verify_status == "pending"
    # A failed verification is recorded too, and a damaged record is ignored, never trusted.
    Path(second.location).write_bytes(Path(second.location).read_bytes()[:-10])
    assert verify_backup(StorageCatalog(settings), settings, second.backup_id).outcome is Outcome.FAILED
    assert StorageCatalog(settings).get(second.backup_id).verify_status == "failed"
    recorded.write_text("{not json")
    assert StorageCatalog(settings).get(first.backup_id).verify_status == "pending"


# -- a kill at each step of the final write ----------------------------------------------

CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from handlers.backup import take as T
from handlers.backup.catalog import BackupCatalog
from handlers.backup.settings import BackupSettings
from handlers.target import Target

point, state_dsn, dsn, folder = sys.argv[1:5]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace
if point == "before-rename":
    T.os.replace = die
elif point == "after-rename":
    T.write_durably = die
elif point == "after-manifest":
    T._BackupRun._update_index = die
elif point == "after-index":
    BackupCatalog.complete = die
T.take_backup(Target("prod", dsn), BackupSettings(dir=Path(folder), min_free_mb=0, verify_after=False),
              BackupCatalog(state_dsn), "U1")
"""


@pytest.mark.parametrize("point, adopted", [("before-rename", False), ("after-rename", False),
                                            ("after-manifest", True), ("after-index", True)])
def test_kill_at_each_step_of_the_final_write(small_db, state_dsn, settings, point, adopted):
    settings.dir.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), point, state_dsn, small_db,
                           str(settings.dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    catalog = BackupCatalog(state_dsn)
    [row] = catalog.list("prod")
    assert row.status == "running"

    lines = cleanup_incomplete(state_dsn, settings)  # what the next start does
    row = catalog.get(row.id)
    visible = sorted(p.name for p in settings.dir.iterdir() if not p.name.startswith("."))
    if adopted:
        assert row.status == "completed" and any("adopted" in line for line in lines)
        assert [r.id for r in catalog.list("prod") if r.usable] == [row.id]
        assert verify_backup(catalog, settings, row.id).outcome is Outcome.OK
        assert [b.backup_id for b in scan(LocalStorage(settings.dir)).backups] == [row.id]
    else:
        assert row.status == "failed" and not row.usable
        assert scan(LocalStorage(settings.dir)).backups == []
        # Nothing complete-looking is left where it would be listed or fill the disk unnoticed.
        assert [n for n in visible if n not in ("quarantine", INDEX_NAME)] == []
        if point == "after-rename":
            assert any("quarantined" in line for line in lines)
            assert len(list((settings.dir / "quarantine").iterdir())) == 1
    assert not [p for p in settings.dir.iterdir() if p.name.endswith(".partial")]


def test_the_state_store_on_a_target_is_named_with_what_to_set():
    from handlers.backup import state_placement_warning, state_shares_target

    targets = {"prod": "postgresql://app:secret@dpg-abc-a.oregon-postgres.render.com:5432/asidenote",
               "recovery": "postgresql://app:secret@dpg-xyz-a/asidenote"}
    assert state_shares_target("postgresql://bot:other@dpg-abc-a/asidenote", targets) == ["prod"]
    assert state_shares_target("postgresql://bot:other@dpg-abc-a/dbops_state", targets) == []
    text = state_placement_warning(["prod"])
    assert "DBOPS_STATE_URL" in text and "secret" not in text
