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

from .. import config_values as cv
from ..errors import ConfigError
from .advice.settings import ADVICE, AdviceSettings

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


def _columns(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raise ValueError(f"must be a list, e.g. [\"{raw}\"]: one list is one index")
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) and c for c in raw):
        raise ValueError("must be a non-empty list of column names")
    if len(set(raw)) != len(raw):
        raise ValueError("names a column twice")
    return tuple(raw)


EXPECTED_FIELDS = (
    cv.nonempty("table", None, "exact, case-sensitive (EF Core quotes names)", required=True),
    cv.custom("columns", None, _columns, "a non-empty list of column names", "one composite index, columns in order",
              required=True),
    cv.flag("unique", False, "the index must be unique"),
    cv.nonempty("schema", None, "default: indexes.schema", allowed="a schema name"),
    cv.text("purpose", "", "why the application needs it (shown when it is missing)"),
)
IGNORE_FIELDS = (
    cv.nonempty("name", None, "an index, table or constraint name", required=True),
    cv.choice("check", None, CHECKS, "optional: only this check; default every check"),
    cv.nonempty("schema", None, "optional: only in this schema", allowed="a schema name"),
    cv.nonempty("reason", None, "required: say why it is ignored", required=True),
)


def _expected(entries: list[dict], where: str) -> list[dict]:
    return entries  # built once indexes.schema, their default schema, is known


def _ignore(entries: list[dict], where: str) -> list[IgnoreEntry]:
    return [IgnoreEntry(name=e["name"], reason=e["reason"].strip(), check=e.get("check"), schema=e.get("schema"))
            for e in entries]


INDEXES = (
    cv.whole("window_days", 30, "unused = no scans over this many days (from daily snapshots)", low=1),
    cv.nonempty("schema", "public", "the schema of an expected index that names none", allowed="a schema name"),
    cv.names("exclude_schemas", ["dbops"], "schemas the review leaves out"),
    cv.whole("seq_scan_min_rows", 10_000,
             "\"large table read mostly by sequential scans\": this many live rows, and the two below"),
    cv.whole("seq_scan_min_count", 100, "... at least this many sequential scans"),
    cv.number("seq_scan_min_share", 0.5, "... and this share of all its scans", low=0, above=True, high=1),
    cv.whole("slow_query_count", 20, "slow queries listed by the review", low=1),
    cv.number("slow_query_regression_factor", 1.5, "digest: a query's mean time grew by this factor ...", low=1),
    cv.number("slow_query_regression_min_ms", 5.0, "... and by at least this many milliseconds"),
    cv.entries("expected", EXPECTED_FIELDS, "an index the application needs; one entry per index", _expected,
               example=[{"table": "ExternalLogins", "columns": ["Provider", "ProviderUserId"], "unique": True,
                         "purpose": "OAuth lookup"}]),
    cv.entries("ignore", IGNORE_FIELDS, "leave one finding out of the problems", _ignore,
               example=[{"name": "IX_AuditLogs_ActionType", "check": "unused",
                         "reason": "used by the yearly compliance export only"}]),
    cv.table("advice", ADVICE, "`indexes suggest`: missing indexes proven on a copy", lambda d: AdviceSettings(**d)),
)


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
    advice: AdviceSettings = field(default_factory=AdviceSettings)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "IndexSettings":
        found = cv.read("indexes", INDEXES, d)
        default_schema = found.pop("schema")
        expected = [ExpectedIndex(table=e["table"], columns=e["columns"], unique=e["unique"],
                                  schema=e.get("schema", default_schema), purpose=e["purpose"])
                    for e in found.pop("expected")]
        keys = [(e.schema, e.table, e.columns) for e in expected]
        for key in keys:
            if keys.count(key) > 1:
                raise ConfigError(f"indexes.expected lists {key[1]}({', '.join(key[2])}) twice")
        return cls(expected=expected, **found)


DIGEST = (
    cv.custom("time", "09:00", cv.time_of_day, cv.TIME_OF_DAY,
              "daily, posted once to DBOPS_CHANNEL; \"off\" to stop it"),
    cv.custom("timezone", "UTC", cv.time_zone, cv.TIME_ZONE, "of the digest's time"),
)
