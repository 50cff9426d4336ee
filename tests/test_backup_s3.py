"""S3-compatible storage against a real local S3 server (moto's server mode), over real HTTP.

A small TCP proxy sits between the bot and the server so a test can cut an upload off mid-part,
as a flaky network or a storage outage would.
"""
from __future__ import annotations

import re
import socket
import socketserver
import subprocess
import threading
from pathlib import Path

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from bot.core.state import migrate
from handlers import demo_data
from handlers.backup import (
    BackupCatalog,
    BackupSettings,
    S3Settings,
    capture_manifest,
    compare_manifests,
    materialize,
    prune,
    take_backup,
    verify_backup,
)
from handlers.backup.storage import StorageError, _reason, part_size_for
from handlers.postgres import pg_tool
from handlers.report import Outcome
from handlers.target import Target

BUCKET = "dbops-test"
MiB = 1024 * 1024


class CuttingProxy:
    """Forwards TCP to the S3 server; with `cut_parts` set, drops any UploadPart mid-body (with
    `cut_part` only that part number). `hold_part`: that UploadPart waits (`holding` is set) until
    `release` is set, so a test can act while an upload is under way."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.cut_parts = False
        self.cut_part: int | None = None
        self.hold_part: int | None = None
        self.holding, self.release = threading.Event(), threading.Event()
        self.cuts = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                up = socket.create_connection(proxy.upstream)
                back = threading.Thread(target=_pump, args=(up, self.request), daemon=True)
                back.start()
                budget = None  # bytes still to forward before cutting this connection
                try:
                    while data := self.request.recv(65536):
                        part = re.search(rb"[?&]partNumber=(\d+)", data) if budget is None else None
                        if part and int(part.group(1)) == proxy.hold_part:
                            proxy.holding.set()
                            proxy.release.wait(120)
                        if part and (proxy.cut_parts or int(part.group(1)) == proxy.cut_part):
                            budget = 256 * 1024
                            proxy.cuts += 1
                        if budget is not None:
                            if budget <= 0:
                                break
                            data = data[:budget]
                            budget -= len(data)
                        up.sendall(data)
                except OSError:
                    pass
                finally:
                    for s in (up, self.request):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        s.close()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}", (host, port)
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    url, address = s3_server
    monkeypatch.setenv("DBOPS_S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("DBOPS_S3_SECRET_ACCESS_KEY", "testing-secret")
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing-secret")
    client.create_bucket(Bucket=BUCKET)
    proxy = CuttingProxy(address)
    yield client, proxy
    proxy.stop()
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def catalog(fresh_db):
    migrate.apply(fresh_db)
    return BackupCatalog(fresh_db)


def s3_settings(tmp_path: Path, endpoint: str) -> BackupSettings:
    return BackupSettings(dir=tmp_path / "b", min_free_mb=0, storage="s3",
                          s3=S3Settings(bucket=BUCKET, prefix="backups", endpoint_url=endpoint, region="us-east-1",
                                        part_size_mb=5))


def objects(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_part_size_stays_within_the_part_limit():
    assert part_size_for(10 * MiB, 64 * MiB) == 64 * MiB
    big = 2 * 1024 ** 4  # 2 TiB at 64 MiB parts would need 32,768 parts
    part = part_size_for(big, 64 * MiB)
    assert part % MiB == 0 and big / part <= 10_000
    assert part_size_for(1, 1) == 5 * MiB


def test_the_reason_of_a_storage_error_shows_no_secret_of_the_environment(monkeypatch):
    monkeypatch.setenv("DBOPS_S3_SECRET_ACCESS_KEY", "s3-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    monkeypatch.setenv("DBOPS_DRILL_URL", "postgresql://u:drillpw99@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abc")  # too short to scrub without mangling the text
    monkeypatch.setenv("DBOPS_CHANNEL", "C0123456789")  # not a secret
    exc = Exception("denied: s3-secret-value, session-token-value, drillpw99, abc, C0123456789\nsecond line")
    assert _reason(exc) == "denied: ***, ***, ***, abc, C0123456789"


def test_s3_round_trip(demo_db, pg_server, catalog, s3, tmp_path):
    client, proxy = s3
    settings = s3_settings(tmp_path, proxy.url)
    settings.s3.part_size_mb = 5
    result = take_backup(Target("prod", demo_db), settings, catalog, "U1")
    assert result.location.startswith(f"s3://{BUCKET}/backups/prod/b001_prod_")
    assert result.verify_status == "verified"  # downloaded again and read in full
    key = result.manifest.archive.key
    assert objects(client) == sorted([key, key + ".manifest.json", key + ".verified.json", "backups/dbops-index.json"])
    assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == result.manifest.archive.size
    assert [p.name for p in settings.dir.iterdir()] == []  # nothing kept locally

    path, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "drill")
    name = "s3restored"
    demo_data.create_database(pg_server.dsn(), name)
    try:
        subprocess.run([pg_tool("pg_restore"), "-d", pg_server.dsn(name), str(path)], check=True, capture_output=True)
        with psycopg.connect(pg_server.dsn(name)) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            assert compare_manifests(manifest.to_dict(), capture_manifest(conn, "counts")) == []
    finally:
        demo_data.drop_database(pg_server.dsn(), name)

    # A damaged object is caught by verify (SHA-256 of what comes back).
    client.put_object(Bucket=BUCKET, Key=key, Body=b"PGDMP not really")
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "SHA-256" in report.summary


def test_s3_failure_mid_upload_is_aborted(demo_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = s3_settings(tmp_path, proxy.url)
    proxy.cut_parts = True
    with pytest.raises(StorageError) as info:
        take_backup(Target("prod", demo_db), settings, catalog, "U1")
    assert proxy.cuts >= 1
    assert "failed and was aborted" in str(info.value) and "testing-secret" not in str(info.value)
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert objects(client) == []
    [row] = catalog.list("prod")
    assert row.status == "failed"
    assert [p.name for p in settings.dir.iterdir()] == []


def test_prune_deletes_s3_objects_but_keeps_newest_verified(demo_db, catalog, s3, tmp_path):
    client, proxy = s3
    settings = s3_settings(tmp_path, proxy.url)
    settings.retention.daily = settings.retention.weekly = settings.retention.monthly = 0
    first = take_backup(Target("prod", demo_db), settings, catalog, "U1")
    second = take_backup(Target("prod", demo_db), settings, catalog, "U1")
    report = prune(catalog, settings, "prod", dry_run=False)
    assert report.data["deleted"] == [first.backup_id] and report.data["keep"] == [second.backup_id]
    key = second.manifest.archive.key
    assert objects(client) == sorted([key, key + ".manifest.json", key + ".verified.json", "backups/dbops-index.json"])
