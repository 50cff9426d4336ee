"""What the drill tests share: backups made as the backup module makes them (archive and manifest
from one snapshot), pagila loaded from tests/data, the drill work folder and its fixtures."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from handlers import demo_data
from handlers.backup.manifest import capture_manifest
from handlers.drill import DrillSettings
from handlers.postgres import pg_tool, tool_version

PAGILA = Path(__file__).parent / "data" / "pagila"
ROOT = Path(__file__).resolve().parent.parent

# -- making backups as the backup module does: archive and manifest from one snapshot ------------

def make_backup(dsn: str, dest: Path, fmt: str = "custom", compress: str | None = "0",
                level: str = "checksums", after_manifest: str | None = None,
                created_at: str | None = None) -> tuple[dict, Path]:
    """pg_dump `dsn` into `dest` and return its BackupManifest document.

    `after_manifest`: SQL run (committed) after the manifest is taken and before pg_dump, which then
    dumps without the snapshot: an archive that no longer matches its manifest.
    """
    conn = psycopg.connect(dsn)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        manifest = capture_manifest(conn, level)
        if after_manifest:
            conn.rollback()  # pg_dump will not use the snapshot; its locks would block DDL in after_manifest
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute(after_manifest)
        cmd = [pg_tool("pg_dump"), "--format", fmt, "--file", str(dest), "--dbname", dsn]
        if compress is not None:
            cmd += ["--compress", compress]
        if not after_manifest:
            cmd += ["--snapshot", snapshot]
        subprocess.run(cmd, check=True, capture_output=True)
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    finally:
        conn.close()
    stored = dest
    if fmt == "directory":  # stored as one tar file, as handlers.backup does
        stored = dest.with_suffix(".tar")
        with tarfile.open(stored, "w") as tar:
            for entry in sorted(dest.iterdir()):
                tar.add(entry, arcname=entry.name)
        shutil.rmtree(dest)
    major, minor = tool_version("pg_dump")
    return {
        "format_version": 1, "backup_id": "b007", "target": "prod", "database": "asidenote",
        "created_at": created_at or (datetime.now(timezone.utc) - timedelta(hours=5)).isoformat(),
        "snapshot": snapshot, "server_version": server_version, "server_version_num": 0,
        "pg_dump_version": f"{major}.{minor}",
        "archive": {"format": fmt, "compression": compress or "default", "path": str(stored),
                    "size": stored.stat().st_size, "sha256": sha256(stored), "encrypted": False,
                    "storage": "local"},
        **manifest,
    }, stored


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pagila(dsn: str) -> None:
    for name in ("pagila-schema.sql", "pagila-data-slice.sql"):
        subprocess.run([pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(PAGILA / name)],
                       check=True, capture_output=True)
    with psycopg.connect(dsn, autocommit=True) as conn:  # as in production: the view holds rows
        conn.execute("REFRESH MATERIALIZED VIEW public.rental_by_category")


def settings(work: Path, **extra) -> DrillSettings:
    return DrillSettings.from_dict({"work_dir": str(work / "drills"), "jobs": 2, **extra})


def check(result, prefix: str) -> dict:
    found = [c for c in result.checks if c.name.startswith(prefix)]
    assert found, f"no check named {prefix!r} in {[c['name'] for c in result.checks]}; steps: {result.steps}"
    return found[0]


def assert_nothing_left(work: Path) -> None:
    drills = work / "drills"
    assert not drills.exists() or list(drills.iterdir()) == [], list(drills.iterdir())


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def work():
    """Where drills put their instances: a folder directly under /tmp, not under pytest's tmp_path,
    because every pytest session that starts (other test runs on this machine) resets
    /tmp/pytest-of-<user> to mode 0700, which locks the unprivileged postgres user out of any
    instance below it."""
    folder = Path(tempfile.mkdtemp(prefix="drilltest-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pagila_template(pg_server):
    name = f"pagila_tpl_{os.getpid()}"
    demo_data.create_database(pg_server.dsn(), name)
    load_pagila(pg_server.dsn(name))
    yield name
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture
def pagila_db(pg_server, pagila_template):
    name = f"pagila_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pagila_template}"')
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture(scope="module")
def pagila_backup(pg_server, pagila_template, tmp_path_factory):
    """An uncompressed custom-format archive of pagila (one byte of data is then one byte of the file)."""
    folder = tmp_path_factory.mktemp("pagila_backup")
    return make_backup(pg_server.dsn(pagila_template), folder / "pagila.dump", compress="0")


@pytest.fixture(scope="module")
def demo_backup(pg_server, demo_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_backup")
    return make_backup(pg_server.dsn(demo_template), folder / "demo.dump", compress="gzip:1")
