"""pg_dump's partial archive is private (0600 files, 0700 folders) from its first byte, whatever
the bot's umask: it holds production's rows before the seal step."""
from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest

from bot.core.state import migrate
from handlers.backup import BackupCatalog, BackupSettings, take_backup
from handlers.report import Progress
from handlers.target import Target


@pytest.fixture
def catalog(fresh_db):
    migrate.apply(fresh_db)
    return BackupCatalog(fresh_db)


def wait_for(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_partial_dump_is_private_while_pg_dump_writes_it(demo_db, catalog, tmp_path, fmt):
    settings = BackupSettings(dir=tmp_path / "backups", min_free_mb=0, format=fmt)
    locker = psycopg.connect(demo_db)
    locked = threading.Event()

    def progress(p: Progress) -> None:
        # Just before pg_dump starts: a lock pg_dump must wait for, so the partial file stays partial.
        if p.phase == "dumping" and not locked.is_set():
            locker.execute('LOCK TABLE "Notes" IN ACCESS EXCLUSIVE MODE')
            locked.set()

    old_umask = os.umask(0o022)  # the usual umask: files 0644, folders 0755
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(result=take_backup(
        Target("prod", demo_db), settings, catalog, "U1", progress=progress)))
    try:
        worker.start()
        wait_for(locked.is_set, "the backup to reach pg_dump")
        with psycopg.connect(demo_db, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'"
            ).fetchone(), "pg_dump to wait for the lock")
        partials = list(settings.dir.rglob("*.partial"))
        assert partials, "pg_dump has not created its partial archive"
        for top in partials:
            for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
                mode = stat.S_IMODE(path.stat().st_mode)
                assert mode & 0o077 == 0, f"{path.name} is {oct(mode)} while pg_dump writes it"
    finally:
        locker.rollback()  # releases the lock: the backup goes on
        locker.close()
        worker.join(timeout=300)
        os.umask(old_umask)
    assert box["result"].verify_status == "verified"
    archive = Path(box["result"].location)
    assert stat.S_IMODE(archive.stat().st_mode) & 0o077 == 0
