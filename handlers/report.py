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

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """Everything, to store (an approval request keeps the report it was made from); from_dict reads it back."""
        data = dataclasses.asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        sections = [Section(s["title"], s.get("text", ""), Table(**s["table"]) if s.get("table") else None,
                            problem=bool(s.get("problem")))
                    for s in data.get("sections", [])]
        file = ReportFile(**data["file"]) if data.get("file") else None
        return cls(title=data["title"], summary=data["summary"], outcome=Outcome(data["outcome"]),
                   sections=sections, facts=[(str(k), str(v)) for k, v in data.get("facts", [])], file=file,
                   data=data.get("data", {}), exact_json=data.get("exact_json"))

    def to_json(self) -> dict[str, Any]:
        if self.exact_json is not None:
            return self.exact_json
        # The sections too: JSON carries every line the text shows.
        sections = [{"title": sec.title, "text": sec.text,
                     "table": {"headers": sec.table.headers, "rows": sec.table.rows} if sec.table else None,
                     "problem": sec.problem}
                    for sec in self.sections]
        facts = {"facts": dict(self.facts)} if self.facts else {}
        return {"title": self.title, "outcome": self.outcome.value, "summary": self.summary,
                "sections": sections, **facts, **self.data}


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
