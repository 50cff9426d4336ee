"""A planted backup is not trusted: manifests and verification records are sealed with a key derived
from DBOPS_BACKUP_KEY, a backup dated in the future never becomes the newest, `backup.encrypt = true`
refuses an archive that is not encrypted (read from its bytes), and a backup the catalog does not
know is catalogued only after a full verify. Real servers, real files, real `dbops` runs."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import BackupCatalog, BackupSettings, StorageCatalog, sync_catalog, take_backup, verify_backup
from handlers.backup.seal import Seal, seal, unseal
from handlers.backup.storage_catalog import write_verification
from handlers.report import Outcome
from handlers.target import Target

ROOT = Path(__file__).resolve().parents[1]
KEY = base64.b64encode(bytes(range(32))).decode()


def dbops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "AWS_"))}
    base |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env"}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env={**base, **env}, cwd=ROOT, timeout=300)


def database(pg_server, name: str, sql: str | None = None) -> str:
    demo_data.create_database(pg_server.dsn(), name)
    if sql:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
            conn.execute(sql)
    return pg_server.dsn(name)


@pytest.fixture
def dbs(pg_server):
    tag = f"{os.getpid()}_{id(object())}"
    names = {role: f"{role}_{tag}" for role in ("prod", "other", "recovery", "state", "elsewhere")}
    table = "CREATE TABLE notes (id int PRIMARY KEY, body text);"
    dsns = {
        "prod": database(pg_server, names["prod"], table + "INSERT INTO notes SELECT g, 'ours ' || g "
                                                           "FROM generate_series(1, 300) g"),
        "other": database(pg_server, names["other"], table + "INSERT INTO notes SELECT g, 'planted' "
                                                             "FROM generate_series(1, 7) g"),
        "recovery": database(pg_server, names["recovery"]),
        "state": database(pg_server, names["state"]),
        "elsewhere": database(pg_server, names["elsewhere"]),  # the state store of the attacker's dbops
    }
    migrate.apply(dsns["state"])
    migrate.apply(dsns["elsewhere"])
    yield dsns
    for name in names.values():
        demo_data.drop_database(pg_server.dsn(), name)


def plant(folder: Path, genuine_archive: Path, planted_id: str, resealed_with: bytes | None) -> Path:
    """What the attacker does: another database's archive copied into the backup folder under a new
    id, its manifest rewritten (prod's, dated tomorrow) and resealed, a verification record beside it."""
    manifest, _ = unseal(Path(str(genuine_archive) + ".manifest.json").read_bytes())
    stamp = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    archive = folder / f"{planted_id}_prod_{stamp}.dump"
    shutil.copyfile(genuine_archive, archive)
    manifest.backup_id, manifest.target = planted_id, "prod"
    manifest.created_at = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    manifest.archive.path = str(archive)
    Path(str(archive) + ".manifest.json").write_bytes(seal(manifest, resealed_with))
    doc = {"dbops_verification": 1, "status": "verified", "detail": "full read OK",
           "verified_at": datetime.now(timezone.utc).isoformat(), "archive_sha256": manifest.archive.sha256}
    Path(str(archive) + ".verified.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return archive


SEAL_KEY = "a-seal-key-of-forty-characters-or-so-123"


@pytest.mark.parametrize("key", [{"DBOPS_BACKUP_KEY": KEY}, {"DBOPS_SEAL_KEY": SEAL_KEY}],
                         ids=["backup-key", "seal-key"])
def test_a_planted_backup_is_neither_catalogued_nor_restored(dbs, tmp_path, key):
    """The attack of issue 20 (5): an archive of another database, copied into the backup folder with
    a resealed manifest dated in the future and a verification record, is refused by `backup sync`,
    and `restore latest` restores the genuine newest verified backup. With DBOPS_BACKUP_KEY, or with
    only DBOPS_SEAL_KEY (backups not encrypted, manifests still sealed with a key)."""
    folder = tmp_path / "backups"
    config = tmp_path / "dbops.toml"
    config.write_text('[targets.recovery]\nurl_env = "RECOVERY_DATABASE_URL"\n')
    env = {"DATABASE_URL": dbs["prod"], "DBOPS_STATE_URL": dbs["state"], "RECOVERY_DATABASE_URL": dbs["recovery"],
           "DBOPS_BACKUP_DIR": str(folder), "DBOPS_CONFIG": str(config)} | key
    done = dbops("backup", "--format", "json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    genuine = json.loads(done.stdout)["backup_id"]

    # The attacker's archive: a backup of another database, made without the key.
    elsewhere = tmp_path / "elsewhere"
    other = take_backup(Target("prod", dbs["other"]), BackupSettings(dir=elsewhere, min_free_mb=0),
                        BackupCatalog(dbs["elsewhere"]), "attacker")
    plant(folder, Path(other.location), "b901", resealed_with=None)  # a SHA-256 seal: anyone can write one
    plant(folder, Path(other.location), "b902", resealed_with=os.urandom(32))  # an HMAC, with a key of theirs

    synced = dbops("backup", "sync", env=env)
    assert synced.returncode == 1, synced.stdout + synced.stderr  # problems found: it says so
    out = " ".join(synced.stdout.split())
    assert "b901 in storage is not catalogued: it is sealed without a key" in out
    assert "b902 in storage is not catalogued: it is sealed with another key" in out
    assert [r.id for r in BackupCatalog(dbs["state"]).list()] == [genuine]

    restored = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"Restored {genuine}" in restored.stdout
    with psycopg.connect(dbs["recovery"]) as conn:
        assert conn.execute("SELECT count(*), min(body) FROM notes").fetchone() == (300, "ours 1")

    # Storage alone (the state database down) refuses them too, naming why.
    storage = StorageCatalog(BackupSettings(dir=folder))
    (name, value), = key.items()
    os.environ[name] = value
    try:
        for planted in ("b901", "b902"):
            record = storage.get(planted)
            assert not record.usable and "cannot be trusted" in record.error
        assert storage.get(genuine).usable
    finally:
        del os.environ[name]
    assert value not in synced.stdout + synced.stderr + restored.stdout + restored.stderr


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    return BackupSettings.from_dict({}).seal_key()


def test_a_manifest_dated_in_the_future_is_refused_even_with_a_good_seal(dbs, tmp_path, keyed):
    """A wrong clock (or the key holder) dating a backup tomorrow: it would stay "the newest" for a day."""
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False)
    result = take_backup(Target("prod", dbs["prod"]), settings, BackupCatalog(dbs["state"]), "U1")
    path = Path(result.location + ".manifest.json")
    manifest, state = unseal(path.read_bytes(), key=keyed)
    assert state is Seal.KEYED
    manifest.created_at = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    path.write_bytes(seal(manifest, keyed))
    record = StorageCatalog(settings).get(result.backup_id)
    assert not record.usable and "in the future" in record.error

    # A catalog row dated in the future (catalogued before this check existed) is never "latest".
    from handlers.backup import latest_verified

    catalog = BackupCatalog(dbs["state"])
    with psycopg.connect(dbs["state"], autocommit=True) as conn:
        conn.execute("UPDATE dbops.backups SET started_at = now() + interval '1 day', verify_status = 'verified'")
    assert latest_verified(catalog, "prod") is None


def test_encrypt_on_refuses_an_archive_that_is_not_encrypted(dbs, tmp_path, keyed):
    catalog = BackupCatalog(dbs["state"])
    plain = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False)
    result = take_backup(Target("prod", dbs["prod"]), plain, catalog, "U1")
    assert verify_backup(catalog, plain, result.backup_id).outcome is Outcome.OK
    encrypting = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False, encrypt=True)
    report = verify_backup(catalog, encrypting, result.backup_id)
    assert report.outcome is Outcome.FAILED
    assert "backup.encrypt is on and this archive is not encrypted" in report.summary
    # A manifest that says "encrypted" over a plain archive is refused too, whatever the setting.
    with psycopg.connect(dbs["state"], autocommit=True) as conn:
        conn.execute("UPDATE dbops.backups SET encrypted = true")
    report = verify_backup(catalog, plain, result.backup_id)
    assert report.outcome is Outcome.FAILED and "says it is encrypted and the archive is not" in report.summary


