"""The backup catalog in the state database (dbops.backups): short connections, one per call."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..errors import UsageError
from .manifest import BackupManifest

_COLUMNS = ("id, target, database, scheduled, requested_by, status, phase, error, owner, heartbeat_at, started_at, "
            "finished_at, duration_s, format, compression, encrypted, storage, location, size_bytes, sha256, "
            "integrity_level, tables, total_rows, verify_status, verified_at, verify_detail, deleted_at")


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class BackupRecord:
    id: str
    target: str
    database: str | None
    scheduled: bool
    requested_by: str
    status: str
    phase: str | None
    error: str | None
    owner: str | None
    heartbeat_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    format: str | None
    compression: str | None
    encrypted: bool
    storage: str | None
    location: str | None
    size_bytes: int | None
    sha256: str | None
    integrity_level: str | None
    tables: int | None
    total_rows: int | None
    verify_status: str
    verified_at: datetime | None
    verify_detail: str | None
    deleted_at: datetime | None

    @property
    def verified(self) -> bool:
        return self.verify_status == "verified"

    @property
    def usable(self) -> bool:
        """Completed and not pruned: there is an archive to verify or restore."""
        return self.status == "completed" and self.deleted_at is None

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for key in _COLUMNS.split(", "):
            value = getattr(self, key)
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class BackupCatalog:
    def __init__(self, state_dsn: str) -> None:
        self.state_dsn = state_dsn

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.state_dsn, autocommit=True, connect_timeout=10)

    # Not a StorageCatalog (whose `from_storage` is True): the front ends and the restore ask this.
    from_storage = False

    # -- writing ---------------------------------------------------------------
    def start(self, target: str, requested_by: str, scheduled: bool = False) -> str:
        """A new `running` row; returns its id (b042 for a manual backup, a017 for a scheduled one)."""
        prefix, seq = ("a", "dbops.backup_scheduled_seq") if scheduled else ("b", "dbops.backup_manual_seq")
        with self._connect() as conn:
            return conn.execute(
                f"INSERT INTO dbops.backups (id, target, scheduled, requested_by, owner, heartbeat_at, phase)"
                f" VALUES (%s || lpad(nextval('{seq}')::text, 3, '0'), %s, %s, %s, %s, now(), 'starting')"
                f" RETURNING id", (prefix, target, scheduled, requested_by, this_process())).fetchone()[0]

    def heartbeat(self, backup_id: str, phase: str, database: str | None = None) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE dbops.backups SET heartbeat_at = now(), phase = %s, database = coalesce(%s, database)"
                         " WHERE id = %s AND status = 'running'", (phase, database, backup_id))

    def complete(self, backup_id: str, manifest: BackupManifest, location: str, duration_s: float) -> None:
        a = manifest.archive
        with self._connect() as conn:
            updated = conn.execute(
                "UPDATE dbops.backups SET status = 'completed', phase = 'done', finished_at = now(), duration_s = %s,"
                " database = %s, format = %s, compression = %s, encrypted = %s, storage = %s, location = %s,"
                " size_bytes = %s, sha256 = %s, integrity_level = %s, tables = %s, total_rows = %s, manifest = %s"
                " WHERE id = %s AND status = 'running'",
                (duration_s, manifest.database, a.format, a.compression, a.encrypted, a.storage, location, a.size,
                 a.sha256, manifest.integrity_level, len(manifest.tables), manifest.total_rows,
                 json.dumps(manifest.to_dict()), backup_id)).rowcount
        if updated != 1:
            # Someone (cleanup at another replica's start) declared it dead meanwhile: not completed.
            raise RuntimeError(f"backup {backup_id} is no longer running in the catalog")

    def add_from_storage(self, manifest: BackupManifest, location: str, adopt: bool) -> str | None:
        """Catalogue a backup found in storage: "added" (the catalog had no row), "adopted" (a row
        that never became `completed`: the process died after writing the manifest), or None.

        `adopt` only once the caller has checked the archive's SHA-256. The id sequences are moved
        past the id, so a rebuilt catalog never hands out an id that storage already holds."""
        a = manifest.archive
        values = (manifest.target, manifest.database, manifest.scheduled, manifest.requested_by or "?",
                  manifest.created_at, manifest.duration_s, a.format, a.compression, a.encrypted, a.storage,
                  location, a.size, a.sha256, manifest.integrity_level, len(manifest.tables), manifest.total_rows,
                  json.dumps(manifest.to_dict()))
        with self._connect() as conn:
            self._move_sequence_past(conn, manifest.backup_id)
            added = conn.execute(
                "INSERT INTO dbops.backups (id, target, database, scheduled, requested_by, status, phase, started_at,"
                " finished_at, duration_s, format, compression, encrypted, storage, location, size_bytes, sha256,"
                " integrity_level, tables, total_rows, manifest)"
                " VALUES (%s, %s, %s, %s, %s, 'completed', 'done', %s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s) ON CONFLICT (id) DO NOTHING", (manifest.backup_id, *values)).rowcount
            if added:
                return "added"
            if not adopt:
                return None
            adopted = conn.execute(
                "UPDATE dbops.backups SET target = %s, database = %s, scheduled = %s, requested_by = %s,"
                " status = 'completed', phase = 'done', error = NULL, started_at = %s, finished_at = now(),"
                " duration_s = %s, format = %s, compression = %s, encrypted = %s, storage = %s, location = %s,"
                " size_bytes = %s, sha256 = %s, integrity_level = %s, tables = %s, total_rows = %s, manifest = %s"
                " WHERE id = %s AND status <> 'completed' AND deleted_at IS NULL", (*values, manifest.backup_id)
            ).rowcount
        return "adopted" if adopted else None

    @staticmethod
    def _move_sequence_past(conn: psycopg.Connection, backup_id: str) -> None:
        seq = {"a": "dbops.backup_scheduled_seq", "b": "dbops.backup_manual_seq"}.get(backup_id[:1])
        if seq is None or not backup_id[1:].isdigit():
            return
        conn.execute(f"SELECT setval('{seq}', greatest(%s, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                     f" FROM {seq})))", (int(backup_id[1:]),))

    def is_empty(self) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT NOT EXISTS (SELECT 1 FROM dbops.backups)").fetchone()[0]

    def fail(self, backup_id: str, error: str, duration_s: float | None = None, status: str = "failed") -> None:
        """The end of a backup that kept nothing: `failed`, or `cancelled` when someone stopped it."""
        assert status in ("failed", "cancelled")
        with self._connect() as conn:
            conn.execute("UPDATE dbops.backups SET status = %s, error = %s, finished_at = now(),"
                         " duration_s = %s WHERE id = %s AND status = 'running'",
                         (status, error, duration_s, backup_id))

    def set_verification(self, backup_id: str, status: str, detail: str, at: datetime | None = None) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE dbops.backups SET verify_status = %s, verify_detail = %s,"
                         " verified_at = coalesce(%s, now()) WHERE id = %s", (status, detail, at, backup_id))

    def mark_deleted(self, backup_id: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE dbops.backups SET deleted_at = now() WHERE id = %s", (backup_id,))

    def fail_stale_running(self, stale_after: timedelta, alive_here: set[str] | None = None) -> list[str]:
        """Mark dead `running` rows failed: no heartbeat for `stale_after`, or owned by a dead process here."""
        host = socket.gethostname()
        with self._connect() as conn:
            rows = conn.execute("SELECT id, owner, heartbeat_at FROM dbops.backups WHERE status = 'running'").fetchall()
            dead = []
            now = datetime.now(timezone.utc)
            for backup_id, owner, heartbeat in rows:
                owner_host, _, pid = (owner or "").rpartition(":")
                if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                    dead.append(backup_id)
                elif heartbeat is None or now - heartbeat > stale_after:
                    dead.append(backup_id)
            for backup_id in dead:
                conn.execute("UPDATE dbops.backups SET status = 'failed', finished_at = now(),"
                             " error = 'interrupted: the process taking it stopped before it finished'"
                             " WHERE id = %s AND status = 'running'", (backup_id,))
        return dead

    # -- reading -----------------------------------------------------------------
    def get(self, backup_id: str) -> BackupRecord | None:
        with self._connect() as conn:
            conn.row_factory = dict_row
            row = conn.execute(f"SELECT {_COLUMNS} FROM dbops.backups WHERE id = %s", (backup_id,)).fetchone()
        return BackupRecord(**row) if row else None

    def require(self, backup_id: str) -> BackupRecord:
        record = self.get(backup_id.strip().lower()) if backup_id else None
        if record is None:
            raise UsageError(f"no backup with id `{backup_id}`; `backup list` shows the ids")
        return record

    def manifest(self, backup_id: str) -> BackupManifest | None:
        with self._connect() as conn:
            row = conn.execute("SELECT manifest FROM dbops.backups WHERE id = %s", (backup_id,)).fetchone()
        return BackupManifest.from_dict(row[0]) if row and row[0] else None

    def list(self, target: str | None = None, include_deleted: bool = False, limit: int = 1000) -> list[BackupRecord]:
        """Newest first."""
        where, args = [], []
        if target:
            where.append("target = %s")
            args.append(target)
        if not include_deleted:
            where.append("deleted_at IS NULL")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._connect() as conn:
            conn.row_factory = dict_row
            rows = conn.execute(f"SELECT {_COLUMNS} FROM dbops.backups {clause} ORDER BY started_at DESC, id DESC"
                                f" LIMIT %s", (*args, limit)).fetchall()
        return [BackupRecord(**r) for r in rows]

    def running_ids(self) -> set[str]:
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT id FROM dbops.backups WHERE status = 'running'").fetchall()}


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
