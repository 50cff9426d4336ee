"""Settings for the index review: the `[indexes]` section of dbops.toml.

Expected indexes are an array of tables, one entry per index:

    [[indexes.expected]]
    table = "ExternalLogins"
    columns = ["Provider", "ProviderUserId"]   # one composite index, columns in order
    unique = true

Two single-column indexes are two entries. Names are exact, case-sensitive
identifiers (EF Core quotes them), so "Users" is not users.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import config_values
from ..errors import ConfigError

# The checks a finding can come from; an ignore entry may name one to narrow itself.
CHECKS = ("expected", "unused", "invalid", "duplicate", "foreign_key", "seq_scan")


@dataclass(frozen=True)
class ExpectedIndex:
    """An index the application needs (dbops.toml, [[indexes.expected]]): on schema.table, with exactly
    these leading key columns; the index review and the restore drill both check it."""

    table: str
    columns: tuple[str, ...]
    unique: bool = False
    schema: str = "public"
    purpose: str = ""

    @property
    def key(self) -> str:
        """A stable, readable name for this expectation (also used by the digest)."""
        cols = ", ".join(self.columns)
        return f"{self.schema}.{self.table}({cols})" + (" unique" if self.unique else "")

    @property
    def label(self) -> str:
        """In a sentence: "unique index on Users (Email)"; the schema only where it is not public."""
        where = self.table if self.schema == "public" else f"{self.schema}.{self.table}"
        return f"{'unique ' if self.unique else ''}index on {where} ({', '.join(self.columns)})"

    @classmethod
    def coerce(cls, item: Any) -> "ExpectedIndex":
        """From an ExpectedIndex, a (table, columns[, unique]) tuple, a dict, or an object with those
        attributes; a table may be written "schema.table"."""
        if isinstance(item, ExpectedIndex):
            return item
        schema = None
        if isinstance(item, dict):
            table, columns, unique = item.get("table"), item.get("columns"), item.get("unique", False)
            schema = item.get("schema")
        elif isinstance(item, (tuple, list)):
            if len(item) not in (2, 3):
                raise ValueError(f"an expected index is (table, columns[, unique]), not {item!r}")
            table, columns, unique = item[0], item[1], item[2] if len(item) == 3 else False
        else:
            table, columns, unique = getattr(item, "table", None), getattr(item, "columns", None), \
                getattr(item, "unique", False)
            schema = getattr(item, "schema", None)
        if isinstance(columns, str):
            columns = (columns,)
        if not table or not columns:
            raise ValueError(f"an expected index needs a table and at least one column, not {item!r}")
        written_schema, _, table = str(table).rpartition(".")
        return cls(table, tuple(str(c) for c in columns), bool(unique), schema or written_schema or "public")


@dataclass(frozen=True)
class IgnoreEntry:
    """Leave one finding out of the problems: `name` is an index, table or constraint name."""

    name: str
    reason: str
    check: str | None = None  # None: every check
    schema: str | None = None

    def matches(self, check: str, schema: str, names: tuple[str, ...]) -> bool:
        if self.check is not None and self.check != check:
            return False
        if self.schema is not None and self.schema != schema:
            return False
        return self.name in names


@dataclass
class IndexSettings:
    expected: list[ExpectedIndex] = field(default_factory=list)
    window_days: int = 30
    ignore: list[IgnoreEntry] = field(default_factory=list)
    # A table is "read mostly by sequential scans while large" when it has at least
    # seq_scan_min_rows live rows, at least seq_scan_min_count sequential scans, and
    # sequential scans are at least seq_scan_min_share of all its scans.
    seq_scan_min_rows: int = 10_000
    seq_scan_min_count: int = 100
    seq_scan_min_share: float = 0.5
    slow_query_count: int = 20
    # The digest calls a slow query a regression when its mean time grew by this
    # factor and by at least this many milliseconds since the previous digest.
    slow_query_regression_factor: float = 1.5
    slow_query_regression_min_ms: float = 5.0
    exclude_schemas: list[str] = field(default_factory=lambda: ["dbops"])

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "IndexSettings":
        d = dict(d or {})
        known = {"expected", "window_days", "ignore", "seq_scan_min_rows", "seq_scan_min_count",
                 "seq_scan_min_share", "slow_query_count", "slow_query_regression_factor",
                 "slow_query_regression_min_ms", "exclude_schemas", "schema"}
        config_values.no_unknown(d, "indexes", known)
        default_schema = _text(d, "schema", "public", "indexes.schema")
        settings = cls(
            window_days=config_values.whole(d, "indexes", "window_days", 30, 1),
            seq_scan_min_rows=config_values.whole(d, "indexes", "seq_scan_min_rows", 10_000, 0),
            seq_scan_min_count=config_values.whole(d, "indexes", "seq_scan_min_count", 100, 0),
            seq_scan_min_share=_share(d, "seq_scan_min_share", 0.5),
            slow_query_count=config_values.whole(d, "indexes", "slow_query_count", 20, 1),
            slow_query_regression_factor=config_values.number(d, "indexes", "slow_query_regression_factor", 1.5, 1.0),
            slow_query_regression_min_ms=config_values.number(d, "indexes", "slow_query_regression_min_ms", 5.0, 0.0),
        )
        schemas = d.get("exclude_schemas", ["dbops"])
        if not isinstance(schemas, list) or not all(isinstance(s, str) and s for s in schemas):
            raise ConfigError("indexes.exclude_schemas must be a list of schema names")
        settings.exclude_schemas = list(schemas)
        settings.expected = _expected(d.get("expected", []), default_schema)
        settings.ignore = _ignore(d.get("ignore", []))
        return settings


def _expected(raw: Any, default_schema: str) -> list[ExpectedIndex]:
    if not isinstance(raw, list):
        raise ConfigError("indexes.expected must be an array of tables: [[indexes.expected]] entries")
    found: list[ExpectedIndex] = []
    for n, entry in enumerate(raw):
        where = f"indexes.expected[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table with `table` and `columns`")
        unknown = sorted(set(entry) - {"table", "columns", "unique", "schema", "purpose"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]} is not a known key (table, columns, unique, schema, purpose)")
        table = _text(entry, "table", None, f"{where}.table")
        columns = entry.get("columns")
        if isinstance(columns, str):
            raise ConfigError(f"{where}.columns must be a list, e.g. [\"{columns}\"]: one list is one index")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
            raise ConfigError(f"{where}.columns must be a non-empty list of column names")
        if len(set(columns)) != len(columns):
            raise ConfigError(f"{where}.columns names a column twice")
        unique = entry.get("unique", False)
        if not isinstance(unique, bool):
            raise ConfigError(f"{where}.unique must be true or false")
        found.append(ExpectedIndex(
            table=table, columns=tuple(columns), unique=unique,
            schema=_text(entry, "schema", default_schema, f"{where}.schema"),
            purpose=_text(entry, "purpose", "", f"{where}.purpose", allow_empty=True),
        ))
    keys = [(e.schema, e.table, e.columns) for e in found]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"indexes.expected lists {key[1]}({', '.join(key[2])}) twice")
    return found


def _ignore(raw: Any) -> list[IgnoreEntry]:
    if not isinstance(raw, list):
        raise ConfigError("indexes.ignore must be an array of tables: [[indexes.ignore]] entries")
    found = []
    for n, entry in enumerate(raw):
        where = f"indexes.ignore[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table with `name` and `reason`")
        unknown = sorted(set(entry) - {"name", "reason", "check", "schema"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]} is not a known key (name, reason, check, schema)")
        name = _text(entry, "name", None, f"{where}.name")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where}.reason is required: say why `{name}` is ignored")
        check = entry.get("check")
        if check is not None and check not in CHECKS:
            raise ConfigError(f"{where}.check must be one of {', '.join(CHECKS)}")
        schema = entry.get("schema")
        if schema is not None and (not isinstance(schema, str) or not schema):
            raise ConfigError(f"{where}.schema must be a schema name")
        found.append(IgnoreEntry(name=name, reason=reason.strip(), check=check, schema=schema))
    return found


def _text(d: dict, key: str, default: str | None, where: str, allow_empty: bool = False) -> str:
    value = d.get(key, default)
    if value is None:
        raise ConfigError(f"{where} is required")
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _share(d: dict, key: str, default: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"indexes.{key} must be a number above 0 and at most 1")
    return float(value)