def test_a_backup_sealed_the_old_way_is_resealed_by_verify(dbs, tmp_path, monkeypatch):
    """Backups sealed before the key was set (or by an older dbops): storage alone does not vouch
    for them, and says so; `backup verify` with the catalog re-seals them with the key."""
    monkeypatch.delenv("DBOPS_BACKUP_KEY", raising=False)
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False)
    catalog = BackupCatalog(dbs["state"])
    result = take_backup(Target("prod", dbs["prod"]), settings, catalog, "U1")
    path = Path(result.location + ".manifest.json")
    assert unseal(path.read_bytes())[1] is Seal.UNKEYED
    assert StorageCatalog(settings).get(result.backup_id).usable  # no key anywhere: a SHA-256 is all there is

    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    record = StorageCatalog(settings).get(result.backup_id)
    assert not record.usable and "sealed without a key" in record.error and "backup verify" in record.error
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.OK, report.summary
    checks = dict(report.data["checks"])
    assert "re-sealed with the key" in checks["manifest"]
    assert unseal(path.read_bytes(), key=settings.seal_key())[1] is Seal.KEYED
    assert StorageCatalog(settings).get(result.backup_id).verify_status == "verified"

    # The operator without the key: nothing can be checked, nothing is recorded.
    monkeypatch.delenv("DBOPS_BACKUP_KEY")
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "not checked here (no key)" in report.summary
    assert catalog.get(result.backup_id).verify_status == "verified"
    record = StorageCatalog(settings).get(result.backup_id)
    assert not record.usable and "its seal cannot be checked" in record.error


