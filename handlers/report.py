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
    """One check of a report (a copy's verification): its verdict and what it saw.
    Its name says what is checked, never the result ("expected indexes (18)", not "18 expected indexes
    present"); `headline` is a failure's or a warning's kind and count, for the summary ("schema differs:
    31 constraints"), the detail says which."""

    name: str
    verdict: Verdict
    detail: str = ""
    headline: str = ""

    @classmethod
    def of(cls, name: str, ok: bool, detail: str = "", warning: bool = False, headline: str = "") -> "Check":
        """FAILED unless `ok`; WARNING when `ok` and `warning`."""
        return cls(name, Verdict.FAILED if not ok else Verdict.WARNING if warning else Verdict.OK, detail, headline)

    @property
    def ok(self) -> bool:
        """Not failed (a warning passed; a check not run did not fail)."""
        return self.verdict is not Verdict.FAILED

    @property
    def warning(self) -> bool:
        return self.verdict is Verdict.WARNING

    def to_dict(self) -> dict[str, Any]:
        """Stored and printed as JSON; "ok" and "warning" as before the verdict was stored."""
        return {"name": self.name, "verdict": self.verdict.value, "ok": self.ok, "warning": self.warning,
                "detail": self.detail, "headline": self.headline}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        """A stored check, also one recorded before its verdict was (ok, warning)."""
        if d.get("verdict"):
            return cls(d["name"], Verdict(d["verdict"]), d.get("detail", ""), d.get("headline", ""))
        return cls.of(d["name"], bool(d.get("ok")), d.get("detail", ""), bool(d.get("warning")), d.get("headline", ""))


class Level(enum.StrEnum):
    """How much a note matters; the renderer (bot/core/parts.py) marks it, handlers never spell the mark."""

    INFO = "info"
    WARNING = "warning"
    FAILED = "failed"


@dataclass
class Note:
    """One line a report says, with its level: the renderer writes ":warning:" (or the terminal's word)."""

    level: Level
    text: str

    @classmethod
    def warning(cls, text: str) -> "Note":
        return cls(Level.WARNING, text)


CHECK_HEADERS = ["check", "result", "detail"]
FINDING_HEADERS = ["line", "code", "message", "fix"]


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
    # Checks, instead of a table: a check/result/detail table, the verdicts' words from one place.
    checks: list[Check] | None = None
    # A migration check's findings (`Finding.to_json` dicts), instead of a table: the renderer shows them as
    # diagnostics; the line/code/message/fix table is what JSON and a stored report carry.
    findings: list[dict] | None = None
    # Lines with a level, after the text: the renderer marks each (":warning: ..." for a warning).
    notes: list[Note] | None = None

    def __post_init__(self) -> None:
        if self.checks is not None and self.table is None:
            self.table = Table(CHECK_HEADERS, [[c.name, c.verdict.word, c.detail] for c in self.checks])
        if self.findings is not None and self.table is None:
            self.table = Table(FINDING_HEADERS, [[f["line"], f["code"], f["message"], f.get("hint")]
                                                 for f in self.findings])


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
    verdict: bool = True  # False: information (help), not a check: the terminal shows no "OK" after its title
    # A migration check's findings in line order (`Finding.to_json` dicts): `--format line` prints them one a
    # line, the terminal as diagnostics where the first section of findings is.
    findings: list[dict] | None = None
    # Lines said before the summary, each with its level (that the state database is down, say): added by
    # whoever knows them, written above the summary by the renderer.
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

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
        findings = data["findings"] if "findings" in data else _stored_findings(data)
        sections = [Section(s["title"], s.get("text", ""), Table(**s["table"]) if s.get("table") else None,
                            problem=bool(s.get("problem")),
                            checks=[Check.from_dict(c) for c in s["checks"]] if s.get("checks") is not None else None,
                            findings=s.get("findings") if "findings" in data else _stored_section_findings(s),
                            notes=[Note(Level(n["level"]), n["text"]) for n in s["notes"]] if s.get("notes") else None)
                    for s in data.get("sections", [])]
        file = ReportFile(**data["file"]) if data.get("file") else None
        return cls(title=data["title"], summary=data["summary"], outcome=Outcome(data["outcome"]),
                   sections=sections, facts=[(str(k), str(v)) for k, v in data.get("facts", [])], file=file,
                   data=data.get("data", {}), exact_json=data.get("exact_json"), findings=findings,
                   notes=[Note(Level(n["level"]), n["text"]) for n in data.get("notes", [])])

    def to_json(self) -> dict[str, Any]:
        if self.exact_json is not None:
            return self.exact_json
        # The sections too: JSON carries every line the text shows (output.to_json writes notes into the text).
        sections = [{"title": sec.title, "text": sec.text,
                     "table": {"headers": sec.table.headers, "rows": sec.table.rows} if sec.table else None,
                     "problem": sec.problem,
                     **({"notes": [{"level": n.level.value, "text": n.text} for n in sec.notes]} if sec.notes else {})}
                    for sec in self.sections]
        facts = {"facts": dict(self.facts)} if self.facts else {}
        notes = {"notes": [{"level": n.level.value, "text": n.text} for n in self.notes]} if self.notes else {}
        return {"title": self.title, "outcome": self.outcome.value, "summary": self.summary,
                "sections": sections, **facts, **notes, **self.data}


# A report stored before findings were typed (a pending approval request's) kept them as data["findings"]
# and as tables with the finding headers: read back as typed findings.
def _stored_findings(stored: dict[str, Any]) -> list[dict] | None:
    found = (stored.get("data") or {}).get("findings")
    return found if any((s.get("table") or {}).get("headers") == FINDING_HEADERS
                        for s in stored.get("sections", [])) else None


def _stored_section_findings(stored: dict[str, Any]) -> list[dict] | None:
    table = stored.get("table") or {}
    if table.get("headers") != FINDING_HEADERS:
        return None
    return [{"line": line, "code": code, "message": message, "hint": fix} for line, code, message, fix in table["rows"]]


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
