"""The `[backup]` section of dbops.toml, plus the environment variables that hold secrets and paths.

Secrets never go into dbops.toml: the encryption key comes from DBOPS_BACKUP_KEY, S3 credentials
from DBOPS_S3_ACCESS_KEY_ID / DBOPS_S3_SECRET_ACCESS_KEY (or boto3's usual AWS_* chain).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .. import config_values as cv
from ..errors import ConfigError
from ..sealing import MANIFESTS, derived_key

FORMATS = ("auto", "custom", "directory")
SOURCES = ("target", "render-recovery")  # what a backup dumps: the target itself, or a Render recovery copy
COMPRESSIONS = ("auto", "zstd", "gzip", "lz4", "none")
STORAGES = ("local", "s3")
INTEGRITY_LEVELS = ("counts", "checksums")
MiB = 1024 * 1024


@dataclass
class RetentionSettings:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6
    pre_migration_days: int = 30  # a backup taken before a migration is kept this long, whatever else


@dataclass
class S3Settings:
    bucket: str = ""
    prefix: str = "dbops-backups"
    endpoint_url: str | None = None  # R2, B2, MinIO: their S3 endpoint; None for AWS
    region: str | None = None
    part_size_mb: int = 64  # raised automatically so a dump never needs more than 10,000 parts
    keep_local: bool = False  # keep the local copy after a successful upload
    url_minutes: int = 15  # how long a `backup url` link lets anyone holding it download the archive
    stream: bool = True  # pg_dump's output uploaded as it is written, never whole on local disk (not with keep_local)
    stream_max_gb: int = 500  # a streamed upload's parts are sized so that 10,000 of them hold this much

    @property
    def access_key_id(self) -> str | None:
        return os.environ.get("DBOPS_S3_ACCESS_KEY_ID") or None

    @property
    def secret_access_key(self) -> str | None:
        return os.environ.get("DBOPS_S3_SECRET_ACCESS_KEY") or None


@dataclass
class BackupSettings:
    dir: Path = field(default_factory=lambda: Path(os.environ.get("DBOPS_BACKUP_DIR") or "backups"))
    format: str = "auto"  # auto: directory (-j jobs) from parallel_from_gb on, where the disk holds it; else custom
    jobs: int = 2  # parallel pg_dump workers for the directory format
    parallel_from_gb: float = 2.0  # "auto" dumps a database this large in the directory format, in parallel
    scheduled_from: str = "target"  # what the daily backup dumps: "target" or "render-recovery" (a Render copy)
    recovery_copy_for: str = "approvers"  # who may ask for `backup --from render-recovery` (billed): or "anyone"
    compression: str = "auto"  # auto: zstd where pg_dump was built with it, gzip otherwise
    compression_level: int | None = None
    integrity: str = "checksums"  # "counts" does not catch a changed row
    storage: str = "local"
    encrypt: bool = False  # needs DBOPS_BACKUP_KEY
    verify_after: bool = True  # full read of every new archive right after it is written
    schedule_time: dtime = dtime(3, 0)
    schedule_timezone: str = "UTC"
    schedule_enabled: bool = True
    max_age_hours: float = 26.0
    size_factor: float = 0.6  # expected archive size = database size x this (a dump has no indexes)
    min_free_mb: int = 256  # free space kept on top of the estimate
    stale_after_minutes: int = 10  # a "running" backup without a heartbeat this long is dead
    lock_wait_seconds: float = 1800.0  # a table locked longer than this (a stuck migration) fails the backup
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    s3: S3Settings = field(default_factory=S3Settings)

    @property
    def min_free_bytes(self) -> int:
        return self.min_free_mb * MiB

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.schedule_timezone)

    def format_for(self, database_size: int, free_bytes: int) -> str:
        """The archive format of a backup: "auto" is the directory format, dumped in parallel, for a
        database from parallel_from_gb on when the disk holds its archive twice over (the archive and
        its verification); the custom format otherwise."""
        if self.format != "auto":
            return self.format
        if self.jobs < 2 or database_size < self.parallel_from_gb * 1000 ** 3:
            return "custom"
        needed = int(database_size * self.size_factor * 2) + self.min_free_bytes
        return "directory" if free_bytes >= needed else "custom"

    def encryption_key(self) -> bytes | None:
        """The key from DBOPS_BACKUP_KEY (base64 of 32 bytes), or None when it is not set."""
        return encryption_key_from_env()

    def seal_key(self) -> bytes | None:
        """The key manifests and verification records are sealed with: derived from DBOPS_BACKUP_KEY, else
        from DBOPS_SEAL_KEY (handlers/sealing.py); None without either: seals are then a plain SHA-256,
        which anyone can write."""
        key = encryption_key_from_env()
        if key is None:
            return derived_key(MANIFESTS)
        from .crypto import seal_key

        return seal_key(key)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, serving: bool = False) -> "BackupSettings":
        """With `serving` (the bot: it takes the scheduled backups) backup.encrypt needs DBOPS_BACKUP_KEY
        now, not at 3 a.m.; elsewhere (an operator's laptop) only what needs the key refuses, naming it."""
        found = cv.read("backup", BACKUP, d)
        if "schedule" in found:
            found["schedule_enabled"], found["schedule_time"] = found.pop("schedule")
        if os.environ.get("DBOPS_BACKUP_DIR"):
            found["dir"] = Path(os.environ["DBOPS_BACKUP_DIR"])  # the environment wins: it is per machine
        s = cls(**found)
        if s.storage == "s3" and not s.s3.bucket:
            raise ConfigError("backup.s3.bucket must be set when backup.storage = \"s3\"")
        # A malformed key is an error anywhere; a missing one stops the bot at start-up, not at 3 a.m. (it
        # seals manifests too); elsewhere (an operator's laptop) only what needs the key refuses, naming it.
        encryption_key_from_env(required=s.encrypt and serving)
        return s


def encryption_key_from_env(required: bool = False) -> bytes | None:
    raw = os.environ.get("DBOPS_BACKUP_KEY", "").strip()
    if not raw:
        if required:
            raise ConfigError("backup.encrypt is on but DBOPS_BACKUP_KEY is not set: put a random key there, "
                              "e.g. the output of `openssl rand -base64 32`, and keep a copy somewhere safe")
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:  # the value itself is never echoed
        raise ConfigError("DBOPS_BACKUP_KEY must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)")
    return key


def _folder(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ValueError("")
    return Path(raw).expanduser()


_HHMM = re.compile(r"^(?:daily\s+)?([01]?\d|2[0-3]):([0-5]\d)$")


def _schedule(value: Any) -> tuple[bool, dtime]:
    if value in (False, "off", "none", ""):
        return False, dtime(3, 0)
    match = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("")
    return True, dtime(int(match.group(1)), int(match.group(2)))


def _endpoint(raw: Any) -> str:
    if not isinstance(raw, str) or not re.match(r"^https?://", raw):
        raise ValueError("")
    return raw


def _prefix(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("")
    return raw.strip("/")


RETENTION = (
    cv.whole("daily", 7, "the newest backup of each of this many days"),
    cv.whole("weekly", 4, "... of this many weeks"),
    cv.whole("monthly", 6, "... of this many months"),
    cv.whole("pre_migration_days", 30, "backups taken before a migration are kept this long, whatever the above"),
)
S3 = (
    cv.text("bucket", "", "needed when storage = \"s3\"", example="my-backups"),
    cv.custom("prefix", "dbops-backups", _prefix, "text", "folder of the backups in the bucket"),
    cv.custom("endpoint_url", None, _endpoint, "a URL starting with https:// (or http:// for a local MinIO)",
              "R2 / B2 / MinIO; omit for AWS", example="https://<account>.r2.cloudflarestorage.com", commented=True),
    cv.text("region", None, "the bucket's region; omit for the endpoint's default", example="auto", commented=True),
    cv.whole("part_size_mb", 64, "raised automatically to stay within 10,000 parts", low=5),
    cv.flag("keep_local", False, "keep the local copy after a successful upload"),
    cv.whole("url_minutes", 15, "a `backup url` link lets whoever holds it download the archive this long",
             low=1, high=720),
    cv.flag("stream", True, "upload pg_dump's output as it is written: never whole on local disk "
                            "(not with keep_local)"),
    cv.whole("stream_max_gb", 500, "a streamed upload's parts are sized so that 10,000 of them hold this much",
             low=1),
)

BACKUP = (
    cv.custom("dir", None, _folder, "a folder path, e.g. \"/var/lib/dbops/backups\"",
              "DBOPS_BACKUP_DIR overrides this; default ./backups", example="/var/lib/dbops/backups", commented=True),
    cv.choice("format", "auto", FORMATS, "\"custom\" (-Fc), \"directory\" (-Fd -j jobs, stored as one .tar), "
              "or \"auto\": directory from parallel_from_gb on where the disk holds it"),
    cv.whole("jobs", 2, "parallel pg_dump workers for the directory format", low=1),
    cv.number("parallel_from_gb", 2.0, "format \"auto\" dumps a database this large in the directory format", low=0.0),
    cv.choice("scheduled_from", "target", SOURCES, "what the daily backup dumps: the target, or \"render-recovery\": "
              "a Render point-in-time copy (no load on production; billed while it exists)"),
    cv.choice("recovery_copy_for", "approvers", ("approvers", "anyone"),
              "who may run `backup --from render-recovery` (it bills a Render instance)"),
    cv.choice("compression", "auto", COMPRESSIONS, "auto = zstd where pg_dump has it, else gzip"),
    cv.whole("compression_level", None, "default: the compressor's own", example=3, commented=True),
    cv.choice("integrity", "checksums", INTEGRITY_LEVELS,
              "\"checksums\" (every row's values hashed: a changed row is caught) or \"counts\""),
    cv.choice("storage", "local", STORAGES, "\"local\" or \"s3\" (see [backup.s3])"),
    cv.flag("encrypt", False, "AES-256-GCM at rest; key in DBOPS_BACKUP_KEY (openssl rand -base64 32)"),
    cv.flag("verify_after", True, "full read of each new archive right after it is written"),
    cv.custom("schedule", "03:00", _schedule, "a daily time like \"03:00\" (or \"off\")", "daily time, or \"off\""),
    cv.custom("timezone", "UTC", cv.time_zone, cv.TIME_ZONE, "of the schedule", attr="schedule_timezone"),
    cv.number("max_age_hours", 26.0, "staleness alarm for the newest verified backup", low=0.1),
    cv.number("size_factor", 0.6, "expected archive size = database size x this (free-space check)"),
    cv.whole("min_free_mb", 256, "free space kept on top of the estimate"),
    cv.whole("stale_after_minutes", 10, "a \"running\" backup with no heartbeat this long is dead", low=1),
    cv.number("lock_wait_seconds", 1800.0, "a table locked longer than this (a stuck migration) fails the backup",
              low=0.1),
    cv.table("retention", RETENTION, "only verified backups count; the newest verified is never deleted",
             lambda values: RetentionSettings(**values)),
    cv.table("s3", S3, "credentials: DBOPS_S3_ACCESS_KEY_ID / DBOPS_S3_SECRET_ACCESS_KEY",
             lambda values: S3Settings(**values)),
)
