"""The `[drill]` section of dbops.toml: where a drill restores, what it checks, how often it runs."""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pglast

from .. import config_values as cv
from ..errors import ConfigError
from ..indexes.settings import ExpectedIndex  # noqa: F401 -- one class, also the drill's
from .schedule import DrillSchedule

INSTANCE_KINDS = ("local", "scratch", "render")
DEFAULT_SCRATCH_ENV = "DBOPS_DRILL_URL"

_ROWS_EXPECT = re.compile(r"^rows\s*(>=|<=|==|=|!=|>|<)\s*(\d+)$")


@dataclass(frozen=True)
class SmokeQuery:
    """A query the restored database must answer as the application would, e.g. find a user by email.

    `expect` is either a row-count condition ("rows>=1", "rows=0") or the exact value of the first
    column of the first row (compared as text, so 42, "42" and true/"t" all work as written).
    """

    name: str
    sql: str
    expect: str = "rows>=1"

    @property
    def row_condition(self) -> tuple[str, int] | None:
        match = _ROWS_EXPECT.match(self.expect.strip())
        if not match:
            return None
        op = "=" if match.group(1) == "==" else match.group(1)
        return op, int(match.group(2))

    def judge(self, rows: list[tuple]) -> tuple[bool, str]:
        condition = self.row_condition
        if condition is not None:
            op, n = condition
            count = len(rows)
            ok = {"=": count == n, "!=": count != n, ">=": count >= n, "<=": count <= n,
                  ">": count > n, "<": count < n}[op]
            return ok, f"{count} row{'s' if count != 1 else ''} (expected rows {op} {n})"
        if not rows:
            return False, f"no rows (expected {self.expect!r})"
        got = _as_text(rows[0][0])
        want = self.expect.strip()
        ok = got == want or (got in ("true", "false") and want.lower() in (got, got[0]))
        return ok, f"returned {got!r} (expected {want!r})"


def _as_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_name(raw: Any) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
        raise ValueError("")
    return raw


def _folder(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("")
    return Path(raw).expanduser()


def _expectation(raw: Any) -> str:
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    if not isinstance(raw, (str, int, float)):
        raise ValueError("")
    expect = str(raw).strip()
    if expect.lower().startswith("rows") and not _ROWS_EXPECT.match(expect):
        raise ValueError(f"{expect!r} is not a row condition; write e.g. \"rows>=1\" or \"rows=0\"")
    return expect


def _one_select(text: Any) -> str:
    """A smoke query reads: one SELECT (or VALUES/WITH ... SELECT), checked by PostgreSQL's own parser."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be one SELECT statement")
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"does not parse: {exc}") from None
    if len(statements) != 1:
        raise ValueError(f"must be exactly one statement, found {len(statements)}")
    node = statements[0].stmt
    if type(node).__name__ != "SelectStmt" or getattr(node, "intoClause", None) is not None:
        raise ValueError("must be a SELECT (it runs read-only on the restored copy), "
                         f"not {type(node).__name__.removesuffix('Stmt').upper()}")
    return text.strip()


def _smoke_queries(entries: list[dict], where: str) -> list[SmokeQuery]:
    names: set[str] = set()
    for n, entry in enumerate(entries):
        if entry["name"] in names:
            raise ConfigError(f"{where}[{n}].name {entry['name']!r} is used twice")
        names.add(entry["name"])
    return [SmokeQuery(e["name"].strip(), e["sql"], e["expect"]) for e in entries]


SMOKE_QUERY_FIELDS = (
    cv.nonempty("name", None, "what the application needs to work", required=True,
                allowed="a short description, e.g. \"a user can be found by email\""),
    cv.custom("sql", None, _one_select, "one SELECT statement", "runs read-only on the restored copy", required=True),
    cv.custom("expect", "rows>=1", _expectation, "a row condition like \"rows>=1\" or the exact first value",
              "or rows>=1, rows=0, or the exact first value: 42, true, \"text\""),
)

DRILL = (
    cv.choice("instance", "local", INSTANCE_KINDS,
              "\"local\": a throwaway PostgreSQL of the backup's source major on a private socket; \"scratch\": a "
              "server named below"),
    cv.custom("scratch_url_env", DEFAULT_SCRATCH_ENV, _env_name,
              "the name of an environment variable, e.g. DBOPS_DRILL_URL (the URL itself never goes into dbops.toml)",
              "\"scratch\": the variable with the server's URL; a uniquely named database there, dropped after",
              commented=True, show_value=False),
    cv.whole("jobs", None, "pg_restore / pg_amcheck parallel jobs; default: the CPUs, at most 4", low=1, example=2),
    cv.whole("max_age_days", 14, "status/digest alarm when no drill passed for this long", low=1),
    cv.custom("schedule", "weekly sun 03:00", DrillSchedule.parse,
              "a schedule like \"weekly sun 03:00\", \"daily 04:00\" or \"off\"",
              "UTC; \"daily 04:00\", \"weekly mon,thu 02:30\" or \"off\""),
    cv.custom("work_dir", None, _folder, "a folder path, e.g. \"/var/tmp/dbops\"",
              "default: the system temp folder", example="/var/tmp/dbops", commented=True),
    cv.flag("amcheck", True, "pg_amcheck: every table and B-tree index"),
    cv.flag("amcheck_heapallindexed", False, "also prove each row has its index entries (slower)"),
    cv.whole("smoke_timeout_s", 60, "statement timeout of each smoke query", low=1),
    cv.whole("stale_scratch_hours", 24, "another machine's scratch database is left alone this long", low=1),
    cv.entries("smoke_queries", SMOKE_QUERY_FIELDS, "a query the restored copy must answer as the application would",
               _smoke_queries, example=[{
                   "name": "a user can be found by email",
                   "sql": 'SELECT "Id" FROM "Users" WHERE "Email" = (SELECT min("Email") FROM "Users")',
                   "expect": "rows=1"}]),
)


@dataclass
class DrillSettings:
    instance: str = "local"  # "local" | "scratch" | "render" (the Render extension point)
    scratch_url_env: str = DEFAULT_SCRATCH_ENV  # the env variable holding the scratch server's admin URL
    jobs: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    smoke_queries: list[SmokeQuery] = field(default_factory=list)
    max_age_days: int = 14
    schedule: DrillSchedule = field(default_factory=lambda: DrillSchedule.parse("weekly sun 03:00"))
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    amcheck: bool = True
    amcheck_heapallindexed: bool = False  # also prove every heap tuple has its index entries (slower)
    smoke_timeout_s: int = 60
    stale_scratch_hours: int = 24  # a scratch database of another machine is left alone this long

    @property
    def scratch_url(self) -> str | None:
        return os.environ.get(self.scratch_url_env) or None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DrillSettings":
        return cls(**cv.read("drill", DRILL, d))
