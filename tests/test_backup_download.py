"""Getting a backup out, and deleting one by hand: `backup delete` (never the newest verified or the
newest drilled one), `backup download` (streamed, decrypted, SHA-256 checked before the file gets its
name), `backup url` (a short-lived pre-signed S3 link, handed to the requester only). Real
PostgreSQL, real files, a real S3 server (moto) and the real bot over HTTP for Slack."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import (
    BackupCatalog,
    BackupSettings,
    S3Settings,
    delete_backup,
    download_backup,
    download_link,
    take_backup,
)
from handlers.backup.verify import ArchiveDamaged
from handlers.errors import Cancelled, UsageError
from handlers.postgres import full_read
from handlers.report import Progress
from handlers.target import Target
from tests.test_backup_s3 import BUCKET, s3, s3_server
from tests.test_cli import dbops

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def small_db(pg_server):
    """A target of a few thousand rows: backups of it take a moment."""
    name = f"small_{os.getpid()}_{time.monotonic_ns()}"
    demo_data.create_database(pg_server.dsn(), name)
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute('CREATE TABLE "Notes" (id bigint PRIMARY KEY, body text NOT NULL)')
        conn.execute('INSERT INTO "Notes" SELECT g, md5(g::text) FROM generate_series(1, 5000) g')
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture
def catalog(fresh_db):
    migrate.apply(fresh_db)
    return BackupCatalog(fresh_db)


@pytest.fixture
def settings(tmp_path):
    return BackupSettings(dir=tmp_path / "backups", min_free_mb=0)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_drill(state_dsn: str, backup_id: str, outcome: str = "passed") -> None:
    with psycopg.connect(state_dsn) as conn:
        conn.execute("INSERT INTO dbops.drills (target, backup_id, requested_by, started_at, finished_at, outcome,"
                     " instance_kind, total_s, summary, result) VALUES ('prod', %s, 'U1', now(), now(), %s, 'local',"
                     " 1, 'drill', '{}')", (backup_id, outcome))


# -- backup delete ------------------------------------------------------------------------------
def test_delete_never_takes_the_newest_verified_or_the_newest_drilled(small_db, catalog, settings):
    target = Target("prod", small_db)
    drilled, middle, newest = (take_backup(target, settings, catalog, "U1").backup_id for _ in range(3))
    record_drill(catalog.state_dsn, drilled)
    with pytest.raises(UsageError, match=f"backup {newest} is the newest verified backup of `prod`: it is never "
                                         "deleted"):
        delete_backup(catalog, settings, newest)
    with pytest.raises(UsageError, match=f"backup {drilled} is the newest that passed a drill backup"):
        delete_backup(catalog, settings, drilled)
    location = Path(catalog.get(middle).location)
    report = delete_backup(catalog, settings, middle)
    assert report.data["had_archive"] and report.data["freed_bytes"] == catalog.get(middle).size_bytes
    assert not location.exists() and not [f for f in files(settings.dir) if f.startswith(middle)]
    assert catalog.get(middle).deleted_at is not None
    assert [r.id for r in catalog.list("prod")] == [newest, drilled]
    index = json.loads((settings.dir / "dbops-index.json").read_text())
    assert middle not in json.dumps(index)  # storage no longer lists it
    with pytest.raises(UsageError, match="deleted already"):
        delete_backup(catalog, settings, middle)
    with pytest.raises(UsageError, match="no backup with id `b999`"):
        delete_backup(catalog, settings, "b999")
    assert {f.split("_")[0] for f in files(settings.dir) if f.endswith(".dump")} == {newest, drilled}


def test_delete_of_a_failed_backup_removes_its_entry_only(catalog, settings):
    backup_id = catalog.start("prod", "U1")
    catalog.fail(backup_id, "pg_dump: error: out of memory")
    report = delete_backup(catalog, settings, backup_id)
    assert report.data["had_archive"] is False and "no archive" in report.summary
    assert catalog.list("prod") == []


def test_backup_delete_from_the_terminal(small_db, fresh_db, tmp_path):
    env = {"DATABASE_URL": small_db, "DBOPS_STATE_URL": fresh_db, "DBOPS_BACKUP_DIR": str(tmp_path / "b"),
           "DBOPS_CONFIG": str(tmp_path / "dbops.toml")}
    (tmp_path / "dbops.toml").touch()
    for _ in range(2):
        assert dbops("backup", env=env).returncode == 0
    refused = dbops("backup", "delete", "b002", "--format", "json", env=env)
    assert refused.returncode == 2 and "newest verified" in json.loads(refused.stdout)["error"]
    done = dbops("backup", "delete", "b001", env=env)
    assert done.returncode == 0, done.stderr
    assert "Deleted backup b001 of prod" in done.stdout
    assert [f for f in files(tmp_path / "b") if f.startswith("b001")] == []


# -- backup download ------------------------------------------------------------------------------
def test_download_of_a_plain_backup_is_the_archive_byte_for_byte(small_db, catalog, settings, tmp_path):
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    out = tmp_path / "out"
    out.mkdir()
    report = download_backup(catalog, settings, result.backup_id, out)
    [name] = files(out)
    assert name == Path(result.location).name  # its own name, in the folder given
    assert sha256(out / name) == result.manifest.archive.sha256 == report.data["stored_sha256"]
    assert report.data["file_sha256"] == sha256(out / name) and not report.data["decrypted"]
    assert full_read(out / name)[0]
    with pytest.raises(UsageError, match="exists already"):
        download_backup(catalog, settings, result.backup_id, out / name)


def test_download_of_an_encrypted_backup_is_decrypted_on_the_way(small_db, catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    settings = BackupSettings(dir=tmp_path / "backups", min_free_mb=0, encrypt=True)
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    assert Path(result.location).name.endswith(".dump.enc")
    dest = tmp_path / "plain.dump"
    report = download_backup(catalog, settings, result.backup_id, dest)
    assert dest.read_bytes()[:5] == b"PGDMP" and full_read(dest)[0]  # a pg_dump archive, not ciphertext
    assert report.data["decrypted"] and report.data["stored_sha256"] == result.manifest.archive.sha256
    assert report.data["file_sha256"] == sha256(dest) != result.manifest.archive.sha256
    assert files(tmp_path) == sorted(["backups", "plain.dump"])  # no partial beside it
    monkeypatch.delenv("DBOPS_BACKUP_KEY")
    with pytest.raises(Exception, match="DBOPS_BACKUP_KEY is not set here"):
        download_backup(catalog, settings, result.backup_id, tmp_path / "again.dump")
    assert not (tmp_path / "again.dump").exists()


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_damaged_archive_is_never_written_under_its_name(small_db, catalog, tmp_path, monkeypatch, encrypt):
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    settings = BackupSettings(dir=tmp_path / "backups", min_free_mb=0, encrypt=encrypt)
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    stored = Path(result.location)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle
    stored.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveDamaged, match="authentication failed" if encrypt else "SHA-256"):
        download_backup(catalog, settings, result.backup_id, out / "b.dump")
    assert files(out) == []  # neither the file nor its partial


def test_a_cancelled_download_leaves_nothing(small_db, catalog, settings, tmp_path):
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    cancel = threading.Event()
    seen = []

    def progress(p: Progress) -> None:
        seen.append(p)
        cancel.set()  # after the first block

    with pytest.raises(Cancelled, match="partial file was removed"):
        download_backup(catalog, settings, result.backup_id, tmp_path / "b.dump", progress=progress, cancel=cancel)
    assert seen and not (tmp_path / "b.dump").exists() and not (tmp_path / ".b.dump.partial").exists()


# -- S3: download and url -------------------------------------------------------------------------------
def s3_settings(tmp_path: Path, endpoint: str, **kw) -> BackupSettings:
    return BackupSettings(dir=tmp_path / "b", min_free_mb=0, storage="s3", **kw,
                          s3=S3Settings(bucket=BUCKET, prefix="backups", endpoint_url=endpoint, region="us-east-1",
                                        part_size_mb=5, url_minutes=7))


def test_download_from_s3_and_a_short_lived_link(small_db, catalog, s3, s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    settings = s3_settings(tmp_path, s3_server[0], encrypt=True)
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    dest = tmp_path / "from-s3.dump"
    report = download_backup(catalog, settings, result.backup_id, dest)
    assert full_read(dest)[0] and report.data["decrypted"]
    assert files(tmp_path / "b") == []  # streamed: no copy of the archive on the bot's disk

    report, link = download_link(catalog, settings, result.backup_id)
    assert link.url not in json.dumps(report.to_dict()) and "X-Amz" not in json.dumps(report.to_dict())
    assert link.url not in str(link) and link.url not in repr(link)
    query = parse_qs(urlsplit(link.url).query)
    assert query["X-Amz-Expires"] == ["420"]  # [backup.s3] url_minutes = 7
    fetched = httpx.get(link.url, timeout=30)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == result.manifest.archive.sha256  # the stored archive


def test_a_link_to_a_backup_on_the_bots_disk_is_refused(small_db, catalog, settings):
    result = take_backup(Target("prod", small_db), settings, catalog, "U1")
    with pytest.raises(UsageError, match="on the bot's own disk, not in S3: `dbops backup download"):
        download_link(catalog, settings, result.backup_id)


def test_backup_url_in_slack_goes_to_the_approver_who_asked_only(bot_factory, fake_slack, small_db, fresh_db, s3,
                                                                  s3_server, tmp_path):
    (tmp_path / "dbops.toml").write_text(f'[backup]\nstorage = "s3"\n[backup.s3]\nbucket = "{BUCKET}"\n'
                                         f'prefix = "backups"\nendpoint_url = "{s3_server[0]}"\n'
                                         'region = "us-east-1"\npart_size_mb = 5\n')
    bot = bot_factory(small_db, DBOPS_STATE_URL=fresh_db, DBOPS_S3_ACCESS_KEY_ID="testing",
                      DBOPS_S3_SECRET_ACCESS_KEY="testing-secret")
    bot.command("backup", user="U0BOSS")
    fake_slack.wait_for(lambda: [t for t in fake_slack.texts() if "Backup b001 of `prod` completed" in t],
                        what="the backup", timeout=120)
    refused = bot.command("backup url b001", user="U0ALICE")
    assert "is for approvers only" in refused.text
    assert bot.command("backup url b001", user="U0BOSS").status_code == 200
    [handed] = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                            if "X-Amz-Signature" in c.params["text"]], what="the link")
    assert handed.params["user"] == "U0BOSS" and handed.params["channel"] == "C0OPS"
    url = handed.params["text"].split("\n")[-1]
    told = fake_slack.wait_for(lambda: [t for t in fake_slack.texts("chat.postMessage") if "link was sent to you only"
                                        in t], what="the report")
    assert url not in " ".join(told)
    everywhere = " ".join(c.raw or "" for c in fake_slack.calls if c is not handed)
    assert "X-Amz-Signature" not in everywhere  # in no other message
    with psycopg.connect(fresh_db) as conn:
        audit = json.dumps(conn.execute("SELECT * FROM dbops.audit_log").fetchall(), default=str)
        jobs = json.dumps(conn.execute("SELECT * FROM dbops.jobs").fetchall(), default=str)
    assert "X-Amz-Signature" not in audit + jobs + bot.output()
    assert httpx.get(url, timeout=30).status_code == 200
