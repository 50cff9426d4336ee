"""What a copy is verified against: the plan (plan.py) asks its reference for the copy's inventory,
the table-data check and the source's schema, so that every kind of copy runs the same plan.

- AgainstManifest: a backup's manifest (drills, `restore`): the copy holds exactly its rows.
- AgainstInventory: an inventory of another moment (production now, for the Render drills; the bot's
  backup nearest before the moment, for a point-in-time restore): the schema must match, row counts
  differ by design and are shown, never failed.
- AgainstArchive: an archive made elsewhere (`restore --from-file`): no manifest, so the tables it
  holds data for must be there; the schema has nothing to be compared with.
- NoReference: nothing to compare with (a point-in-time restore with no backup before its moment):
  the copy's soundness only.

A check a reference cannot make is recorded as not run, with why: the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .. import fmt
from ..drill import checks as C
from ..postgres import toc_entry
from ..report import Check, Verdict

SOURCE_LEVEL = "counts"  # checksums of production would read every row of it; counts are enough there


def capture_source(source: Any) -> dict[str, Any]:
    """Production's row counts and schema inventory now, in one read-only snapshot (`source`: a Target)."""
    with source.connect(autocommit=True) as conn:
        return C.capture_restored(conn, SOURCE_LEVEL)


@dataclass
class AgainstManifest:
    """A backup's manifest: the copy holds exactly its rows (and, at level "checksums", their content)."""

    manifest: dict[str, Any]
    no_schema = ""  # why the schema cannot be compared ("": it can)

    @property
    def source(self) -> dict[str, Any]:
        return self.manifest

    @property
    def source_name(self) -> str:
        return str(self.manifest.get("target", "?"))

    @property
    def source_version(self) -> str | int | None:
        return self.manifest.get("server_version") or self.manifest.get("server_version_num")

    @property
    def level(self) -> str:
        return self.manifest.get("integrity_level") or "counts"

    @property
    def against(self) -> str:
        return f"against the backup's manifest (integrity level {self.level})"

    @property
    def table_words(self) -> str:
        return f"row counts{' and checksums' if self.level == 'checksums' else ''} of every table"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, self.level, C.checksum_method(self.manifest))

    def table_data(self, copy: dict[str, Any]) -> Check:
        return C.table_data_check(self.manifest, copy)


@dataclass
class AgainstInventory:
    """An inventory of another moment than the copy's (`what`: "production now", "backup b042"): the same
    schema, and row counts that differ by design (shown, never failed)."""

    inventory: dict[str, Any]
    source_name: str
    source_version: str | int | None = None
    what: str = "production now"
    no_schema = ""

    def __post_init__(self) -> None:
        self.source_version = self.source_version or self.inventory.get("server_version_num")

    @property
    def source(self) -> dict[str, Any]:
        return self.inventory

    @property
    def against(self) -> str:
        return f"against {self.what}"

    @property
    def table_words(self) -> str:
        return f"row counts per table against {self.what} (shown as differences)"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, SOURCE_LEVEL)

    def table_data(self, copy: dict[str, Any]) -> Check:
        return row_differences_check(self.inventory, copy, self.what)


@dataclass
class AgainstArchive:
    """An archive dbops did not make: the tables it holds data for (its table of contents' TABLE DATA
    lines) are in the copy; nothing says how many rows they should hold."""

    table_data_lines: list[str]
    label: str
    source_version: str | int | None = None  # the PostgreSQL it was dumped from, as the archive says
    source = None
    no_schema = "the archive has no manifest: nothing says what schema it should make"
    rows: int | None = None  # in the tables found, once checked

    @property
    def source_name(self) -> str:
        return self.label

    @property
    def against(self) -> str:
        return "against the archive's table of contents"

    table_words = "that every table the archive holds data for is there"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, SOURCE_LEVEL)

    def table_data(self, copy: dict[str, Any]) -> Check:
        self.rows = sum(int(t.get("rows", 0)) for t in copy.get("tables", []))
        return archive_tables_check(self.table_data_lines, copy.get("tables", []))


@dataclass
class NoReference:
    """Nothing to compare the copy with (`why` says so): its soundness only."""

    why: str
    source_name: str
    source_version: str | int | None = None
    source = None
    table_words = None  # nothing to say: not checked

    @property
    def no_schema(self) -> str:
        return self.why

    against = "for soundness only (nothing to compare it with)"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, SOURCE_LEVEL)

    def table_data(self, copy: dict[str, Any]) -> Check:
        return Check("table data", Verdict.NOT_RUN, f"not run: {self.why}")


Reference = AgainstManifest | AgainstInventory | AgainstArchive | NoReference


def row_differences_check(source: dict, copy: dict, against: str = "production now") -> Check:
    """Row counts of the copy against `against` (production now, or a backup: a copy is of another
    moment, so differences are shown, never failures)."""
    prod = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in source.get("tables", [])}
    restored = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in copy.get("tables", [])}
    diffs = [f"{name}: {restored[name]:,} in the copy, {prod[name]:,} in {against} "
             f"({restored[name] - prod[name]:+,})" for name in sorted(prod.keys() & restored.keys())
             if prod[name] != restored[name]]
    name = f"row counts of {len(prod)} tables against {against}"
    total = sum(restored.values())
    if not diffs:
        return Check(name, Verdict.OK, f"{total:,} rows, every table as in {against}")
    return Check(name, Verdict.OK, f"{total:,} rows; differences, expected since the copy is of another moment "
                                   f"(not failures): {C.listed(diffs)}")


def archive_tables_check(table_data_lines: list[str], restored: list[dict]) -> Check:
    """Every table the archive holds data for is in the restored database (names matched on the
    table-of-contents line as pg_restore prints it: `TABLE DATA schema name owner`)."""
    entries = [toc_entry(line) for line in table_data_lines]
    have = [f"TABLE DATA {t['schema']} {t['name']} " for t in restored]
    missing = [e.split(" ", 2)[2].rsplit(" ", 1)[0] for e in entries if not any((e + " ").startswith(h) for h in have)]
    name = f"the archive's {fmt.plural(len(entries), 'table')} restored"
    if missing:
        return Check(name, Verdict.FAILED, f"missing after the restore: {C.listed(missing)}",
                     headline=f"{len(missing)} of the archive's tables missing")
    rows = sum(int(t.get("rows", 0)) for t in restored)
    return Check(name, Verdict.OK, f"every one is there, {rows:,} rows in all (no manifest to compare the counts with)")
