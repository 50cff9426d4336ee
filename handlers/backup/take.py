"""Taking a backup: one snapshot for pg_dump and the manifest, and nothing half-done left behind.

The order of a backup, and why:
1. A catalog row `running` (so a crash leaves a trace that cleanup can find and mark failed).
2. A REPEATABLE READ, READ ONLY transaction on the target; its snapshot is exported and given to
   `pg_dump --snapshot`, and while pg_dump runs the manifest is measured in that same transaction:
   rows written after the export are in neither.
3. The archive is written under a hidden `.partial` name; pg_dump fsyncs it, its table of contents
   is checked against the manifest (every table has its data), it is packed (directory format) and
   encrypted if configured, fsynced, hashed, and only then renamed to its final name; with S3 it is
   streamed instead (stream.py): checked, encrypted, hashed and uploaded as pg_dump writes it.
4. Then the sealed manifest is written beside it (durably: partial name, fsync, rename, fsync of the
   folder), then the storage's index: storage now lists a complete backup (storage_catalog.py).
5. Only then the catalog row becomes `completed`. On any failure, cancel or kill the partial files
   are removed at once, or by `cleanup_incomplete` at the next start; a kill after the archive's
   rename leaves an archive without a manifest (quarantined at the next start), a kill after the
   manifest a complete backup the catalog does not know yet (adopted at the next start, sync.py).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from .. import fmt
from ..errors import Cancelled, DbopsError
from ..postgres import (
    PgDump,
    choose_compression,
    compression_argument,
    exit_text,
    last_line,
    libpq_env,
    missing_table_data,
    pg_dump_for,
    server_facts,
    start_tool,
    stop_tool,
)
from ..postgres.versions import short_version
from ..report import Note, Outcome, Progress, ProgressFn, Report, Section, Stopwatch, Table, key_values, no_progress
from ..target import Target, dsn_secrets, scrub
from . import crypto
from .catalog import BackupCatalog
from .failures import failure_message
from .manifest import ArchiveInfo, BackupManifest, capture_manifest, describe_source
from .seal import seal
from .settings import BackupSettings
from .storage import S3Store, StorageError, fsync_dir, fsync_file, prepare_dir, remove_path, sha256_file, size_of
from .storage_catalog import MANIFEST_SUFFIX, storage_for, write_durably, write_index
from .stream import SPOOLED_PARTS, StreamedArchive, stream_part_size

PARTIAL_SUFFIX = ".partial"
PARTIAL_RE = re.compile(r"^\.([ab]\d+)[._].*\.partial$")
HEARTBEAT_EVERY = 15.0
TICK_EVERY = 1.0


class BackupFailed(DbopsError):
    def __init__(self, message: str, backup_id: str | None = None) -> None:
        super().__init__(message)
        self.backup_id = backup_id


class BackupCancelled(BackupFailed, Cancelled):
    """The backup was asked to stop; nothing of it is kept."""


@dataclass
class BackupResult:
    backup_id: str
    target_name: str
    target_label: str
    manifest: BackupManifest
    location: str
    duration_s: float
    steps: list[dict] = field(default_factory=list)
    verify_status: str = "pending"  # pending (not verified yet) | verified | failed | unrestorable
    verify_detail: str = ""
    client_note: str | None = None  # pg_dump is not the server's major: what that costs
    peak_disk: int | None = None  # a streamed backup: the most local disk its upload's parts held at once

    @property
    def outcome(self) -> Outcome:
        return Outcome.FAILED if self.verify_status in ("failed", "unrestorable") else Outcome.OK

    def to_report(self) -> Report:
        m, a = self.manifest, self.manifest.archive
        verification = {"verified": "verified (full read of the archive)",
                        "pending": "not verified yet: `backup verify " + self.backup_id + "`"}.get(
            self.verify_status, f"{self.verify_status.upper()}: {self.verify_detail}")
        details = [
            ["id", self.backup_id],
            ["target", f"{self.target_name} ({self.target_label})"],
            ["database", f"{m.database} (PostgreSQL {m.server_version.split()[0]})"],
            ["size", fmt.size(a.size)],
            ["duration", fmt.duration(self.duration_s)],
            ["tables", str(len(m.tables))],
            ["rows", f"{m.total_rows:,}"],
            ["integrity", "row counts" if m.integrity_level == "counts" else "row counts and content checksums"],
            ["SHA-256", a.sha256[:16] + "…"],
            ["format", f"{a.format}, {a.compression}" + (", encrypted (AES-256-GCM)" if a.encrypted else "")],
            ["stored at", self.location],
            ["verification", verification],
        ]
        if m.source:
            details.insert(2, ["source", describe_source(m.source)])
        if self.peak_disk is not None:
            details.append(["local disk", f"streamed to storage, at most {fmt.size(self.peak_disk)} at once"])
        table_rows = [[f"{t['schema']}.{t['name']}", f"{t['rows']:,}", (t.get("checksum") or "-")[:12]]
                      for t in m.tables]
        summary = (f"Backup {self.backup_id} of `{self.target_name}` completed: {fmt.size(a.size)} in "
                   f"{fmt.duration(self.duration_s)}, {len(m.tables)} tables, {m.total_rows:,} rows "
                   f"({m.integrity_level}); {verification.split(':')[0]}.")
        sections = [Section("Tables", table=Table(["table", "rows", "checksum"], table_rows)),
                    Section("Steps", text=_steps_line(self.steps))]
        if self.client_note:
            summary += f" Warning: {self.client_note}."
            sections.insert(0, Section("PostgreSQL versions", notes=[Note.warning(f"{self.client_note}.")],
                                       problem=True))
        return Report(
            title=f"Backup {self.backup_id} of {self.target_name}",
            summary=summary,
            outcome=self.outcome,
            facts=key_values(details),
            sections=sections,
            data={"backup_id": self.backup_id, "target": self.target_name, "location": self.location,
                  "duration_s": round(self.duration_s, 3), "size": a.size, "sha256": a.sha256,
                  "tables": len(m.tables), "rows": m.total_rows, "integrity_level": m.integrity_level,
                  "verify_status": self.verify_status, "verify_detail": self.verify_detail,
                  "format": a.format, "compression": a.compression, "encrypted": a.encrypted,
                  "storage": a.storage, "steps": self.steps, "server_version": m.server_version,
                  "pg_dump_version": short_version(m.pg_dump_version), "client_note": self.client_note,
                  "source": m.source, "peak_local_disk": self.peak_disk},
        )


def _steps_line(steps: list[dict]) -> str:
    """"connect 0.1 s, dump 58.2 s, seal 1.3 s": one line, so the Tables keep Slack's one table."""
    return ", ".join(f"{s['step']} {s['seconds']} s" + ("" if s["outcome"] == "ok" else f" ({s['outcome']})")
                     for s in steps)


