"""Streamed backups to S3 (moto's server over real HTTP): pg_dump's output is uploaded as it is
written, in parts, with at most two parts on local disk; the object appears only when everything
passed; a failure anywhere in the stream (S3, pg_dump, the bot itself) leaves no object, no parts
and no completed catalog row."""
from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from handlers import demo_data
from handlers.backup import (
    BackupCancelled,
    BackupFailed,
    capture_manifest,
    cleanup_incomplete,
    compare_manifests,
    materialize,
    take_backup,
    verify_backup,
)
from handlers.backup.settings import MiB
from handlers.backup.storage import StorageError
from handlers.backup.stream import SPOOLED_PARTS, stream_part_size
from handlers.postgres import libpq_env, pg_tool
from handlers.report import Outcome
from handlers.target import Target
from tests.conftest import _new_db
from tests.test_backup_s3 import BUCKET, catalog, objects, s3, s3_server, s3_settings  # noqa: F401 -- fixtures

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(scope="module")
def bulky_template(pg_server, demo_template):
    """The demo database and a table of hardly compressible text: an archive of several 5 MiB parts."""
    name = "bulky_template"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{demo_template}"')
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute('CREATE TABLE "Attachments" ("Id" int PRIMARY KEY, "Body" text NOT NULL)')
        conn.execute('INSERT INTO "Attachments" SELECT g, md5(random()::text) || md5(random()::text)'
                     " FROM generate_series(1, 400000) g")
    yield name
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture
def bulky_db(pg_server, bulky_template):
    name = _new_db(pg_server, template=bulky_template)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


def streamed_settings(tmp_path: Path, endpoint: str):
    settings = s3_settings(tmp_path, endpoint)
    settings.s3.stream_max_gb = 1  # parts of the 5 MiB minimum, so the demo database takes several
    settings.integrity = "checksums"
    return settings


def uploads(client) -> list[dict]:
    return client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def local_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def nothing_left(client, catalog, settings) -> None:
    assert uploads(client) == [], "an upload was left with its billed parts"
    assert [k for k in objects(client) if not k.endswith("dbops-index.json")] == []
    assert local_files(settings.dir) == []
    assert all(row.status in ("failed", "cancelled") for row in catalog.list("prod"))


def test_the_part_size_holds_500_gb_in_10000_parts():
    settings = s3_settings(Path("/nonexistent"), "http://127.0.0.1:1").s3
    part = stream_part_size(settings, 1000)
    assert part * 10_000 >= 500 * 1000 ** 3 and part % MiB == 0
    assert stream_part_size(settings, 2 * 1000 ** 4) * 10_000 >= 4 * 2 * 1000 ** 4  # a 2 TB archive, 4x over
    settings.stream_max_gb = 1
    assert stream_part_size(settings, 1000) == 5 * MiB  # S3's smallest part