def test_a_rebuilt_catalog_adopts_only_after_a_full_verify(dbs, tmp_path, pg_server, keyed):
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, verify_after=False)
    first = take_backup(Target("prod", dbs["prod"]), settings, BackupCatalog(dbs["state"]), "U1")
    second = take_backup(Target("prod", dbs["prod"]), settings, BackupCatalog(dbs["state"]), "U1")
    # A verification record copied beside another archive, or written without the key, counts for nothing.
    write_verification(StorageCatalog(settings).storage, Path(second.location).name,
                       second.manifest.archive.sha256, "verified", "forged", key=None)
    assert StorageCatalog(settings).get(second.backup_id).verify_status == "pending"
    Path(first.location).write_bytes(Path(first.location).read_bytes()[:-100])  # damaged since

    name = f"rebuilt_{os.getpid()}_{id(object())}"
    rebuilt = database(pg_server, name)
    try:
        migrate.apply(rebuilt)
        catalog = BackupCatalog(rebuilt)
        # Before a read, nothing is catalogued unverified: it is counted.
        assert sync_catalog(catalog, settings, adopt=False).pending == [second.backup_id, first.backup_id]
        assert catalog.is_empty()
        synced = sync_catalog(catalog, settings)
        assert synced.added == [second.backup_id] and catalog.get(second.backup_id).verify_status == "verified"
        assert catalog.get(first.backup_id) is None
        [problem] = synced.problems
        assert f"backup {first.backup_id} in storage is not catalogued: a full verify found it failed" in problem
        assert any("after a full verify" in line for line in synced.lines())
    finally:
        demo_data.drop_database(pg_server.dsn(), name)


def test_the_bot_says_in_the_channel_what_it_catalogued_after_a_full_verify_and_what_it_refused(
        bot_factory, fake_slack, dbs, tmp_path, monkeypatch):
    """A bot started on an empty catalog beside a storage that holds its own backup and a planted one."""
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    folder = tmp_path / "backups"  # the bot's DBOPS_BACKUP_DIR (bot_factory)
    genuine = take_backup(Target("prod", dbs["prod"]), BackupSettings(dir=folder, min_free_mb=0),
                          BackupCatalog(dbs["elsewhere"]), "U1")  # another state store: this bot's is empty
    plant(folder, Path(genuine.location), "b901", resealed_with=None)
    bot_factory(dbs["prod"], DBOPS_STATE_URL=dbs["state"], DBOPS_BACKUP_KEY=KEY)
    said = fake_slack.wait_for(lambda: [c.params["text"] for c in fake_slack.calls_to("chat.postMessage")
                                        if "after a full verify" in c.params["text"]], what="the start-up lines",
                               timeout=120)[0]
    assert f"each after a full verify: {genuine.backup_id}" in said
    assert "b901 in storage is not catalogued: it is sealed without a key" in said
    assert [r.id for r in BackupCatalog(dbs["state"]).list()] == [genuine.backup_id]
    assert KEY not in " ".join(fake_slack.raw_bodies())
