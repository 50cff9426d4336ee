"""The result of checking one migration: findings, and whether a person must approve it."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from handlers import fmt
from handlers.report import Outcome, Report, Section, Table


class Severity(str, enum.Enum):
    FORBIDDEN = "forbidden"  # needs an approver: a breaking change wants expand/contract
    WARNING = "warning"
    INFO = "info"


_ORDER = {Severity.FORBIDDEN: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    line: int  # 1-based line where the statement starts (0 for findings about the whole file)
    statement: str  # the statement's source text ("" for findings about the whole file)
    message: str
    hint: str
    migration: str = ""  # the EF Core migration whose guard block holds the statement (efcore.py)

    def to_json(self) -> dict[str, Any]:
        found = {
            "code": self.code,
            "severity": self.severity.value,
            "line": self.line,
            "statement": self.statement,
            "message": self.message,
            "hint": self.hint,
        }
        return found | ({"migration": self.migration} if self.migration else {})


@dataclass
class MigrationCheck:
    """What `dbops migrate check UP.sql` found. `add_finding` lets later steps (the rehearsal that
    checks DOWN restores the schema) add their own findings to the same result."""

    filename: str
    sha256: str  # of the UP SQL text, so an approval can be tied to exactly this file
    statement_count: int
    findings: list[Finding] = field(default_factory=list)
    # The planner's estimate of the rows each DELETE/UPDATE touches in the target (facts.estimate_rows);
    # None when checked without a database.
    estimates: list[dict] | None = None
    added: list[Finding] = field(default_factory=list)  # by later steps: `migrate check` alone cannot find them

    def add_finding(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.added.append(finding)
        self.findings.sort(key=lambda f: f.line)  # stable: keeps rule order within a line

    @property
    def requires_approval(self) -> bool:
        return any(f.severity is Severity.FORBIDDEN for f in self.findings)

    @property
    def outcome(self) -> Outcome:
        return Outcome.APPROVAL_REQUIRED if self.requires_approval else Outcome.OK

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def to_json(self) -> dict[str, Any]:
        return {
            "requires_approval": self.requires_approval,
            "findings": [f.to_json() for f in self.findings],
        }

    def to_report(self, title: str | None = None) -> Report:
        forbidden, warnings, infos = (self.count(s) for s in Severity)
        verdict = "needs manual approval" if self.requires_approval else "no forbidden operation"
        later = [f.code for f in self.added if f.severity is Severity.FORBIDDEN]
        # Why `migrate request` may count more than `migrate check` for the same file: the rehearsal's own.
        why = f" ({len(later)} from the rehearsal: {', '.join(later)})" if later else ""
        summary = (
            f"{self.filename}: {fmt.plural(self.statement_count, 'statement')}, {forbidden} forbidden{why}, "
            f"{fmt.plural(warnings, 'warning')}, {infos} info: {verdict}."
        )
        sections = []
        titles = {
            Severity.FORBIDDEN: "Forbidden without manual approval",
            Severity.WARNING: "Warnings",
            Severity.INFO: "Info",
        }
        for severity in Severity:
            found = [f.to_json() for f in self.findings if f.severity is severity]
            if found:
                sections.append(Section(titles[severity], findings=found, problem=severity is not Severity.INFO))
        if self.estimates:
            sections.append(Section("Rows in the target (the planner's estimate: EXPLAIN, not run)", table=Table(
                ["line", "statement", "rows"],
                [[e["line"], f"{e['kind']} {e['relation']}",
                  "not estimated" if e["rows"] is None else f"~{e['rows']:,}"] for e in self.estimates])))
        facts = [("SHA-256", self.sha256)]  # the counts and the verdict are the summary's own words
        return Report(
            title=title or f"Migration check: {self.filename}",
            summary=summary,
            outcome=self.outcome,
            sections=sections,
            facts=facts,
            findings=[f.to_json() for f in self.findings],
            data={**self.to_json(), "file": self.filename, "sha256": self.sha256,
                  **({"estimates": self.estimates} if self.estimates is not None else {})},
        )
