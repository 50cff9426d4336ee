"""Split a migration file into parsed statements with their line numbers, using PostgreSQL's
own parser (pglast / libpg_query).

Why JSON instead of `pglast.parse_sql`: building pglast's Python node objects for a
20,000-statement file takes about three times as long as the C parser emitting its JSON
tree and `json.loads` turning it into plain dicts, and the rules only read a few fields.
The dicts keep libpg_query's field and enum names ("AlterTableStmt", "AT_DropColumn"); fields
holding a default (false, 0, empty) are left out, so rules read them with `.get`.
Locations in that JSON are UTF-8 byte offsets, so positions here are kept in bytes.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pglast.parser import ParseError, parse_sql_json, scan

from handlers.errors import UsageError

IGNORE_MARK = b"dbops:ignore"
BOM = "\ufeff"  # a UTF-8 byte order mark, as Windows editors (and Visual Studio's EF Core scripts) write one


@dataclass(frozen=True, slots=True)
class Guard:
    """EF Core's guard around a statement (efcore.py): it runs only when migration `migration_id` is not
    recorded yet (an UP script), or, `recorded`, only when it is (a DOWN script)."""

    migration_id: str
    recorded: bool
    block_line: int  # where the DO block starts


@dataclass(slots=True)
class Statement:
    index: int  # 0-based position in the file
    kind: str  # the parse node's type, e.g. "AlterTableStmt"
    node: dict[str, Any]
    line: int  # 1-based line of the statement's first token (after comments and blank lines)
    end_line: int
    start: int  # byte offsets into the UTF-8 source
    end: int
    source: bytes = field(repr=False)
    ignored: frozenset[str] = frozenset()  # codes named in `-- dbops:ignore` comments just before it
    tree_json: str = field(default="", repr=False)  # the whole file's parse tree as JSON text
    tree_span: tuple[int, int] = (0, -1)  # where this statement's tree is in it
    guard: Guard | None = None  # EF Core's guard it runs in: a statement of a DO block (efcore.py)

    @property
    def text(self) -> str:
        return self.source[self.start:self.end].decode("utf-8")

    def may_hold(self, kinds: frozenset[str]) -> bool:
        """Could this statement's tree hold a node of one of `kinds`? False is certain: every
        node is written as `"Kind":{` and a quote inside a string value is escaped as \\", so
        one search of the JSON text finds them all without walking the tree."""
        start, end = self.tree_span
        if end < 0:
            return True
        return _kinds_pattern(kinds).search(self.tree_json, start, end) is not None


def parse_statements(sql: str, filename: str = "UP.sql") -> list[Statement]:
    """Parse `sql`; raise UsageError naming the file and line when it does not parse, and naming
    the byte offset when it holds a NUL or other binary byte. A byte order mark at the very start
    is no SQL: it is left out (the check says so, `starts_with_bom`); one anywhere else is refused."""
    if starts_with_bom(sql):
        sql = sql[1:]
    _reject_binary(sql, filename)
    try:
        tree_json = parse_sql_json(sql)
    except ParseError as exc:
        message, index = exc.args[0], (exc.args[1] if len(exc.args) > 1 else None)
        raise UsageError(f"{filename} line {_error_line(sql, index)}: {message}") from None
    source = sql.encode("utf-8")
    statements: list[Statement] = []
    has_ignores = IGNORE_MARK in source
    line, pos, prev_end = 1, 0, 0
    for index, (raw, span) in enumerate(_statement_trees(tree_json)):
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        start = _skip_blanks_and_comments(source, start, len(source))
        end = start + length if length else _end_of_last_statement(source, start)
        line += source.count(b"\n", pos, start)
        pos = start
        ((kind, node),) = raw["stmt"].items()
        ignored: frozenset[str] = frozenset()
        if has_ignores:
            after_previous, before = _split_gap(source[prev_end:start]) if statements else (b"", source[:start])
            if statements:
                statements[-1].ignored |= _ignored_codes(after_previous)
            ignored = _ignored_codes(before) | _comment_codes(source[start:end])
        end_line = line + source.count(b"\n", start, end)
        statements.append(Statement(index, kind, node, line, end_line, start, end, source, ignored, tree_json, span))
        prev_end = end
    if has_ignores and statements:  # a comment after the last statement, on its line
        statements[-1].ignored |= _ignored_codes(_split_gap(source[prev_end:])[0])
    return statements


def _split_gap(gap: bytes) -> tuple[bytes, bytes]:
    """What lies between two statements: (the rest of the earlier one's last line, the lines
    before the next one). `ALTER ...; -- dbops:ignore CODE` silences the ALTER it ends, a comment
    on the lines above a statement silences that statement; a gap within one line is the next's."""
    eol = gap.find(b"\n")
    return (b"", gap) if eol == -1 else (gap[:eol], gap[eol:])