def take_backup(target: Target, settings: BackupSettings, catalog: BackupCatalog, requested_by: str,
                scheduled: bool = False, progress: ProgressFn = no_progress,
                cancel: threading.Event | None = None, source: dict | None = None) -> BackupResult:
    """`source`: where the dump was taken when not from `target` itself (a Render recovery copy: its
    connection is `target.dsn`); recorded in the manifest."""
    backup_id = catalog.start(target.name, requested_by, scheduled)
    run = _BackupRun(backup_id, target, settings, catalog, progress, cancel or threading.Event())
    run.requested_by, run.scheduled, run.source = requested_by, scheduled, source
    try:
        return run.execute()
    except BaseException as exc:
        run.discard()
        message = failure_message(exc, target)
        stopped = isinstance(exc, (Cancelled, KeyboardInterrupt))  # asked to stop: `cancelled`, not `failed`
        try:
            catalog.fail(backup_id, message, run.watch.elapsed, status="cancelled" if stopped else "failed")
        except psycopg.Error:
            pass  # the state database is gone too: cleanup_incomplete marks the row at the next start
        if isinstance(exc, BackupFailed):
            raise
        if isinstance(exc, DbopsError):
            raise type(exc)(f"backup {backup_id} failed: {exc}") from None
        if isinstance(exc, (psycopg.Error, OSError)):
            raise BackupFailed(f"backup {backup_id} failed: {message}", backup_id) from None
        raise


