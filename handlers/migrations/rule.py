"""What a rule is: a code, what it guards against, how to fix it, a check, and examples.

Statement rules name the parse node kinds they look at (`on`), so the engine hands each
statement only to the rules that care about it. File rules (`on=()`) run once per file.
A check yields messages (plain str at the rule's severity) or Hits (another severity or hint).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

from .model import Severity

if TYPE_CHECKING:
    from .context import MigrationContext
    from .parsing import Statement

FORBIDDEN, WARNING, INFO = Severity.FORBIDDEN, Severity.WARNING, Severity.INFO


class Hit(NamedTuple):
    message: str
    severity: Severity | None = None  # None: the rule's severity
    hint: str | None = None  # None: the rule's hint


class Example(NamedTuple):
    """An example migration; `down` is its DOWN file (None: none given)."""

    up: str
    down: str | None = None


# check(stmt, ctx) for statement rules; check(ctx) -> (statement or None, hit) for file rules
StatementCheck = Callable[["Statement", "MigrationContext"], Iterable["Hit | str"]]
FileCheck = Callable[["MigrationContext"], Iterable["tuple[Statement | None, Hit | str]"]]


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    summary: str  # what the rule guards against, in one sentence
    hint: str  # how to do it safely
    check: StatementCheck | FileCheck
    on: tuple[str, ...] = ()  # parse node kinds; () makes it a file rule: check(ctx) -> (stmt, hit)
    bad: tuple[str | Example, ...] = field(default=())
    good: tuple[str | Example, ...] = field(default=())
    once_per_file: bool = False  # report only the first hit in a file
    # For ALTER TABLE: run only when the statement has one of these commands (AT_* subtypes);
    # () runs on every ALTER TABLE. Most rules care about one or two of the ~70 subtypes.
    cmds: tuple[str, ...] = ()

    @property
    def is_file_rule(self) -> bool:
        return not self.on

    def examples(self, which: str) -> list[Example]:
        items = self.bad if which == "bad" else self.good
        return [e if isinstance(e, Example) else Example(e) for e in items]