def test_a_streamed_backup_is_uploaded_in_parts_restores_to_its_manifest_and_leaves_no_file(
        bulky_db, pg_server, catalog, s3, tmp_path, monkeypatch):
    client, proxy = s3
    monkeypatch.setenv("DBOPS_BACKUP_KEY", KEY)
    settings = streamed_settings(tmp_path, proxy.url)
    settings.encrypt = True
    seen: set[str] = set()

    def progress(p) -> None:  # what is on the local disk while it streams
        seen.update(local_files(settings.dir))

    result = take_backup(Target("prod", bulky_db), settings, catalog, "U1", progress=progress)
    assert result.verify_status == "verified", result.verify_detail
    key = result.manifest.archive.key
    head = client.head_object(Bucket=BUCKET, Key=key)
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts >= 2 and head["ContentLength"] == result.manifest.archive.size
    part_size = 5 * MiB
    assert 0 < result.peak_disk <= SPOOLED_PARTS * part_size
    assert not [name for name in seen if name.endswith(".dump.partial")]  # the archive itself never was on disk
    assert local_files(settings.dir) == []
    assert uploads(client) == []
    assert result.to_report().data["peak_local_disk"] == result.peak_disk

    # The restored data matches the manifest, row for row (checksums), restored in parallel.
    path, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "restore")
    name = "streamrestored"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        done = subprocess.run([pg_tool("pg_restore"), "--no-owner", "-j", "2", "--dbname=", str(path)],
                              env=libpq_env(pg_server.dsn(name)), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(pg_server.dsn(name)) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            assert compare_manifests(manifest.to_dict(), capture_manifest(conn, "checksums")) == []
    finally:
        demo_data.drop_database(pg_server.dsn(), name)


def test_verify_reads_a_streamed_archive_as_it_downloads_and_catches_a_changed_byte(
        bulky_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    settings.verify_after = False
    result = take_backup(Target("prod", bulky_db), settings, catalog, "U1")
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.OK, report.summary
    assert ["sha256", "full read"] == [c[0] for c in report.data["checks"] if c[0] in ("sha256", "full read")]
    assert local_files(settings.dir) == []  # no download on disk
    key = result.manifest.archive.key
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "SHA-256" in report.summary


def test_an_s3_failure_mid_stream_aborts_the_upload(bulky_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    proxy.cut_part = 2  # the first part is uploaded, the second cut off mid-body
    with pytest.raises(StorageError) as info:
        take_backup(Target("prod", bulky_db), settings, catalog, "U1")
    assert proxy.cuts >= 1 and "failed and was aborted" in str(info.value)
    assert "testing-secret" not in str(info.value)
    assert not [c for c in psutil.Process().children(recursive=True) if c.name() == "pg_dump"]
    nothing_left(client, catalog, settings)


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_pg_dump_killed_mid_stream_leaves_no_object_and_no_parts(bulky_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    proxy.hold_part = 2  # part 1 is in S3, part 2 waits: pg_dump is mid-stream
    box: dict = {}

    def backup() -> None:
        try:
            take_backup(Target("prod", bulky_db), settings, catalog, "U1")
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=backup)
    worker.start()
    _wait_for(proxy.holding.is_set, "the second part")
    [dump] = [c for c in psutil.Process().children(recursive=True) if c.name() == "pg_dump"]
    dump.kill()
    proxy.release.set()
    worker.join(120)
    assert isinstance(box.get("error"), BackupFailed) and "pg_dump was killed (SIGKILL)" in str(box["error"])
    nothing_left(client, catalog, settings)


def test_cancel_mid_stream_aborts_the_upload(bulky_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    proxy.hold_part = 2
    cancel = threading.Event()
    box: dict = {}

    def backup() -> None:
        try:
            take_backup(Target("prod", bulky_db), settings, catalog, "U1", cancel=cancel)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=backup)
    worker.start()
    _wait_for(proxy.holding.is_set, "the second part")
    cancel.set()
    proxy.release.set()
    worker.join(120)
    assert isinstance(box.get("error"), BackupCancelled)
    nothing_left(client, catalog, settings)


def test_bot_killed_mid_stream_leaves_nothing_after_the_next_start(bulky_db, catalog, s3, tmp_path):
    """SIGKILL of the whole process mid-upload: pg_dump dies with it; the next start marks the row
    failed, removes the spooled part files and aborts the upload (no object, no billed parts)."""
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    proxy.hold_part = 2
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from handlers.backup import BackupCatalog, BackupSettings, S3Settings, take_backup\n"
        "from handlers.target import Target\n"
        "s3 = S3Settings(bucket=sys.argv[4], prefix='backups', endpoint_url=sys.argv[5], region='us-east-1',\n"
        "                part_size_mb=5, stream_max_gb=1)\n"
        "take_backup(Target('prod', sys.argv[1]), BackupSettings(dir=Path(sys.argv[3]), min_free_mb=0,\n"
        "            storage='s3', s3=s3), BackupCatalog(sys.argv[2]), 'U1')\n"
    )
    settings.dir.mkdir(parents=True)
    bot = subprocess.Popen([sys.executable, "-c", code, bulky_db, catalog.state_dsn, str(settings.dir), BUCKET,
                            proxy.url])
    try:
        _wait_for(lambda: proxy.holding.is_set() or bot.poll() is not None, "the second part", timeout=120)
        assert bot.poll() is None, "the backup ended before it could be killed"
        dumps = [c for c in psutil.Process(bot.pid).children(recursive=True) if c.name() == "pg_dump"]
        [upload] = uploads(client)
        assert client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
    finally:
        bot.kill()
        bot.wait()
    proxy.release.set()
    gone, alive = psutil.wait_procs(dumps, timeout=15)
    assert dumps and not alive, "pg_dump outlived the bot"
    assert [p for p in local_files(settings.dir) if ".part" in p]  # what a killed process leaves
    [row] = catalog.list("prod")
    assert row.status == "running"
    lines = cleanup_incomplete(catalog.state_dsn, settings)
    assert any("aborted the unfinished upload" in line for line in lines), lines
    nothing_left(client, catalog, settings)


def test_a_directory_format_dump_in_parallel_is_streamed_as_one_tar_and_restores(
        bulky_db, pg_server, catalog, s3, tmp_path):
    client, proxy = s3
    settings = streamed_settings(tmp_path, proxy.url)
    settings.format, settings.jobs = "directory", 2
    result = take_backup(Target("prod", bulky_db), settings, catalog, "U1")
    assert result.verify_status == "verified", result.verify_detail
    assert result.manifest.archive.format == "directory" and result.manifest.archive.key.endswith(".tar")
    assert local_files(settings.dir) == [] and uploads(client) == []
    path, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "restore")
    assert (path / "toc.dat").is_file()
    name = "dirrestored"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        done = subprocess.run([pg_tool("pg_restore"), "--no-owner", "-j", "2", "--dbname=", str(path)],
                              env=libpq_env(pg_server.dsn(name)), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(pg_server.dsn(name)) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            assert compare_manifests(manifest.to_dict(), capture_manifest(conn, "checksums")) == []
    finally:
        demo_data.drop_database(pg_server.dsn(), name)


def test_format_auto_dumps_a_large_database_in_parallel_where_the_disk_holds_it(tmp_path):
    settings = s3_settings(tmp_path, "http://127.0.0.1:1")
    assert settings.format == "auto" and settings.parallel_from_gb == 2.0
    gb = 1000 ** 3
    assert settings.format_for(gb, 100 * gb) == "custom"  # small: one pg_dump -Fc
    assert settings.format_for(5 * gb, 100 * gb) == "directory"
    assert settings.format_for(5 * gb, 5 * gb) == "custom"  # the disk could not hold it twice
    settings.jobs = 1
    assert settings.format_for(5 * gb, 100 * gb) == "custom"
    settings.format = "directory"
    assert settings.format_for(1, 1) == "directory"  # a format chosen by hand is kept
