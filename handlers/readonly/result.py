"""A check's line in a report: what was tried, whether it held, and the statement that fixes it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..report import Section, Table


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""  # SQL that fixes a failed check, and who must run it

    def row(self) -> list[str]:
        return [self.name, "ok" if self.ok else "FAILED", self.detail, self.fix]


def checks_section(title: str, checks: Iterable[Check]) -> Section:
    return Section(title, table=Table(["check", "result", "detail", "fix"], [c.row() for c in checks]))


def checks_data(checks: Iterable[Check]) -> list[dict]:
    return [{"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks]
