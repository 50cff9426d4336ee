"""The `[readonly]` section of dbops.toml: which schemas a read-only role reads, which columns it never
reads, the limits put on its sessions, and when it is checked."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any

from .. import config_values as cv
from ..errors import ConfigError

# Password and token hashes of the asidenote schema: an analytics login has no use for them, and a
# leaked hash can be cracked offline.
DEFAULT_WITHHELD = ("public.Users.PasswordHash", "public.RefreshTokens.TokenHash",
                    "public.EmailVerificationTokens.TokenHash")
_DURATION = re.compile(r"\d{1,9}(ms|s|min|h)?")


@dataclass(frozen=True)
class WithheldColumn:
    schema: str
    table: str
    column: str

    @classmethod
    def parse(cls, text: str) -> "WithheldColumn":
        """`schema.table.column` or `table.column` (schema public); names as they are spelled in the
        catalog (case matters: `Users.PasswordHash`)."""
        parts = text.split(".") if isinstance(text, str) else []
        if len(parts) == 2:
            parts = ["public", *parts]
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"readonly.withheld has {text!r}: give \"schema.table.column\" or \"table.column\", "
                              "e.g. \"public.Users.PasswordHash\"")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


def _withheld(raw: Any) -> tuple[WithheldColumn, ...]:
    if not isinstance(raw, list):
        raise ValueError("")
    return tuple(WithheldColumn.parse(item) for item in raw)


def _duration(raw: Any) -> str:
    if not isinstance(raw, str) or not _DURATION.fullmatch(raw) or int(re.match(r"\d+", raw)[0]) == 0:
        raise ValueError("")
    return raw


def _names(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",")]
    if not isinstance(raw, list) or not all(isinstance(v, str) and v and "\x00" not in v for v in raw):
        raise ValueError("")
    return tuple(dict.fromkeys(raw))


def _schemas(raw: Any) -> tuple[str, ...]:
    found = _names(raw)
    if not found:
        raise ValueError("must name at least one schema, e.g. [\"public\"]")
    return found


DURATION = "a duration above zero like \"60s\", \"5min\" or \"500ms\""

READONLY = (
    cv.custom("schemas", ["public"], _schemas, "a list of schema names, e.g. [\"public\"]",
              "the schemas a read-only role reads"),
    cv.custom("withheld", list(DEFAULT_WITHHELD), _withheld, "a list of \"schema.table.column\" strings",
              "columns it never reads (\"table.column\" means schema public)"),
    cv.custom("statement_timeout", "60s", _duration, DURATION, "the longest query of its sessions"),
    cv.custom("idle_in_transaction_session_timeout", "60s", _duration, DURATION,
              "a session idle in a transaction this long is ended"),
    cv.whole("connection_limit", 5, "sessions at once", low=1, high=1000),
    cv.custom("check_time", "05:00", cv.time_of_day, cv.TIME_OF_DAY, "the daily `readonly check` (UTC), or \"off\""),
    cv.custom("migration_owners", [], _names, "a list of role names",
              "roles that run migrations, besides the table owners found"),
    cv.flag("replica", False, "true when a Render read replica exists: the report points analytics at it"),
)


@dataclass(frozen=True)
class ReadonlySettings:
    schemas: tuple[str, ...] = ("public",)
    withheld: tuple[WithheldColumn, ...] = field(
        default_factory=lambda: tuple(WithheldColumn.parse(c) for c in DEFAULT_WITHHELD))
    statement_timeout: str = "60s"
    idle_in_transaction_session_timeout: str = "60s"
    connection_limit: int = 5
    check_time: dtime | None = dtime(5, 0)  # daily `readonly check` (UTC); None: off
    migration_owners: tuple[str, ...] = ()  # roles that run migrations, besides the owners found
    replica: bool = False  # a read replica exists (Render: the database's "Read Replicas")

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> "ReadonlySettings":
        return cls(**cv.read("readonly", READONLY, section))

    def withheld_in(self, schema: str, table: str) -> set[str]:
        return {c.column for c in self.withheld if c.schema == schema and c.table == table}
