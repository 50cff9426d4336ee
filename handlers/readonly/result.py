"""A check's line in a report: what was tried, whether it held, and the statement that fixes it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..report import Section, Table, Verdict


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""  # SQL that fixes a failed check, and who must run it

    def row(self) -> list[str]:
        return [self.name, verdict_word(self.ok), self.detail, self.fix]


def verdict_word(ok: bool) -> str:
    return (Verdict.OK if ok else Verdict.FAILED).word


def checks_section(title: str, checks: Iterable[Check]) -> Section:
    return Section(title, table=Table(["check", "result", "detail", "fix"], [c.row() for c in checks]))


def checks_data(checks: Iterable[Check]) -> list[dict]:
    return [{"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks]
