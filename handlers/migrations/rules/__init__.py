"""The rule registry: every module in this package that defines `RULE` (one rule per file,
with its good and bad examples beside it, Squawk style)."""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ..rule import Rule


@cache
def all_rules() -> tuple[Rule, ...]:
    rules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            rules.append(rule)
    codes = [r.code for r in rules]
    if len(codes) != len(set(codes)):
        raise RuntimeError(f"duplicate rule codes: {sorted(codes)}")
    return tuple(rules)


@cache
def rules_by_kind() -> dict[str, tuple[Rule, ...]]:
    """Statement rules keyed by the parse node kinds they look at."""
    table: dict[str, list[Rule]] = {}
    for rule in all_rules():
        for kind in rule.on:
            table.setdefault(kind, []).append(rule)
    return {kind: tuple(rules) for kind, rules in table.items()}


def file_rules() -> tuple[Rule, ...]:
    return tuple(r for r in all_rules() if r.is_file_rule)
