"""Settings of the migrations area: [migrate.check], [migrate.rehearsal] and [migrate.apply] in
dbops.toml. They live here, apart from rehearsal.py and apply.py, so that checking them (before every
command, `migrate check` included) loads no database driver."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import config_values as cv

from .model import Severity
from .rules import all_rules

SECTION = "migrate.check"
SOURCES = ("backup", "schema")


def _disabled(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise ValueError("must be a list of rule codes, e.g. [\"rename-column\"]")
    severities = {r.code: r.severity for r in all_rules()}
    for code in raw:
        if code not in severities:
            raise ValueError(f"{code!r} is not a rule code (known: {', '.join(sorted(severities))})")
        if severities[code] is Severity.FORBIDDEN:
            raise ValueError(f"{code!r} guards a forbidden operation and cannot be disabled")
    return tuple(raw)


def _folder(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("")
    return Path(raw).expanduser()


CHECK = (
    cv.custom("disabled", [], _disabled, "a list of rule codes, e.g. [\"rename-column\"]",
              "warning/info codes to skip; forbidden codes cannot be disabled"),
    cv.number("fact_timeout_seconds", 60.0, "statement_timeout for the catalog queries of a check", above=True,
              allowed="a number of seconds > 0"),
)
REHEARSAL = (
    cv.choice("source", "backup", SOURCES,
              "\"backup\": restore the latest verified backup; \"schema\": schema only (very large DBs)"),
    cv.number("statement_timeout_s", 900.0, "per statement on the throwaway copy", above=True,
              allowed="a number of seconds > 0, e.g. 900"),
    cv.whole("jobs", 2, "parallel pg_restore jobs", low=1, high=64),
    cv.number("total_timeout_s", 3600.0, "the whole rehearsal: copy, UP, DOWN and the comparison", above=True,
              allowed="a number of seconds > 0, e.g. 3600"),
    cv.whole("disk_growth_mb", 0, "how much the copy's folder may grow during UP and DOWN; 0: twice the copy, "
             "at least 1024"),
    cv.whole("temp_file_limit_mb", 10240, "temporary files of one statement on the copy (temp_file_limit)", low=1),
    cv.custom("work_dir", None, _folder, "a folder path, e.g. \"/var/tmp/dbops\"",
              "parent of the temporary instance; default: the system temp folder", example="/var/tmp/dbops",
              commented=True),
)
APPLY = (
    cv.number("lock_timeout_s", 5.0, "how long one statement may wait for a lock per attempt", above=True,
              allowed="a number of seconds > 0, e.g. 5"),
    cv.number("statement_timeout_s", 900.0, "how long one statement may run", above=True,
              allowed="a number of seconds > 0, e.g. 900"),
    cv.whole("lock_retries", 3, "retries of a batch that hit the lock timeout", high=100),
    cv.number("retry_backoff_s", 2.0, "first wait before a retry; doubles each time",
              allowed="a number of seconds >= 0, e.g. 2"),
)


@dataclass(frozen=True)
class MigrationCheckSettings:
    # Warning/info rule codes to skip. Forbidden rules cannot be disabled: they are what an
    # approver must see (and ignore comments in SQL cannot silence them either).
    disabled: tuple[str, ...] = ()
    # statement_timeout for the queries that read the target database (catalog, whether dropped
    # columns hold data, counting rows that would not fit a narrower type: a full table scan).
    fact_timeout_seconds: float = 60.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MigrationCheckSettings":
        return cls(**cv.read(SECTION, CHECK, d))


@dataclass(frozen=True)
class RehearsalSettings:
    source: str = "backup"  # "backup": restore the latest verified backup; "schema": the schema only
    statement_timeout_s: float = 900.0  # per statement, on the copy
    work_dir: Path | None = None  # parent folder of the temporary instance (default: the system temp folder)
    jobs: int = 2  # parallel pg_restore jobs
    total_timeout_s: float = 3600.0  # the whole rehearsal
    disk_growth_mb: int = 0  # how much the instance folder may grow once the copy is made; 0: automatic
    temp_file_limit_mb: int = 10240  # temp_file_limit of the role UP and DOWN run as

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RehearsalSettings":
        return cls(**cv.read("migrate.rehearsal", REHEARSAL, d))


@dataclass(frozen=True)
class ApplySettings:
    lock_timeout_s: float = 5.0  # how long one statement may wait for a lock before the attempt is given up
    statement_timeout_s: float = 900.0  # how long one statement may run
    lock_retries: int = 3  # retries of a batch whose statement hit the lock timeout
    retry_backoff_s: float = 2.0  # first wait before a retry; doubles each time

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ApplySettings":
        return cls(**cv.read("migrate.apply", APPLY, d))