def _comment_codes(text: bytes) -> frozenset[str]:
    """Codes from dbops:ignore comments inside a statement's own text (never from a string
    literal or a quoted name that happens to hold the words: only the scanner's comments count)."""
    if IGNORE_MARK not in text:
        return frozenset()
    decoded = text.decode("utf-8")
    comments = [decoded[t.start:t.end + 1] for t in scan(decoded) if t.name in ("SQL_COMMENT", "C_COMMENT")]
    return frozenset().union(*(_ignored_codes(c.encode("utf-8")) for c in comments))


# C0 control characters other than tab, newline, vertical tab, form feed and carriage return,
# and DEL. The parser is C code that stops at a NUL: `SELECT 1;\0 DROP TABLE x;` would parse
# as one harmless statement while the rest of the file still reaches the server.
_BINARY = tuple(chr(c) for c in [*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])


def starts_with_bom(sql: str) -> bool:
    return sql.startswith(BOM)


def _reject_binary(sql: str, filename: str) -> None:
    hits = [i for i in (sql.find(c) for c in (*_BINARY, BOM)) if i != -1]
    if not hits:
        return
    first = min(hits)
    offset = len(sql[:first].encode("utf-8"))
    what = ("a NUL byte" if sql[first] == "\0" else "a byte order mark (U+FEFF) after the start"
            if sql[first] == BOM else f"the control byte 0x{ord(sql[first]):02x}")
    raise UsageError(f"{filename} contains {what} at byte offset {offset}: a migration must be plain SQL text")


@cache
def _kinds_pattern(kinds: frozenset[str]) -> re.Pattern:
    """Matches the JSON key of any node kind in `kinds` (a search of the parser's JSON output,
    not of the SQL)."""
    return re.compile('"(?:' + "|".join(sorted(map(re.escape, kinds))) + ')":')


_STMTS = '"stmts":['
_decode = json.JSONDecoder().raw_decode


def _statement_trees(tree_json: str) -> list[tuple[dict, tuple[int, int]]]:
    """Each statement's decoded tree and the span of its JSON text: `{"version":N,"stmts":[...]}`
    decoded one statement at a time, so rules can search a statement's JSON for node kinds."""
    head = tree_json.find(_STMTS)
    if head == -1:
        return []
    found, pos = [], head + len(_STMTS)
    while tree_json[pos] != "]":
        raw, end = _decode(tree_json, pos)
        found.append((raw, (pos, end)))
        pos = end + 1 if tree_json[end] == "," else end
    return found


def _end_of_last_statement(source: bytes, start: int) -> int:
    """A final statement without a semicolon has length 0 ("to the end of the input"): end it
    after its last token instead, leaving out trailing comments and blank lines."""
    text = source[start:].decode("utf-8")
    tokens = [t for t in scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    if not tokens:
        return len(source)
    return start + len(text[: tokens[-1].end + 1].encode("utf-8"))


def _error_line(sql: str, index: int | None) -> int:
    if index is None:  # "syntax error at end of input": the last line that has text
        return sql.rstrip().count("\n") + 1
    return sql.count("\n", 0, index) + 1


def _skip_blanks_and_comments(source: bytes, pos: int, end: int) -> int:
    """PostgreSQL 18's parser already starts a statement at its first token; older ones start
    it right after the previous semicolon, so skip whitespace, -- and (nested) /* */ comments."""
    while pos < end:
        c = source[pos]
        if c in b" \t\r\n\f\v":
            pos += 1
        elif source.startswith(b"--", pos):
            nl = source.find(b"\n", pos)
            pos = end if nl == -1 else nl + 1
        elif source.startswith(b"/*", pos):
            depth, pos = 1, pos + 2
            while pos < end and depth:
                if source.startswith(b"/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif source.startswith(b"*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        else:
            break
    return pos


def _ignored_codes(gap: bytes) -> frozenset[str]:
    """Codes from `-- dbops:ignore code[, code...]` comments between two statements."""
    codes: set[str] = set()
    at = gap.find(IGNORE_MARK)
    while at != -1:
        eol = gap.find(b"\n", at)
        words = gap[at + len(IGNORE_MARK): None if eol == -1 else eol].decode("utf-8", "replace")
        codes.update(w for w in words.replace(",", " ").replace("*/", " ").split() if w)
        at = gap.find(IGNORE_MARK, at + 1)
    return frozenset(codes)
