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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import config_values
from ..errors import ConfigError

FORMATS = ("custom", "directory")
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

    @property
    def access_key_id(self) -> str | None:
        return os.environ.get("DBOPS_S3_ACCESS_KEY_ID") or None

    @property
    def secret_access_key(self) -> str | None:
        return os.environ.get("DBOPS_S3_SECRET_ACCESS_KEY") or None


@dataclass
class BackupSettings:
    dir: Path = field(default_factory=lambda: Path(os.environ.get("DBOPS_BACKUP_DIR") or "backups"))
    format: str = "custom"
    jobs: int = 2  # parallel pg_dump workers for the directory format
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

    def encryption_key(self) -> bytes | None:
        """The key from DBOPS_BACKUP_KEY (base64 of 32 bytes), or None when it is not set."""
        return encryption_key_from_env()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "BackupSettings":
        d = dict(d or {})
        known = {"dir", "format", "jobs", "compression", "compression_level", "integrity", "storage", "encrypt",
                 "verify_after", "schedule", "timezone", "max_age_hours", "size_factor", "min_free_mb",
                 "stale_after_minutes", "lock_wait_seconds", "retention", "s3"}
        config_values.no_unknown(d, "backup", known)
        s = cls()
        if os.environ.get("DBOPS_BACKUP_DIR"):
            s.dir = Path(os.environ["DBOPS_BACKUP_DIR"])  # the environment wins: it is per machine
        elif "dir" in d:
            if not isinstance(d["dir"], str) or not d["dir"]:
                raise ConfigError("backup.dir must be a folder path, e.g. \"/var/lib/dbops/backups\"")
            s.dir = Path(d["dir"]).expanduser()
        s.format = _choice(d, "format", FORMATS, s.format)
        s.compression = _choice(d, "compression", COMPRESSIONS, s.compression)
        s.integrity = _choice(d, "integrity", INTEGRITY_LEVELS, s.integrity)
        s.storage = _choice(d, "storage", STORAGES, s.storage)
        s.jobs = config_values.whole(d, "backup", "jobs", s.jobs, 1)
        if d.get("compression_level") is not None:
            s.compression_level = config_values.whole(d, "backup", "compression_level", 0, 0)
        s.min_free_mb = config_values.whole(d, "backup", "min_free_mb", s.min_free_mb, 0)
        s.stale_after_minutes = config_values.whole(d, "backup", "stale_after_minutes", s.stale_after_minutes, 1)
        s.lock_wait_seconds = config_values.number(d, "backup", "lock_wait_seconds", s.lock_wait_seconds, 0.1)
        s.max_age_hours = config_values.number(d, "backup", "max_age_hours", s.max_age_hours, 0.1)
        s.size_factor = config_values.number(d, "backup", "size_factor", s.size_factor, 0.0)
        s.encrypt = config_values.flag(d, "backup", "encrypt", s.encrypt)
        s.verify_after = config_values.flag(d, "backup", "verify_after", s.verify_after)
        if "schedule" in d:
            s.schedule_enabled, s.schedule_time = _schedule(d["schedule"])
        if "timezone" in d:
            try:
                ZoneInfo(str(d["timezone"]))
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"backup.timezone must be a time zone name like \"UTC\" or \"Europe/Berlin\", "
                                  f"not {d['timezone']!r}") from None
            s.schedule_timezone = str(d["timezone"])
        if "retention" in d:
            s.retention = _retention(d["retention"])
        if "s3" in d:
            s.s3 = _s3(d["s3"])
        if s.storage == "s3" and not s.s3.bucket:
            raise ConfigError("backup.s3.bucket must be set when backup.storage = \"s3\"")
        if s.encrypt:
            encryption_key_from_env(required=True)  # fail at start-up, not at 3 a.m.
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


def _choice(d: dict, key: str, choices: tuple[str, ...], default: str) -> str:
    if key not in d:
        return default
    if d[key] not in choices:
        raise ConfigError(f"backup.{key} must be one of {', '.join(choices)}, not {d[key]!r}")
    return d[key]


_HHMM = re.compile(r"^(?:daily\s+)?([01]?\d|2[0-3]):([0-5]\d)$")


def _schedule(value: Any) -> tuple[bool, dtime]:
    if value in (False, "off", "none", ""):
        return False, dtime(3, 0)
    match = _HHMM.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise ConfigError(f"backup.schedule must be a daily time like \"03:00\" (or \"off\"), not {value!r}")
    return True, dtime(int(match.group(1)), int(match.group(2)))


def _retention(raw: Any) -> RetentionSettings:
    if not isinstance(raw, dict):
        raise ConfigError("backup.retention must be a table: daily, weekly, monthly, pre_migration_days")
    config_values.no_unknown(raw, "backup.retention", {"daily", "weekly", "monthly", "pre_migration_days"})
    r = RetentionSettings()
    for key in ("daily", "weekly", "monthly", "pre_migration_days"):
        setattr(r, key, config_values.whole(raw, "backup.retention", key, getattr(r, key), 0))
    return r


def _s3(raw: Any) -> S3Settings:
    if not isinstance(raw, dict):
        raise ConfigError("backup.s3 must be a table: bucket, prefix, endpoint_url, region, part_size_mb, keep_local")
    config_values.no_unknown(raw, "backup.s3", {"bucket", "prefix", "endpoint_url", "region", "part_size_mb", "keep_local"})
    s = S3Settings()
    for key in ("bucket", "prefix", "endpoint_url", "region"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"backup.s3.{key} must be text")
            setattr(s, key, raw[key].strip("/") if key == "prefix" else raw[key])
    if "endpoint_url" in raw and not re.match(r"^https?://", raw["endpoint_url"]):
        raise ConfigError("backup.s3.endpoint_url must start with https:// (or http:// for a local MinIO)")
    s.part_size_mb = config_values.whole(raw, "backup.s3", "part_size_mb", s.part_size_mb, 5)
    s.keep_local = config_values.flag(raw, "backup.s3", "keep_local", s.keep_local)
    return s
