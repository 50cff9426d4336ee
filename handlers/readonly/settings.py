"""The `[readonly]` section of dbops.toml: which schemas a read-only role reads, which columns it never
reads, the limits put on its sessions, and when it is checked."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any

from ..errors import ConfigError

# Password and token hashes of the asidenote schema: an analytics login has no use for them, and a
# leaked hash can be cracked offline.
DEFAULT_WITHHELD = ("public.Users.PasswordHash", "public.RefreshTokens.TokenHash",
                    "public.EmailVerificationTokens.TokenHash")
_DURATION = re.compile(r"\d{1,9}(ms|s|min|h)?")
_KNOWN = {"schemas", "withheld", "statement_timeout", "idle_in_transaction_session_timeout", "connection_limit",
          "check_time", "migration_owners", "replica"}


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
        unknown = set(section) - _KNOWN
        if unknown:
            word = "setting" if len(unknown) == 1 else "settings"
            raise ConfigError(f"[readonly] has unknown {word} {', '.join(sorted(unknown))}: "
                              f"known are {', '.join(sorted(_KNOWN))}")
        found: dict[str, Any] = {}
        if "schemas" in section:
            found["schemas"] = _names(section["schemas"], "readonly.schemas", allow_empty=False)
        if "migration_owners" in section:
            found["migration_owners"] = _names(section["migration_owners"], "readonly.migration_owners")
        if "withheld" in section:
            raw = section["withheld"]
            if not isinstance(raw, list):
                raise ConfigError("readonly.withheld must be a list of \"schema.table.column\" strings")
            found["withheld"] = tuple(WithheldColumn.parse(item) for item in raw)
        for key in ("statement_timeout", "idle_in_transaction_session_timeout"):
            if key in section:
                value = section[key]
                if not isinstance(value, str) or not _DURATION.fullmatch(value) or int(re.match(r"\d+", value)[0]) == 0:
                    raise ConfigError(f"readonly.{key} must be a duration above zero like \"60s\", \"5min\" or "
                                      "\"500ms\"")
                found[key] = value
        if "connection_limit" in section:
            value = section["connection_limit"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ConfigError("readonly.connection_limit must be a whole number from 1 to 1000")
            found["connection_limit"] = value
        if "check_time" in section:
            from datetime import time as _t

            raw = section["check_time"]
            if raw == "off":
                found["check_time"] = None
            else:
                try:
                    hours, minutes = str(raw).split(":")
                    found["check_time"] = _t(int(hours), int(minutes))
                except ValueError:
                    raise ConfigError(f"readonly.check_time must be a time of day like \"05:00\" (UTC) or \"off\", "
                                      f"not {raw!r}") from None
        if "replica" in section:
            if not isinstance(section["replica"], bool):
                raise ConfigError("readonly.replica must be true or false (true: a read replica exists)")
            found["replica"] = section["replica"]
        return cls(**found)

    def withheld_in(self, schema: str, table: str) -> set[str]:
        return {c.column for c in self.withheld if c.schema == schema and c.table == table}


def _names(value: Any, key: str, allow_empty: bool = True) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) and v and "\x00" not in v for v in value):
        raise ConfigError(f"{key} must be a list of names, e.g. [\"public\"]")
    if not value and not allow_empty:
        raise ConfigError(f"{key} must name at least one schema, e.g. [\"public\"]")
    return tuple(dict.fromkeys(value))
