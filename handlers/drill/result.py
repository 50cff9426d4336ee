"""What a drill did and found: steps, checks, recovery point and time; as a Report, Markdown and JSON."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import fmt
from ..postgres.versions import majors_line
from ..report import Check, Outcome, Report, ReportFile, Section, Table, Verdict

STEP_NAMES = ("create instance", "restore", "verify", "delete instance")


HEADLINE_ITEMS = 3  # kinds of failure named in a summary; the count says how many more
HEADLINE_ERROR_CHARS = 400  # a step's error in the summary (a Render alarm with its link fits), the whole in Error


def check_headline(check: Check) -> str:
    """A failed check or a warning in a few words with its count ("schema differs: 31 constraints");
    a check recorded before checks had headlines: its name."""
    return check.headline or (check.name if check.ok else f"{check.name}: failed")


def headline_list(items: list[str], limit: int = HEADLINE_ITEMS) -> str:
    """"a; b; c; and 2 more": at most `limit` items, the rest counted."""
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def short_error(text: str, limit: int = HEADLINE_ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


@dataclass
class DrillResult:
    backup_id: str
    target: str
    instance_kind: str
    started_at: float
    finished_at: float = 0.0
    instance: str = ""  # secret-free description of where it restored
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, started_at, seconds, outcome, detail
    checks: list[Check] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    backup: dict[str, Any] = field(default_factory=dict)  # created_at, format, size, integrity level, tables, rows
    procedure: list[str] = field(default_factory=list)  # what was done, in order, in words
    restore_errors: list[str] = field(default_factory=list)
    recovery_point_age_s: float | None = None  # the backup's age when the restore began
    cancelled: bool = False
    error: str | None = None  # a step that could not run at all
    drill_id: str | None = None
    source_version: str = ""  # the PostgreSQL the backup was taken of, "16.4"
    copy_version: str = ""  # the PostgreSQL the drill restored into, "16.15"

    # -- verdict -------------------------------------------------------------------
    @property
    def total_s(self) -> float:
        """Wall time from the start to the instance being gone: the real recovery time, and then some."""
        return round(max(0.0, self.finished_at - self.started_at), 3)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if c.verdict is Verdict.FAILED]

    @property
    def warnings(self) -> list[Check]:
        """Passed checks that found something in the source (not the restore) to fix."""
        return [c for c in self.checks if c.verdict is Verdict.WARNING]

    @property
    def not_run(self) -> list[Check]:
        """Checks that could not be made on this copy: they prove nothing either way."""
        return [c for c in self.checks if c.verdict is Verdict.NOT_RUN]

    @property
    def passed(self) -> bool:
        # Every step ran to its end: checks that passed before something broke off prove nothing.
        return (not self.cancelled and self.error is None and bool(self.checks) and not self.failed_checks
                and all(s["outcome"] == "ok" for s in self.steps)
                and set(STEP_NAMES) <= {s["step"] for s in self.steps})

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else "cancelled" if self.cancelled else "failed"

    def step_seconds(self, name: str) -> float | None:
        for s in self.steps:
            if s["step"] == name:
                return s["seconds"]
        return None

    def _checks_by_step(self) -> str:
        """" (restore 4, verify 10)": the step details count their own checks, the summary all of them."""
        parts = [f"{s['step']} {s['checks']}" for s in self.steps if s.get("checks")]
        return f" ({', '.join(parts)})" if len(parts) > 1 else ""

    @property
    def majors(self) -> str:
        """"prod: PostgreSQL 16.4 · copy on 16.15"; "" when the drill did not get that far."""
        if not self.copy_version:
            return ""
        return majors_line(self.target, self.source_version or None, self.copy_version)

    @property
    def summary(self) -> str:
        text = self._verdict
        return f"{text} ({self.majors})" if self.majors and not self.cancelled else text

    @property
    def _verdict(self) -> str:
        restored = f"backup {self.backup_id} of {self.target}"
        age = (f" (age {fmt.duration(self.recovery_point_age_s)} when restored)"
               if self.recovery_point_age_s is not None else "")
        if self.passed:
            checks = fmt.plural(len(self.checks) - len(self.not_run), "check")
            not_run = (f" ({len(self.not_run)} not run: {headline_list([c.name for c in self.not_run])})"
                       if self.not_run else "")
            text = (f"Drill passed: restored {restored}{age} and verified it; all {checks} passed"
                    f"{self._checks_by_step()}{not_run}; total time {fmt.duration(self.total_s)}.")
            if self.warnings:
                n = len(self.warnings)
                text += (f" {fmt.plural(n, 'warning')} about the source: "
                         f"{headline_list([check_headline(c) for c in self.warnings])}.")
            return text
        if self.cancelled:
            return f"Drill cancelled after {fmt.duration(self.total_s)}; the drill instance was deleted."
        # The kinds of failure, counted; which tables, constraints or files: in the Failed checks table.
        problems = [check_headline(c) for c in self.failed_checks]
        if self.error:
            problems.insert(0, short_error(self.error))
        return f"Drill FAILED on {restored}{age}: {headline_list(problems)}."

    # -- renderings ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "drill_id": self.drill_id, "backup_id": self.backup_id, "target": self.target,
            "passed": self.passed, "outcome": self.outcome, "summary": self.summary,
            "instance_kind": self.instance_kind, "instance": self.instance,
            "started_at": self.started_at, "finished_at": self.finished_at, "total_s": self.total_s,
            "recovery_point_age_s": self.recovery_point_age_s, "steps": self.steps,
            "checks": [c.to_dict() for c in self.checks],
            "versions": self.versions, "backup": self.backup, "procedure": self.procedure,
            "restore_errors": self.restore_errors, "cancelled": self.cancelled, "error": self.error,
            "source_version": self.source_version, "copy_version": self.copy_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DrillResult":
        return cls(
            backup_id=d["backup_id"], target=d["target"], instance_kind=d.get("instance_kind", ""),
            started_at=d["started_at"], finished_at=d.get("finished_at", d["started_at"]),
            instance=d.get("instance", ""), steps=list(d.get("steps", [])),
            checks=[Check.from_dict(c) for c in d.get("checks", [])],
            versions=dict(d.get("versions", {})), backup=dict(d.get("backup", {})),
            procedure=list(d.get("procedure", [])), restore_errors=list(d.get("restore_errors", [])),
            recovery_point_age_s=d.get("recovery_point_age_s"), cancelled=bool(d.get("cancelled")),
            error=d.get("error"), drill_id=d.get("drill_id"), source_version=d.get("source_version") or "",
            copy_version=d.get("copy_version") or "",
        )

    def _step_rows(self) -> list[list[Any]]:
        return [[s["step"], fmt.when(s.get("started_at")), fmt.duration(s.get("seconds")), s["outcome"],
                 s.get("detail", "")] for s in self.steps]

    def _check_rows(self) -> list[list[Any]]:
        return [[c.name, c.verdict.word, c.detail] for c in self.checks]

    def _recovery_text(self) -> str:
        return (f"Recovery point: the backup was {fmt.duration(self.recovery_point_age_s)} old when restored "
                f"(taken {fmt.when_written(self.backup.get('created_at'))}).\n"
                f"Recovery time: {fmt.duration(self.total_s)} in total "
                f"(restore {fmt.duration(self.step_seconds('restore'))}, "
                f"verify {fmt.duration(self.step_seconds('verify'))}).")

    def to_report(self, title: str = "") -> Report:
        """`title`: the caller's (which names the drill as recorded), else one from the result."""
        named = f" {self.drill_id}" if self.drill_id else ""
        title = title or f"Restore drill{named}: {self.target}, backup {self.backup_id}"
        sections = []
        # What went wrong comes first; the full record (every check, step and version) after it.
        if self.error:
            sections.append(Section("Error", self.error, problem=True))
        bad = [c for c in self.checks if c.verdict is not Verdict.OK]
        if bad:
            heading = "Failed checks" if self.failed_checks else "Warnings" if self.warnings else "Checks not run"
            sections.append(Section(heading, checks=bad, problem=True))
        if self.restore_errors:
            sections.append(Section(f"Restore errors ({len(self.restore_errors)})",
                                    "\n".join(self.restore_errors[:50]), problem=True))
        sections += [  # recovery point and time are facts
            Section("Steps", table=Table(["step", "started", "took", "outcome", "detail"], self._step_rows())),
            Section("Checks", checks=self.checks),
            Section("Versions", table=Table(["component", "version"], [[k, v] for k, v in self.versions.items()])),
        ]
        return Report(title=title, summary=self.summary, outcome=Outcome.OK if self.passed else Outcome.FAILED,
                      sections=sections, facts=self.facts(), data=self.to_dict(),
                      file=ReportFile(f"drill-{self.drill_id or self.backup_id}.md", self.to_markdown()))

    def facts(self) -> list[tuple[str, str]]:
        passed = sum(1 for c in self.checks if c.verdict in (Verdict.OK, Verdict.WARNING))
        made = len(self.checks) - len(self.not_run)
        return [
            ("Result", self.outcome + (f", {fmt.plural(len(self.warnings), 'warning')}" if self.warnings else "")),
            ("Backup", f"{self.backup_id}, taken {fmt.when_written(self.backup.get('created_at'))}"),
            ("Recovery point", "-" if self.recovery_point_age_s is None
             else f"backup {fmt.duration(self.recovery_point_age_s)} old when restored"),
            ("Recovery time", fmt.duration(self.total_s)),
            ("Restore", fmt.duration(self.step_seconds("restore"))),
            ("Verify", fmt.duration(self.step_seconds("verify"))),
            ("Checks", f"{passed} of {made} passed" + (f", {len(self.not_run)} not run" if self.not_run else "")),
            ("Drill instance", self.instance or self.instance_kind or "-"),
        ] + ([("PostgreSQL", self.majors)] if self.majors else [])

    def to_markdown(self) -> str:
        """The written report: procedure, timings, versions and every check, for `drill report <id>`."""
        def esc(value: Any) -> str:
            return str(value).replace("|", "\\|").replace("\n", " ")

        def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
            out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            out += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
            return out

        verdict = ("PASSED with warnings" if self.warnings else "PASSED") if self.passed else \
            "CANCELLED" if self.cancelled else "FAILED"
        lines = [f"# Restore drill{' ' + self.drill_id if self.drill_id else ''}: {verdict}", "",
                 self.summary, "",
                 f"- Target: {self.target}",
                 f"- Backup: {self.backup_id}, taken {fmt.when_written(self.backup.get('created_at'))}, "
                 f"{self.backup.get('format', '?')} format, {self.backup.get('size', 0):,} bytes, "
                 f"integrity level {self.backup.get('integrity_level', '?')}, "
                 f"{self.backup.get('tables', 0)} tables, {self.backup.get('rows', 0):,} rows",
                 f"- Drill instance: {self.instance or self.instance_kind}",
                 *([f"- PostgreSQL: {self.majors}"] if self.majors else []),
                 f"- Started {fmt.when(self.started_at)}, finished {fmt.when(self.finished_at)}", "",
                 "## Recovery point and recovery time", "", *self._recovery_text().split("\n"), "",
                 "## Procedure", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(self.procedure, 1)] or ["(no step ran)"]
        lines += ["", "## Steps", "", *table(["step", "started", "took", "outcome", "detail"], self._step_rows()),
                  "", "## Checks", "", *table(["check", "result", "detail"], self._check_rows()),
                  "", "## Versions", "", *table(["component", "version"], [[k, v] for k, v in self.versions.items()])]
        if self.restore_errors:
            lines += ["", f"## Restore errors ({len(self.restore_errors)})", "", "```",
                      *self.restore_errors[:200], "```"]
        if self.error:
            lines += ["", "## Error", "", self.error]
        return "\n".join(lines) + "\n"
