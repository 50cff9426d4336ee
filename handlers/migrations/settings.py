"""Settings for `dbops migrate check` (dbops.toml section [migrate.check])."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers import config_values
from handlers.errors import ConfigError

from .model import Severity
from .rules import all_rules

SECTION = "migrate.check"


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
        d = dict(d or {})
        config_values.no_unknown(d, SECTION, ("disabled", "fact_timeout_seconds"))
        disabled = d.get("disabled", [])
        if not isinstance(disabled, list) or not all(isinstance(c, str) for c in disabled):
            raise ConfigError(f"{SECTION}.disabled must be a list of rule codes, e.g. [\"rename-column\"]")
        severities = {r.code: r.severity for r in all_rules()}
        for code in disabled:
            if code not in severities:
                raise ConfigError(f"{SECTION}.disabled: {code!r} is not a rule code (known: {', '.join(sorted(severities))})")
            if severities[code] is Severity.FORBIDDEN:
                raise ConfigError(f"{SECTION}.disabled: {code!r} guards a forbidden operation and cannot be disabled")
        timeout = d.get("fact_timeout_seconds", cls.fact_timeout_seconds)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{SECTION}.fact_timeout_seconds must be a number of seconds > 0")
        return cls(disabled=tuple(disabled), fact_timeout_seconds=float(timeout))
