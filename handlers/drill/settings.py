"""The `[drill]` section of dbops.toml: where a drill restores, what it checks, how often it runs."""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pglast

from .. import config_values
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
        d = dict(d or {})
        known = {"instance", "scratch_url_env", "jobs", "smoke_queries", "max_age_days", "schedule", "work_dir",
                 "amcheck", "amcheck_heapallindexed", "smoke_timeout_s", "stale_scratch_hours"}
        config_values.no_unknown(d, "drill", known)
        s = cls()
        if "instance" in d:
            if d["instance"] not in INSTANCE_KINDS:
                raise ConfigError(f"drill.instance must be one of {', '.join(INSTANCE_KINDS)}, not {d['instance']!r}")
            s.instance = d["instance"]
        if "scratch_url_env" in d:
            if not isinstance(d["scratch_url_env"], str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                                             d["scratch_url_env"]):
                raise ConfigError("drill.scratch_url_env must be the name of an environment variable, "
                                  "e.g. DBOPS_DRILL_URL (the URL itself never goes into dbops.toml)")
            s.scratch_url_env = d["scratch_url_env"]
        for key in ("jobs", "max_age_days", "smoke_timeout_s", "stale_scratch_hours"):
            setattr(s, key, config_values.whole(d, "drill", key, getattr(s, key), 1))
        s.amcheck = config_values.flag(d, "drill", "amcheck", s.amcheck)
        s.amcheck_heapallindexed = config_values.flag(d, "drill", "amcheck_heapallindexed", s.amcheck_heapallindexed)
        if "schedule" in d:
            try:
                s.schedule = DrillSchedule.parse(d["schedule"])
            except ValueError as exc:
                raise ConfigError(f"drill.schedule: {exc}") from None
        if "work_dir" in d:
            if not isinstance(d["work_dir"], str) or not d["work_dir"]:
                raise ConfigError("drill.work_dir must be a folder path, e.g. \"/var/tmp/dbops\"")
            s.work_dir = Path(d["work_dir"]).expanduser()
        if "smoke_queries" in d:
            s.smoke_queries = _smoke_queries(d["smoke_queries"])
        return s


def _smoke_queries(raw: Any) -> list[SmokeQuery]:
    if not isinstance(raw, list):
        raise ConfigError("drill.smoke_queries must be a list of tables: [[drill.smoke_queries]] name, sql, expect")
    queries, names = [], set()
    for i, item in enumerate(raw):
        where = f"drill.smoke_queries[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table with name, sql and expect")
        unknown = set(item) - {"name", "sql", "expect"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]} is not a smoke query setting (name, sql, expect)")
        name, text, expect = item.get("name"), item.get("sql"), item.get("expect", "rows>=1")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}.name must be a short description, e.g. \"a user can be found by email\"")
        if name in names:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        names.add(name)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}.sql must be one SELECT statement")
        _check_one_select(text, f"{where}.sql")
        if isinstance(expect, bool):
            expect = "true" if expect else "false"
        if not isinstance(expect, (str, int, float)):
            raise ConfigError(f"{where}.expect must be a row condition like \"rows>=1\" or the exact first value")
        expect = str(expect)
        if expect.strip().lower().startswith("rows") and not _ROWS_EXPECT.match(expect.strip()):
            raise ConfigError(f"{where}.expect {expect!r} is not a row condition; write e.g. \"rows>=1\" or \"rows=0\"")
        queries.append(SmokeQuery(name.strip(), text.strip(), expect.strip()))
    return queries


def _check_one_select(text: str, where: str) -> None:
    """A smoke query reads: one SELECT (or VALUES/WITH ... SELECT), checked by PostgreSQL's own parser."""
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ConfigError(f"{where} does not parse: {exc}") from None
    if len(statements) != 1:
        raise ConfigError(f"{where} must be exactly one statement, found {len(statements)}")
    node = statements[0].stmt
    if type(node).__name__ != "SelectStmt" or getattr(node, "intoClause", None) is not None:
        raise ConfigError(f"{where} must be a SELECT (it runs read-only on the restored copy), "
                          f"not {type(node).__name__.removesuffix('Stmt').upper()}")
