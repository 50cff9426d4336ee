"""The plain result every handler returns; `bot/` renders it for Slack, the terminal and JSON."""
from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class Outcome(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"  # a check failed: exit 1
    APPROVAL_REQUIRED = "approval_required"  # exit 3

    @property
    def exit_code(self) -> int:
        return {Outcome.OK: 0, Outcome.FAILED: 1, Outcome.APPROVAL_REQUIRED: 3}[self]


class Verdict(enum.StrEnum):
    """What one check found (a StrEnum: stored and compared as its text)."""

    OK = "ok"
    WARNING = "warning"  # passed, but found something (in the source, say) that someone should fix
    FAILED = "failed"
    NOT_RUN = "not run"  # could not be made here (the detail says why): proves nothing either way

    @property
    def word(self) -> str:
        """How a report's table shows it: the one place these words are written."""
        return "FAILED" if self is Verdict.FAILED else self.value


@dataclass
class Check:
    """One check of a report (a copy's verification, a read-only role's proof): its verdict and what it saw."""

    name: str
    verdict: Verdict
    detail: str = ""
    fix: str = ""  # what fixes a failed check, and who must do it ("" when nothing to say)

    @classmethod
    def of(cls, name: str, ok: bool, detail: str = "", warning: bool = False, fix: str = "") -> "Check":
        """FAILED unless `ok`; WARNING when `ok` and `warning`."""
        return cls(name, Verdict.FAILED if not ok else Verdict.WARNING if warning else Verdict.OK, detail, fix)

    @property
    def ok(self) -> bool:
        """Not failed (a warning passed; a check not run did not fail)."""
        return self.verdict is not Verdict.FAILED

    @property
    def warning(self) -> bool:
        return self.verdict is Verdict.WARNING

    def to_dict(self) -> dict[str, Any]:
        """Stored and printed as JSON; "ok" and "warning" as before the verdict was stored."""
        data = {"name": self.name, "verdict": self.verdict.value, "ok": self.ok, "warning": self.warning,
                "detail": self.detail}
        return data | ({"fix": self.fix} if self.fix else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        """A stored check, also one recorded before its verdict was (ok, warning)."""
        if d.get("verdict"):
            return cls(d["name"], Verdict(d["verdict"]), d.get("detail", ""), d.get("fix", ""))
        return cls.of(d["name"], bool(d.get("ok")), d.get("detail", ""), bool(d.get("warning")), d.get("fix", ""))


CHECK_HEADERS = ["check", "result", "detail"]


class Level(enum.StrEnum):
    """How much a note or a status line matters; bot/core/output.py shows it (`WARNING:`, `:warning:`)."""

    INFO = "info"
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"  # something to act on now
    ALARM = "alarm"  # something costly is wrong (a billed instance left behind): said first, loudly


@dataclass
class Note:
    """A line said under a report's summary, at its level (added by whoever knows it: the area, say)."""

    level: Level
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    title: str
    text: str = ""
    table: Table | None = None
    problem: bool = False  # something to act on: shown first, in the main Slack message; the rest goes in its thread
    # Typed parts, instead of a table: checks (a check/result/detail table, the verdicts' words from one
    # place), or migration findings (Finding.to_json dicts: diagnostics in a terminal, one line each in CI).
    checks: list[Check] | None = None
    findings: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.checks is not None and self.table is None:
            with_fix = any(c.fix for c in self.checks)
            self.table = Table(CHECK_HEADERS + (["fix"] if with_fix else []),
                               [[c.name, c.verdict.word, c.detail] + ([c.fix] if with_fix else [])
                                for c in self.checks])
        if self.findings is not None and self.table is None:
            self.table = Table(FINDING_HEADERS, [[f["line"], f["code"], f["message"], f["hint"]]
                                                 for f in self.findings])


FINDING_HEADERS = ["line", "code", "message", "fix"]  # a findings section as a plain table (JSON, a file)


@dataclass
class ReportFile:
    """The full report as a file (a drill's Markdown report, say), attached in the Slack thread."""

    filename: str
    content: str


@dataclass
class Report:
    title: str
    summary: str
    outcome: Outcome = Outcome.OK
    sections: list[Section] = field(default_factory=list)
    # The few facts that matter, as (name, value): Slack shows them as fields, the terminal as `Name: value` lines.
    facts: list[tuple[str, str]] = field(default_factory=list)
    file: ReportFile | None = None  # else Slack attaches the text report when the detail is long
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable, for --format json
    exact_json: dict[str, Any] | None = None  # when a command's JSON shape is fixed, exactly this is printed
    notes: list[Note] = field(default_factory=list)  # said under the summary, each at its level
    findings_path: str = ""  # the file the findings sections' line numbers are of

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def note(self, level: Level, text: str) -> "Report":
        """Say `text` under the summary at `level` (an alarm first); the report, to chain."""
        note = Note(Level(level), text)
        if note.level is Level.ALARM:
            self.notes.insert(0, note)
        else:
            self.notes.append(note)
        return self

    @property
    def findings(self) -> list[dict[str, Any]]:
        """Every finding of the findings sections, in line order (a finding of line 0 is of the whole file)."""
        found = [f for s in self.sections if s.findings for f in s.findings]
        return sorted(found, key=lambda f: f["line"])

    @property
    def checks(self) -> list[Check]:
        return [c for s in self.sections if s.checks for c in s.checks]

    def to_dict(self) -> dict[str, Any]:
        """Everything, to store (an approval request keeps the report it was made from); from_dict reads it back."""
        data = dataclasses.asdict(self)
        data["outcome"] = self.outcome.value
        for section, stored in zip(self.sections, data["sections"]):
            if section.checks is not None:
                stored["checks"] = [c.to_dict() for c in section.checks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        sections = [Section(s["title"], s.get("text", ""), Table(**s["table"]) if s.get("table") else None,
                            problem=bool(s.get("problem")),
                            checks=[Check.from_dict(c) for c in s["checks"]] if s.get("checks") is not None else None,
                            findings=s.get("findings"))
                    for s in data.get("sections", [])]
        file = ReportFile(**data["file"]) if data.get("file") else None
        return cls(title=data["title"], summary=data["summary"], outcome=Outcome(data["outcome"]),
                   sections=sections, facts=[(str(k), str(v)) for k, v in data.get("facts", [])], file=file,
                   data=data.get("data", {}), exact_json=data.get("exact_json"),
                   notes=[Note(Level(n["level"]), n["text"]) for n in data.get("notes", [])],
                   findings_path=data.get("findings_path", ""))

    def to_json(self) -> dict[str, Any]:
        if self.exact_json is not None:
            return self.exact_json
        # The sections too: JSON carries every line the text shows.
        sections = [{"title": sec.title, "text": sec.text,
                     "table": {"headers": sec.table.headers, "rows": sec.table.rows} if sec.table else None,
                     "problem": sec.problem}
                    for sec in self.sections]
        facts = {"facts": dict(self.facts)} if self.facts else {}
        notes = {"notes": [{"level": n.level.value, "text": n.text} for n in self.notes]} if self.notes else {}
        return {"title": self.title, "outcome": self.outcome.value, "summary": self.summary,
                "sections": sections, **notes, **facts, **self.data}


def key_values(rows: list[list[Any]] | list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Facts from [name, value] rows, each name capitalised as the start of a `Name: value` line."""
    return [(str(name)[:1].upper() + str(name)[1:], str(value)) for name, value in rows]


@dataclass
class Progress:
    """One progress tick: the phase, and how far along (0..1) where that is known."""

    phase: str
    fraction: float | None = None
    detail: str = ""


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    pass


class Stopwatch:
    """Times named steps; `steps` keeps (name, started_at epoch, seconds, outcome)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str) -> "_Step":
        return _Step(self, name)

    @property
    def elapsed(self) -> float:
        return time.time() - self.started


class _Step:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> "_Step":
        self.t0 = time.time()
        self.mono = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.watch.steps.append({
            "step": self.name,
            "started_at": self.t0,
            "seconds": round(time.monotonic() - self.mono, 3),
            "outcome": "ok" if exc_type is None else "failed",
        })
