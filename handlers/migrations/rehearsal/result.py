"""What a rehearsal found: the checklist lines, findings and report sections (channel-safe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handlers import fmt
from handlers.postgres.versions import majors_line
from handlers.report import Outcome, Report, Section, Table

from ..model import Finding, Severity
from ..nodes import quote_ident as quote

REHEARSAL_PURPOSE = "rehearsal"
WORK_PURPOSE = "rehearsal-work"  # the folder holding the fetched archive (see rehearsal_work_dir)
REHEARSAL_DB = "rehearsal"
APP_ROLE = "app_owner"  # the role UP and DOWN run as
PREVIEW = 200
PRIVATE_TEXT_LIMIT = 300
UNMARKED_WORK_MIN_AGE_S = 3600  # work folders of an older dbops carry no marker: removed when this stale

# pg_locks mode -> the name in LOCK TABLE / the docs, and what it blocks for the application.
LOCK_NAMES = {
    "AccessShareLock": "ACCESS SHARE", "RowShareLock": "ROW SHARE", "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE", "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}
BLOCKS_READS_AND_WRITES = ("AccessExclusiveLock",)
BLOCKS_WRITES = ("ExclusiveLock", "ShareRowExclusiveLock", "ShareLock")  # strongest first


# -- the result ------------------------------------------------------------------------------

@dataclass
class Rehearsal:
    source: str  # "backup" (data restored) | "schema" (schema only)
    backup_id: str | None = None
    backup_age_s: float | None = None
    schema_target: str | None = None  # the target whose schema was copied (source "schema" from a target)
    up_statements: list[dict] = field(default_factory=list)  # [{line, statement, seconds, locks, outside_transaction}]
    down_statements: list[dict] = field(default_factory=list)
    # Channel-safe: "line 7: SQLSTATE 42501 (insufficient_privilege)", never the server's message.
    up_error: str | None = None
    up_error_line: int | None = None
    up_error_statement: str | None = None
    up_error_sqlstate: str | None = None
    up_error_condition: str | None = None
    up_error_text: str | None = None  # the server's message, scrubbed, <= 300 chars: for the requester only
    down_given: bool = False
    down_error: str | None = None
    down_error_line: int | None = None
    down_error_sqlstate: str | None = None
    down_error_condition: str | None = None
    down_error_text: str | None = None  # as up_error_text
    schema_diff: list[str] = field(default_factory=list)
    data_diff: list[str] = field(default_factory=list)
    checked_columns: list[str] = field(default_factory=list)  # columns whose data was checksummed
    downtime: list[dict] = field(default_factory=list)  # [{relation, mode, seconds, blocks}]
    # DELETE/UPDATE statements of UP that touched every row of their table in the copy:
    # [{line, kind, relation, rows}]. `WHERE "Id" > 0` is a DELETE without WHERE in effect.
    every_row: list[dict] = field(default_factory=list)
    # DELETE/UPDATE statements of UP selecting rows by a key or time range past the copy's largest value
    # (reach.py): [{line, kind, relation, column}].
    beyond_copy: list[dict] = field(default_factory=list)
    restore_problems: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # the rehearsal's own limit UP or DOWN passed (limits.py), also their error
    restore_s: float = 0.0
    up_s: float = 0.0
    down_s: float = 0.0
    total_s: float = 0.0
    source_name: str = ""  # the database the migration is for, and its PostgreSQL now ("16.4")
    source_version: str = ""
    copy_version: str = ""  # the PostgreSQL the copy ran ("16.15")
    notes: list[str] = field(default_factory=list)  # what was done with the files' own BEGIN/COMMIT
    touched_tables: list[str] = field(default_factory=list)  # "schema.table" UP or DOWN locked to change
    unmeasured_tables: list[str] = field(default_factory=list)  # of those, too large to compare: '"public"."Notes"'

    # -- verdicts --------------------------------------------------------------
    @property
    def rollback_tested(self) -> bool:
        return self.up_error is None and self.down_given

    @property
    def reversible(self) -> bool | None:
        """True when DOWN brought schema and data back; None when that was not tested."""
        if not self.rollback_tested:
            return None
        return self.down_error is None and not self.schema_diff and not self.data_diff

    def _copy_of(self) -> str:
        if self.source == "backup":
            what = f"backup {self.backup_id}" if self.backup_id else "a backup archive"
            age = f" ({fmt.duration(self.backup_age_s)} old)" if self.backup_age_s is not None else ""
            return f"a copy of {what}{age}"
        if self.schema_target:
            return f"a schema-only copy of `{self.schema_target}` (no data)"
        what = f"backup {self.backup_id}" if self.backup_id else "a backup archive"
        return f"a schema-only copy of {what} (no data)"

    def private_error_text(self) -> str | None:
        """The failing statement's message, for the requester only (an ephemeral message): it can
        quote rows of the production copy. None when nothing failed."""
        parts = []
        if self.up_error and self.up_error_text:
            parts.append(f"UP {self.up_error}: {self.up_error_text}")
        if self.down_error and self.down_error_text:
            parts.append(f"DOWN {self.down_error}: {self.down_error_text}")
        return "\n".join(parts) or None

    def checklist_lines(self) -> list[str]:
        majors = ("" if not self.copy_version else f"; copy on PostgreSQL {self.copy_version}"
                  if not self.source_version
                  else f"; {majors_line(self.source_name or 'target', self.source_version, self.copy_version)}")
        lines = [f"rehearsed on {self._copy_of()}{majors}"]
        if self.restore_problems:
            lines.append(f"the copy was restored with {fmt.plural(len(self.restore_problems), 'problem')}: "
                         f"{self.restore_problems[0]}")
        if self.up_error:
            lines.append(f"UP failed in rehearsal at {self.up_error}")
            lines.append("rollback not tested: UP failed")
            return lines
        count = len(self.up_statements)
        lines.append(f"UP applied in rehearsal: {fmt.plural(count, 'statement')} in {fmt.duration(self.up_s)}")
        if not self.down_given:
            lines.append("rollback not tested: no DOWN migration")
        elif self.down_error:
            lines.append(f"rollback tested: DOWN failed at {self.down_error}")
        elif self.schema_diff:
            lines.append(f"rollback tested: DOWN does not bring the schema back: {differences(self.schema_diff)}")
        elif self.data_diff:
            lines.append(f"rollback tested: schema identical, but DOWN does not bring the data back: "
                         f"{differences(self.data_diff)}")
        else:
            lines.append(f"rollback tested: schema identical{self._data_identical()}")
        caveat = " on a copy without data: expect longer in production" if self.source == "schema" else ""
        if self.downtime:
            for d in self.downtime:
                about = "" if d["seconds"] < 0.1 else "about "
                lines.append(f"downtime estimate: {d['mode']} on {d['relation']} for "
                             f"{about}{fmt.duration(d['seconds'])} (blocks {d['blocks']}){caveat}")
        else:
            lines.append(f"downtime estimate: no lock that blocks reads or writes is held (UP took "
                         f"{fmt.duration(self.up_s)}){caveat}")
        return lines

    def _data_identical(self) -> str:
        """What of the data was found the same after DOWN, and what could not be compared."""
        if self.source != "backup":
            return ""
        compared = len(self.touched_tables) - len(self.unmeasured_tables)
        said = [f"data of {fmt.plural(len(self.checked_columns), 'changed column')} identical"] \
            if self.checked_columns else []
        said += [f"rows of {fmt.plural(compared, 'table')} UP and DOWN wrote to identical"] if compared else []
        data = "".join(f", {part}" for part in said)
        if self.unmeasured_tables:
            data += (f"; the data of {some(self.unmeasured_tables)} was not compared "
                     "(too large to measure whole)")
        return data

    def findings(self) -> list[Finding]:
        found = []
        for hit in self.every_row:
            verb = "deletes" if hit["kind"] == "DELETE" else "updates"
            found.append(Finding(
                code="delete-without-where" if hit["kind"] == "DELETE" else "update-without-where",
                severity=Severity.FORBIDDEN, line=hit["line"], statement="",
                message=f"{hit['kind']} {verb} every row of {hit['relation']} in the rehearsal copy "
                        f"({hit['rows']:,} of {hit['rows']:,}): in effect it has no WHERE",
                hint="If that is meant, say so with an approver; otherwise narrow the WHERE clause."))
        for hit in self.beyond_copy:
            found.append(Finding(
                code="beyond-the-copy", severity=Severity.FORBIDDEN, line=hit["line"], statement="",
                message=f"{hit['kind']} selects rows of {hit['relation']} by a range of {quote(hit['column'])} "
                        f"reaching past the largest value {self._copy_of()} holds: rows production wrote since "
                        "are not in the copy, so the rehearsal cannot show what it does",
                hint="Bound the range by values the backup holds (an upper bound on the key or time), take a "
                     "fresh backup first, or have an approver accept it."))
        if self.up_error and self.stopped_by == self.up_error:
            found.append(Finding(
                code="rehearsal-failed", severity=Severity.FORBIDDEN, line=0, statement="",
                message=f"the rehearsal of UP on {self._copy_of()} stopped at {self.stopped_by}: it was not tried "
                        "to the end",
                hint="Split the migration, or raise the limit in [migrate.rehearsal] if the work is meant."))
        elif self.up_error:
            found.append(Finding(
                code="rehearsal-failed", severity=Severity.FORBIDDEN, line=self.up_error_line or 0,
                statement=self.up_error_statement or "",
                message=f"UP fails on {self._copy_of()} at {self.up_error}: it would fail in production too",
                hint="Fix the statement (or the rows it trips over, in an earlier migration) and request again."))
        elif self.down_given:
            problem = None
            if self.down_error:
                problem = f"DOWN fails in the rehearsal at {self.down_error}"
            elif self.schema_diff:
                problem = f"DOWN does not bring the schema back: {differences(self.schema_diff)}"
            elif self.data_diff:
                problem = f"DOWN brings the schema back but not the data: {differences(self.data_diff)}"
            if problem:
                found.append(Finding(
                    code="irreversible", severity=Severity.FORBIDDEN, line=0, statement="",
                    message=f"{problem}; the migration cannot be rolled back as it stands",
                    hint="Make DOWN undo every UP statement (in reverse order); for lossy changes keep the old data "
                         "(expand/contract: a new column, backfill, switch, drop later)."))
        return found

    def to_sections(self) -> list[Section]:
        sections = [Section("Rehearsal", text="\n".join(f"• {line}" for line in self.checklist_lines()))]
        for title, rows in (("UP in rehearsal", self.up_statements), ("DOWN in rehearsal", self.down_statements)):
            if rows:
                sections.append(Section(title, table=Table(  # the statement last: it wraps under itself
                    ["line", "seconds", "locks held to commit", "statement"],
                    [[r["line"], r["seconds"], lock_text(r), preview(r["statement"], 160)] for r in rows])))
        if self.downtime:
            sections.append(Section("Downtime estimate (locks held to commit)", table=Table(
                ["relation", "lock", "seconds", "blocks"],
                [[d["relation"], d["mode"], d["seconds"], d["blocks"]] for d in self.downtime])))
        if self.schema_diff:
            sections.append(Section("Rollback: schema differences after DOWN",
                                    text="\n".join(f"• {d}" for d in self.schema_diff)))
        if self.data_diff:
            sections.append(Section("Rollback: data differences after DOWN",
                                    text="\n".join(f"• {d}" for d in self.data_diff)))
        if self.notes:
            sections.append(Section("Notes", text="\n".join(f"• {n}" for n in self.notes)))
        if self.restore_problems:
            sections.append(Section("Restoring the copy", text="\n".join(f"• {p}" for p in self.restore_problems)))
        return sections

    def to_report(self) -> Report:
        findings = self.findings()
        verdict = "; ".join(f.message for f in findings) if findings else "; ".join(self.checklist_lines()[1:3])
        return Report(title="Migration rehearsal", summary=f"Rehearsed on {self._copy_of()}: {verdict}.",
                      outcome=Outcome.APPROVAL_REQUIRED if findings else Outcome.OK,
                      sections=self.to_sections(), findings=[f.to_json() for f in findings],
                      data={"rehearsal": self.to_dict(), "findings": [f.to_json() for f in findings]})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Rehearsal":
        """Back from `to_dict()` (e.g. from the approval request's payload)."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Everything but the private error texts: this goes into reports, job records and approvals."""
        return {
            "source": self.source, "backup_id": self.backup_id,
            "backup_age_s": None if self.backup_age_s is None else round(self.backup_age_s, 1),
            "schema_target": self.schema_target,
            "up_statements": [dict(r) for r in self.up_statements],
            "down_statements": [dict(r) for r in self.down_statements],
            "up_error": self.up_error, "up_error_line": self.up_error_line, "down_given": self.down_given,
            "up_error_sqlstate": self.up_error_sqlstate, "up_error_condition": self.up_error_condition,
            "down_error": self.down_error, "down_error_line": self.down_error_line,
            "down_error_sqlstate": self.down_error_sqlstate, "down_error_condition": self.down_error_condition,
            "schema_diff": list(self.schema_diff), "data_diff": list(self.data_diff),
            "checked_columns": list(self.checked_columns), "downtime": [dict(d) for d in self.downtime],
            "every_row": [dict(e) for e in self.every_row], "beyond_copy": [dict(e) for e in self.beyond_copy],
            "up_error_statement": self.up_error_statement,
            "restore_problems": list(self.restore_problems), "stopped_by": self.stopped_by,
            "restore_s": round(self.restore_s, 3),
            "up_s": round(self.up_s, 3), "down_s": round(self.down_s, 3), "total_s": round(self.total_s, 3),
            "reversible": self.reversible, "checklist": self.checklist_lines(),
            "source_name": self.source_name, "source_version": self.source_version, "copy_version": self.copy_version,
            "notes": list(self.notes), "touched_tables": list(self.touched_tables),
            "unmeasured_tables": list(self.unmeasured_tables),
        }


def lock_text(row: dict) -> str:
    if row.get("outside_transaction"):
        return "none (ran alone)"  # autocommit: its locks end with the statement
    return ", ".join(f"{LOCK_NAMES.get(lock['mode'], lock['mode'])} on {lock['relation']}"
                     for lock in row["locks"]) or "-"


def differences(diffs: list[str], limit: int = 3) -> str:
    """"2 differences (column "public"."Notes"."IsPinned"; ...)": what differs, counted and named; how it
    differs (checksums, definitions) is said once, in the report's Rollback section."""
    named = [d.split(": ", 1)[0] for d in diffs]
    return f"{fmt.plural(len(diffs), 'difference')} ({some(named, limit)}), listed under Rollback"


def some(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(text: str, limit: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