class _BackupRun:
    def __init__(self, backup_id: str, target: Target, settings: BackupSettings, catalog: BackupCatalog,
                 progress: ProgressFn, cancel: threading.Event) -> None:
        self.id, self.target, self.settings, self.catalog = backup_id, target, settings, catalog
        self.progress, self.cancel = progress, cancel
        self.watch = Stopwatch()
        self.partials: list[Path] = []
        self.proc: subprocess.Popen | None = None
        self.conn: psycopg.Connection | None = None
        self.secrets = dsn_secrets(target.dsn)
        self._last_beat = 0.0
        self.finals: list[Path] = []  # written under their final names, not yet in the catalog
        self.uploaded: list[tuple[S3Store, str]] = []
        self.completed = False
        self.requested_by, self.scheduled, self.source = "", False, None
        self.pg_dump: PgDump | None = None
        # S3 storage: pg_dump's output is uploaded as it is written (stream.py), never whole on this disk.
        self.streams = settings.storage == "s3" and settings.s3.stream and not settings.s3.keep_local
        self.streamed: StreamedArchive | None = None

    # -- the whole run -----------------------------------------------------------
    def execute(self) -> BackupResult:
        s = self.settings
        key = s.encryption_key() if s.encrypt else None
        if s.encrypt and key is None:
            raise BackupFailed("backup.encrypt is on but DBOPS_BACKUP_KEY is not set", self.id)
        folder = prepare_dir(Path(s.dir))
        self._phase("connecting", f"to `{self.target.name}` ({self.target.label})")
        with self.watch.step("connect"):
            self.conn = self.target.connect()
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            # Without a limit a backup waits forever behind a long lock, and every later backup is
            # refused as "already running": fail instead, saying why.
            self.conn.execute(f"SET lock_timeout = '{int(s.lock_wait_seconds * 1000)}ms'")
            facts = server_facts(self.conn)
        self.catalog.heartbeat(self.id, "checking", facts["database"])
        with self.watch.step("preflight"):
            # pg_dump of the server's major: its archive restores into that major (a drill's copy).
            self.pg_dump = pg_dump_for(facts["server_version_num"], facts["server_version"])
            compression = choose_compression(s.compression, s.compression_level, self.pg_dump.major,
                                             self.pg_dump.path)
            s = self.settings = dataclasses.replace(s, format=s.format_for(facts["database_size"],
                                                                                  shutil.disk_usage(folder).free))
            self._check_space(folder, facts["database_size"])
            snapshot = self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]

        created = datetime.now(timezone.utc)
        stamp = created.strftime("%Y%m%dT%H%M%SZ")
        safe_target = re.sub(r"[^A-Za-z0-9_.-]", "_", self.target.name)
        base = f"{self.id}_{safe_target}_{stamp}"
        dump_path = folder / f".{self.id}.{'dump' if s.format == 'custom' else 'd'}{PARTIAL_SUFFIX}"
        ext = ("dump" if s.format == "custom" else "tar") + (".enc" if key is not None else "")
        final_name = f"{base}.{ext}"
        if self.streams:
            store = S3Store(s.s3)
            self.streamed = StreamedArchive(store, store.key_for(self.target.name, final_name), self._part_size(
                facts["database_size"]), folder, self.id, s.format, key)
            self.streamed.start()

        with self.watch.step("dump"):
            tables, schema, checksum_method = self._dump_and_measure(dump_path, snapshot, compression)
        self.conn.rollback()
        self.conn.close()

        with self.watch.step("check"):
            self._phase("checking archive", "table of contents against the manifest")
            missing = (self.streamed.missing(dump_path, tables) if self.streamed
                       else missing_table_data(dump_path, tables))
            if missing:
                raise BackupFailed(f"backup {self.id} failed: the archive has no data for "
                                   f"{fmt.plural(len(missing), 'table')}: {', '.join(missing[:5])}", self.id)

        stored = dump_path
        if s.format == "directory" and not self.streamed:
            with self.watch.step("pack"):
                stored = self._pack(dump_path, folder / f".{self.id}.tar{PARTIAL_SUFFIX}")
        if key is not None and not self.streamed:
            with self.watch.step("encrypt"):
                stored = self._encrypt(stored, folder / f".{self.id}.enc{PARTIAL_SUFFIX}", key)
        with self.watch.step("seal"):
            self._phase("sealing", "the last part" if self.streamed else "fsync and SHA-256")
            if self.streamed:
                size, digest = self.streamed.seal(dump_path)
            else:
                fsync_file(stored)
                os.chmod(stored, 0o600)
                size = stored.stat().st_size
                digest = sha256_file(stored)

        manifest = BackupManifest(
            backup_id=self.id, target=self.target.name, database=facts["database"],
            created_at=created.isoformat(), snapshot=snapshot, server_version=facts["server_version"],
            server_version_num=facts["server_version_num"], pg_dump_version=self.pg_dump.version_text,
            client_versions={"pg_dump": self.pg_dump.version},
            archive=ArchiveInfo(format=s.format, compression=compression, path="", size=size, sha256=digest,
                                encrypted=key is not None, storage=s.storage,
                                key=None, encryption=crypto.parameters(key)),
            integrity_level=s.integrity, checksum_method=checksum_method, tables=tables, schema=schema,
            requested_by=self.requested_by, scheduled=self.scheduled, source=self.source)

        with self.watch.step("store"):
            manifest.duration_s = round(self.watch.elapsed, 3)
            location = self._store(stored, folder, final_name, manifest)
        duration = self.watch.elapsed  # one figure for the report, `list` and `info`: the verification is its own step
        self.catalog.complete(self.id, manifest, location, duration)
        self.completed = True
        result = BackupResult(self.id, self.target.name, self.target.label, manifest, location,
                              duration, self.watch.steps, client_note=self.pg_dump.note,
                              peak_disk=self.streamed.upload.peak_disk if self.streamed else None)
        if s.verify_after:
            from .verify import verify_record

            with self.watch.step("verify"):
                status, detail = verify_record(self.catalog, s, self.catalog.require(self.id), self.progress)
            result.verify_status, result.verify_detail = status, detail
        self._phase("done", f"{fmt.size(size)} in {fmt.duration(duration)}", fraction=1.0)
        return result

    # -- steps -------------------------------------------------------------------
    def _part_size(self, database_size: int) -> int:
        return stream_part_size(self.settings.s3, int(database_size * self.settings.size_factor))

    def _check_space(self, folder: Path, database_size: int) -> None:
        s = self.settings
        copies = 2 if (s.encrypt or s.format == "directory") else 1  # plain + packed/encrypted, briefly
        needed = int(database_size * s.size_factor * copies) + s.min_free_bytes
        free = shutil.disk_usage(folder).free
        why = f"database {fmt.size(database_size)} x {s.size_factor:g}{' x 2' if copies == 2 else ''}"
        if self.streams and s.format == "custom":  # only the parts in flight are ever on this disk
            needed = SPOOLED_PARTS * self._part_size(database_size) + s.min_free_bytes
            why = f"{SPOOLED_PARTS} parts of the streamed upload"
        if free < needed:
            raise BackupFailed(
                f"not enough free space in the backup folder {folder}: {fmt.size(free)} free, about "
                f"{fmt.size(needed)} needed ({why} + {fmt.size(s.min_free_bytes)} reserve). Free some space, "
                "run `backup prune`, or point DBOPS_BACKUP_DIR at a bigger disk.", self.id)

    def _dump_and_measure(self, dump_path: Path, snapshot: str,
                          compression: str) -> tuple[list[dict], dict, str | None]:
        s = self.settings
        dump = self.pg_dump
        cmd = [dump.path, "-w", f"--snapshot={snapshot}", f"--lock-wait-timeout={int(s.lock_wait_seconds * 1000)}ms",
               "-Z", compression_argument(compression, dump.major)]
        piped = self.streamed is not None and self.streamed.pipes
        cmd += [] if piped else ["-f", str(dump_path)]
        cmd += ["-Fc"] if s.format == "custom" else ["-Fd", "-j", str(s.jobs)]
        self.partials.append(dump_path)
        stderr = tempfile.TemporaryFile()
        self._phase("dumping", "pg_dump started")
        self.proc = start_tool(cmd, libpq_env(self.target.dsn), stdout=subprocess.PIPE if piped else subprocess.DEVNULL,
                               stderr=stderr)
        producer = self.streamed.producer if self.streamed else None
        if producer is not None:
            producer.start(self.proc, dump_path)
        box: dict = {}

        def measure() -> None:
            try:
                box["manifest"] = capture_manifest(self.conn, s.integrity)
            except BaseException as exc:  # handed to the main thread
                box["error"] = exc

        worker = threading.Thread(target=measure, name=f"manifest-{self.id}", daemon=True)
        worker.start()
        started, last_tick = time.monotonic(), 0.0
        try:
            while self.proc.poll() is None or worker.is_alive() or (producer is not None and producer.alive()):
                if self.cancel.is_set():
                    raise BackupCancelled(f"backup {self.id} cancelled; nothing was kept", self.id)
                if producer is not None and producer.error is not None:
                    raise producer.error  # the upload failed: pg_dump and the measuring are stopped below
                if self.proc.poll() not in (None, 0) and worker.is_alive():
                    self.conn.cancel_safe()  # pg_dump failed: stop measuring too
                if "error" in box and self.proc.poll() is None:
                    box["stopped_pg_dump"] = True  # then the manifest's error is the reason, not pg_dump's exit
                    self._stop_pg_dump()
                now = time.monotonic()
                if now - last_tick >= TICK_EVERY:
                    last_tick = now
                    written = self.streamed.written if self.streamed else size_of(dump_path)
                    what = "pg_dump" if self.proc.poll() is None else "manifest"
                    sent = f", {fmt.size(self.streamed.upload.sent)} uploaded" if self.streamed else ""
                    self._phase("dumping", f"{fmt.size(written)} written{sent}, {now - started:.0f} s "
                                           f"(waiting for {what})")
                time.sleep(0.05)
        except BaseException:
            self._stop_pg_dump()
            if worker.is_alive():
                self.conn.cancel_safe()
                worker.join(30)
            raise
        if producer is not None and producer.error is not None:
            raise producer.error
        rc = self.proc.returncode
        stderr.seek(0)
        err_text = scrub(stderr.read().decode("utf-8", "replace"), self.secrets)
        stderr.close()
        if "error" in box and box.get("stopped_pg_dump"):
            raise box["error"]
        if rc != 0:
            reason = exit_text("pg_dump", rc) + (f": {last_line(err_text)}" if rc > 0 else "")
            raise BackupFailed(f"backup {self.id} failed: {reason}; nothing was kept", self.id)
        if "error" in box:
            raise box["error"]
        manifest = box["manifest"]
        return manifest["tables"], manifest["schema"], manifest["checksum_method"]

    def _stop_pg_dump(self) -> None:
        if self.proc is not None:
            stop_tool(self.proc)

    def _pack(self, dump_dir: Path, tar_path: Path) -> Path:
        """A directory-format dump as one uncompressed tar file (its members are compressed already)."""
        self._phase("packing", "directory archive into one file")
        self.partials.append(tar_path)
        fd = os.open(tar_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(dump_dir.iterdir()):
                self._check_cancel()
                tar.add(entry, arcname=entry.name, recursive=False)
        shutil.rmtree(dump_dir)
        return tar_path

    def _encrypt(self, plain: Path, enc_path: Path, key: bytes) -> Path:
        self._phase("encrypting", "AES-256-GCM, 1 MiB chunks")
        self.partials.append(enc_path)
        fd = os.open(enc_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(plain, "rb") as src, os.fdopen(fd, "wb") as dst:
            crypto.encrypt_stream(src, dst, key)
        remove_path(plain)  # the plaintext never outlives this step
        return enc_path

    def _store(self, stored: Path, folder: Path, final_name: str, manifest: BackupManifest) -> str:
        s = self.settings
        seal_key = s.seal_key()  # with a key the seal cannot be forged by whoever can write to the storage
        if s.storage == "s3":
            store = S3Store(s.s3)
            key = store.key_for(self.target.name, final_name)
            manifest.archive.key = key
            manifest.archive.path = key
            total = manifest.archive.size
            sent = [0]

            def on_bytes(n: int) -> None:
                self._check_cancel()
                sent[0] += n
                self._phase("uploading", f"{fmt.size(sent[0])} of {fmt.size(total)}",
                            fraction=sent[0] / total if total else 1.0)

            self._phase("uploading", f"to {store.url(key)}", fraction=0.0)
            if self.streamed:
                self.streamed.complete()  # the object appears now, whole
            else:
                store.upload(stored, key, on_bytes)
            self.uploaded.append((store, key))
            self.uploaded.append((store, key + MANIFEST_SUFFIX))
            store.put_bytes(key + MANIFEST_SUFFIX, seal(manifest, seal_key))  # last: the backup is listed from now on
            self._update_index()
            location = store.url(key)
            if not s.s3.keep_local:
                remove_path(stored)
                return location
            final = folder / final_name
            os.replace(stored, final)  # the kept local copy: no manifest beside it, storage is S3
            fsync_dir(folder)
            return location
        final = folder / final_name
        manifest.archive.path = str(final.resolve())
        self.finals += [folder / (final_name + MANIFEST_SUFFIX), final]
        os.replace(stored, final)
        fsync_dir(folder)
        write_durably(folder / (final_name + MANIFEST_SUFFIX), seal(manifest, seal_key))  # last: now it is a backup
        self._update_index()
        return str(final.resolve())

    def _update_index(self) -> None:
        try:
            write_index(storage_for(self.settings))
        except (StorageError, OSError):
            pass  # the manifests are the truth; the index is rewritten at the next backup or prune

    # -- plumbing ----------------------------------------------------------------
    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise BackupCancelled(f"backup {self.id} cancelled; nothing was kept", self.id)

    def _phase(self, phase: str, detail: str = "", fraction: float | None = None) -> None:
        self.progress(Progress(phase, fraction, f"{self.id}: {detail}" if detail else self.id))
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_EVERY:
            self._last_beat = now
            try:
                self.catalog.heartbeat(self.id, phase)
            except psycopg.Error:
                pass  # the state database blinking must not kill a backup that is going well

    def discard(self) -> None:
        """Remove everything a failed run wrote; nothing that looks complete stays."""
        self._stop_pg_dump()
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.cancel_safe()
            except Exception:
                pass
            self.conn.close()
        if self.streamed is not None and not self.completed:
            self.streamed.discard()  # AbortMultipartUpload: no object, no billed parts
        for path in self.partials:
            remove_path(path)
        if not self.completed:  # stored under final names but never recorded: not a backup
            for path in self.finals:
                remove_path(path)
            for store, key in self.uploaded:
                try:
                    store.delete(key)
                except DbopsError:
                    pass
