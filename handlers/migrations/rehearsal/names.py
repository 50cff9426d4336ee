"""What the rehearsal may name when it reads the copy back after UP and DOWN.

Dynamic SQL (a DO block, a function) can name a table after rows: `CREATE TABLE %I` with the users'
e-mail addresses. So a name or value read from the copy after UP is shown only when the copy held it
before UP, or UP or DOWN spell it out in their parsed text (an identifier, a string constant, a
function body), or PostgreSQL made it from such names (`"Tags_pkey"`, `"Tags_Id_seq"`). Anything else
is counted by kind, "2 tables created by dynamic SQL", and never named. This holds for the lock and
downtime tables, the schema differences after DOWN and every finding built from them, so for Slack,
the terminal, the state store and the logs alike.

What this does not hide: numbers (row counts, seconds, a varchar length) that dynamic SQL could
choose from the rows, one bit of choice at a time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from ..parsing import Statement

WITHHELD = "<withheld>"  # a value read back that may not be shown
# the suffixes PostgreSQL gives the names it makes (ChooseRelationName, ChooseConstraintName)
_SERVER_SUFFIX = re.compile(r"_(pkey|key|fkey|check|excl|idx|seq|not_null)\d*")
_TYPE_MODIFIERS = re.compile(r"(\(\d+(,\d+)?\))?( with(out)? time zone)?(\[\])*")


def written_words(statements: Iterable[Statement]) -> frozenset[str]:
    """Every string in the parse trees of `statements`: identifiers, constants, bodies."""
    words: set[str] = set()
    stack: list[Any] = [s.node for s in statements]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            words.add(item)
    return frozenset(words)


def made_by_dynamic_sql(kind: str, count: int, where: str = "") -> str:
    """"a table created by dynamic SQL", "3 indexes on public.Notes created by dynamic SQL"."""
    plural = kind + ("es" if kind.endswith(("x", "s")) else "s")
    return f"{'a' if count == 1 else count} {kind if count == 1 else plural}{where} created by dynamic SQL"


@dataclass(frozen=True)
class Nameable:
    """The names and values the rehearsal may show (see the module docstring)."""

    before: frozenset[str]  # every name and value in the copy before UP
    written: frozenset[str]  # every string of UP and DOWN
    types: frozenset[str]  # type names the copy knows before UP (pg_catalog's and the application's)

    @classmethod
    def of(cls, schema: dict, namespaces: Iterable[str], types: Iterable[str],
           statements: Iterable[Statement]) -> "Nameable":
        values: set[str] = set(namespaces)
        for part in ("tables", "columns", "indexes", "constraints", "sequences"):
            for entry in schema.get(part, []):
                values.update(v for v in entry.values() if isinstance(v, str))
        return cls(frozenset(values), written_words(statements), frozenset(types))

    def shows(self, text: str | None) -> bool:
        return text is None or text in self.before or text in self.written

    def shows_type(self, text: str | None) -> bool:
        """A type as format_type writes it: its name must be known, its modifiers are digits."""
        if self.shows(text):
            return True
        for name in self.types | self.written:
            if text.startswith(name) and _TYPE_MODIFIERS.fullmatch(text[len(name):]):
                return True
        return False

    def shows_made_from(self, name: str, table: str, columns: Iterable[str]) -> bool:
        """Is `name` one PostgreSQL made from a shown table and columns: `<table>[_<column>...]_pkey`?"""
        if not name.startswith(table + "_"):
            return False
        rest = name[len(table):]
        suffix = _SERVER_SUFFIX.search(rest)
        while suffix is not None:
            middle = rest[:suffix.start()]
            if suffix.end() == len(rest) and _columns_joined(middle, [c for c in columns if self.shows(c)]):
                return True
            suffix = _SERVER_SUFFIX.search(rest, suffix.start() + 1)
        return False

    def relation(self, schema: str, name: str) -> bool:
        return self.shows(schema) and self.shows(name)


def _columns_joined(middle: str, columns: list[str]) -> bool:
    """Is `middle` empty or "_a_b" for columns a and b (column names may hold underscores)?"""
    if not middle:
        return True
    return any(middle.startswith("_" + c) and _columns_joined(middle[len(c) + 1:], columns) for c in columns)


def withhold(before: dict, after: dict, shown: Nameable) -> tuple[dict, list[str]]:
    """`after` (a schema capture) without what may not be named, and a line for each kind left out:
    "a table created by dynamic SQL: not there before UP, still there after DOWN"."""
    old_tables = {f"{t['schema']}.{t['name']}" for t in before.get("tables", [])}
    old_parts = {part: {(o["table"], o["name"]) for o in before.get(part, [])}
                 for part in ("columns", "indexes", "constraints")}
    counts: dict[tuple[str, str], int] = {}

    def count(kind: str, where: str = "") -> None:
        counts[(kind, where)] = counts.get((kind, where), 0) + 1

    tables, hidden_tables = [], set()
    for t in after.get("tables", []):
        key = f"{t['schema']}.{t['name']}"
        if key in old_tables or shown.relation(t["schema"], t["name"]):
            tables.append(t)
        else:
            hidden_tables.add(key)
            count(t["kind"])
    columns_of: dict[str, list[str]] = {}
    for c in after.get("columns", []):
        columns_of.setdefault(c["table"], []).append(c["name"])
    kept: dict[str, Any] = {"tables": tables}
    for part, kind in (("columns", "column"), ("indexes", "index"), ("constraints", "constraint")):
        kept[part] = []
        for o in after.get(part, []):
            if o["table"] in hidden_tables:
                continue  # counted with its table
            table_name = o.get("relation") or o["table"].split(".", 1)[-1]
            made = part != "columns" and shown.shows_made_from(o["name"], table_name, columns_of.get(o["table"], []))
            if not ((o["table"], o["name"]) in old_parts[part] or shown.shows(o["name"]) or made):
                count(kind, f" on {o['table']}")
                continue
            kept[part].append(_values_withheld(o, shown))
    kept["sequences"] = []
    old_sequences = {s["name"] for s in before.get("sequences", [])}
    for s in after.get("sequences", []):
        owner = s.get("owned_by_column") or ""
        owner_table, _, owner_column = owner.rpartition(".")
        if s["name"] in old_sequences or _sequence_shown(s["name"], owner_table, owner_column, hidden_tables, shown):
            kept["sequences"].append({**s, "owned_by_column": s.get("owned_by_column")
                                      if owner_table not in hidden_tables else WITHHELD})
        else:
            count("sequence")
    lines = [f"{made_by_dynamic_sql(kind, n, where)}: not there before UP, still there after DOWN"
             for (kind, where), n in sorted(counts.items())]
    return kept, lines


def _values_withheld(entry: dict, shown: Nameable) -> dict:
    """A column, index or constraint with its type, default and definition replaced by WITHHELD when
    they may not be shown."""
    out = dict(entry)
    for key in ("default", "definition"):
        if isinstance(out.get(key), str) and not shown.shows(out[key]):
            out[key] = WITHHELD
    if isinstance(out.get("type"), str) and "definition" not in out and not shown.shows_type(out["type"]):
        out["type"] = WITHHELD  # a column's type (a constraint's "type" is a fixed word)
    return out


def _sequence_shown(name: str, owner_table: str, owner_column: str, hidden_tables: set[str],
                    shown: Nameable) -> bool:
    """A sequence named in UP or DOWN, or made for a shown serial or identity column."""
    schema, _, relname = name.partition(".")
    if shown.relation(schema, relname):
        return True
    if not owner_table or owner_table in hidden_tables or not shown.shows(owner_column):
        return False
    return shown.shows_made_from(relname, owner_table.split(".", 1)[-1], [owner_column])
