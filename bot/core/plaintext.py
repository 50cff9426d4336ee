"""Text for a terminal: Slack's markup turned plain, lines wrapped to a width, tables that would
be wider than the terminal shown as `Key: value` lines.

Reports are written once, with Slack's mrkdwn (`*bold*`, `` `code` ``, ```` ``` ```` fences,
`:emoji:`), and both front ends read them; here that markup is taken out so a terminal shows
words, not asterisks. What is inside backticks is left exactly as written (it is SQL, names,
commands a person may copy).
"""
from __future__ import annotations

import os
import re
import shutil
import textwrap

DEFAULT_WIDTH = 100  # when stdout is not a terminal and $COLUMNS is not set
MIN_WIDTH = 40

EMOJI_TEXT = {
    "white_check_mark": "ok:", "heavy_check_mark": "ok:", "x": "x", "warning": "warning:",
    "raised_hand": "approval required:", "hourglass": "...", "hourglass_flowing_sand": "...",
    "no_entry": "no:", "alarm_clock": "expired:", "gear": "*", "information_source": "i",
    "rotating_light": "!!", "bell": "!", "lock": "locked:", "red_circle": "!", "large_green_circle": "ok:",
}
_EMOJI = re.compile(r"(?<![\w:]):([a-z][a-z0-9_+-]*):(?![\w])")
_BOLD = re.compile(r"(?<![\w*])\*(\S(?:[^*\n]*\S)?)\*(?![\w*])")
_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]+)>")
_INLINE = re.compile(r"`([^`\n]+)`")


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 100 (a pipe, a CI log)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(MIN_WIDTH, int(columns))
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def _plain_words(text: str) -> str:
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _EMOJI.sub(lambda m: EMOJI_TEXT.get(m.group(1), ""), text)
    return _BOLD.sub(lambda m: m.group(1), text)


def plain_line(line: str) -> str:
    """One line of mrkdwn without its markup; inline code kept as written, backticks dropped."""
    parts = _INLINE.split(line)  # even indexes: prose; odd: what was inside backticks
    out = "".join(part if i % 2 else _plain_words(part) for i, part in enumerate(parts)).rstrip()
    return out if line[:1].isspace() else out.lstrip()  # an unknown emoji that began the line leaves no gap


def plain_text(text: str) -> str:
    """mrkdwn as plain text, line breaks kept, nothing wrapped (for JSON and log lines)."""
    return "\n".join(line for line, _ in plain(text))


def plain(text: str) -> list[tuple[str, bool]]:
    """(line, is_code) pairs: fences removed, prose lines without markup, code lines verbatim."""
    out: list[tuple[str, bool]] = []
    code = False
    for raw in text.splitlines():
        pieces = raw.split("```")
        if len(pieces) == 1:
            out.append((raw.rstrip() if code else plain_line(raw), code))
            continue
        for n, piece in enumerate(pieces):
            if n > 0:
                code = not code
            if piece.strip():  # a fence alone, or at either end of the line, leaves no line
                out.append((piece.rstrip() if code else plain_line(piece), code))
    return out


def wrap(line: str, width: int, item: bool = True) -> list[str]:
    """A line wrapped to `width`. An item of a list (a line among others) has its continuation lines
    indented, under the text after a bullet or a `warning:`, so that a wrapped item never reads as
    the start of the next one; a paragraph (`item=False`) wraps flush."""
    if len(line) <= width:
        return [line]
    indent = len(line) - len(line.lstrip())
    bullet = re.match(r"\s*(?:[•*-]|\d+[.)]|warning:|ok:|x)\s+", line)
    hang = " " * (bullet.end() if bullet else indent + 2 if item else indent)
    return textwrap.wrap(line, width, subsequent_indent=hang, break_on_hyphens=False) or [""]


def _code_words(line: str) -> list[str]:
    """A code line cut at the spaces outside quotes ('...', "..."): what a line break may replace
    without changing the SQL (a quoted name or text keeps its spaces)."""
    words, current, quote = [], "", ""
    for char in line:
        if char == " " and not quote:
            if current:
                words.append(current)
            current = ""
            continue
        if char in "'\"":
            quote = "" if quote == char else quote or char
        current += char
    return words + ([current] if current else [])


def code_lines(line: str, width: int) -> list[str]:
    """A code line (SQL, a command) no wider than `width`: broken only between words, never inside
    a name or a quoted string, continuation lines indented, so what is copied still runs. Only a
    single word longer than a whole line is cut, on lines of its own."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")))
    hang = indent + "  " if len(indent) + 2 < width // 2 else ""
    out, current, comment = [], indent, False
    for word in _code_words(line):
        if current.strip() and len(current) + 1 + len(word) > width:
            out.append(current)
            current = hang + ("--" if comment else "")  # a comment's next line is a comment too
        comment = comment or word.startswith("--")
        current += ("" if not current.strip() else " ") + word
    out.append(current)
    return [piece for part in out for piece in _cut(part, width)]


def wrap_words(text: str, width: int) -> list[str]:
    """`text` wrapped between words; a word is never split across the end of a line: only one
    longer than a whole line is cut, on lines of its own."""
    lines = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]
    return [piece for line in lines for piece in _cut(line, width)]


def _cut(line: str, width: int) -> list[str]:
    return [line[i:i + width] for i in range(0, len(line), width)] if len(line) > width else [line]


def fit(text: str, width: int) -> list[str]:
    """mrkdwn text as terminal lines no wider than `width`."""
    pieces = plain(text)
    items = sum(1 for line, code in pieces if line.strip() and not code) > 1
    lines = []
    for line, code in pieces:
        if code:
            lines += code_lines(line, width)
        else:
            lines += wrap(line, width, items)
    return lines


LAST_COLUMN_MIN = 24  # narrower than this, a wrapped last column reads worse than `Key: value` rows


def last_column_wrapped(headers: list[str], rows: list[list[str]], width: int) -> list[str] | None:
    """A table too wide only because of its last column (a detail, a fix): the other columns aligned
    as usual, the last one wrapped under itself. None when even the others leave it too little room."""
    if len(headers) < 2:
        return None
    lead = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:-1])]
    start = sum(lead) + 2 * len(lead)
    room = width - start
    if room < LAST_COLUMN_MIN:
        return None

    def line(parts: list[str], last: str) -> str:
        return ("  ".join(p.ljust(w) for p, w in zip(parts, lead)) + "  " + last).rstrip()

    longest = max([len(headers[-1])] + [min(len(r[-1]), room) for r in rows])
    out = [line(headers[:-1], headers[-1]), line(["-" * w for w in lead], "-" * longest)]
    for row in rows:
        pieces = wrap_words(row[-1], room)
        out.append(line(row[:-1], pieces[0]))
        out += [(" " * start + piece).rstrip() for piece in pieces[1:]]
    return out


COLUMN_MIN = 8  # a column wrapped narrower than this (or than its header, or its longest word) reads worse than rows


def columns_wrapped(headers: list[str], rows: list[list[str]], width: int) -> list[str] | None:
    """A table too wide by a few long cells: the widest columns narrowed, their cells wrapped under
    themselves (between words), every row still one row. None when the columns cannot all fit."""
    def longest_word(i: int) -> int:
        return max([len(headers[i]), COLUMN_MIN] + [len(w) for r in rows for w in r[i].split()])

    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    floor = [min(w, longest_word(i)) for i, w in enumerate(widths)]
    gaps = 2 * (len(headers) - 1)
    while sum(widths) + gaps > width:
        widest = max(range(len(widths)), key=lambda i: (widths[i] - floor[i], widths[i]))
        if widths[widest] <= floor[widest]:
            return None
        widths[widest] -= 1

    def cells(values: list[str]) -> list[list[str]]:
        return [wrap_words(v, w) for v, w in zip(values, widths)]

    def lines(values: list[str]) -> list[str]:
        wrapped = cells(values)
        return ["  ".join((c[n] if n < len(c) else "").ljust(w) for c, w in zip(wrapped, widths)).rstrip()
                for n in range(max(len(c) for c in wrapped))]

    return lines(headers) + ["  ".join("-" * w for w in widths)] + [line for r in rows for line in lines(r)]


def key_value_lines(headers: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Each row as `Key: value` lines (a blank line between rows), values wrapped under themselves."""
    pad = max(len(h) for h in headers) + 2
    lines: list[str] = []
    for n, row in enumerate(rows):
        if n:
            lines.append("")
        for header, value in zip(headers, row):
            value_lines = str(value).splitlines() or [""]
            first = True
            for value_line in value_lines:
                label = f"{header}:".ljust(pad) if first else " " * pad
                wrapped = wrap_words(value_line, max(10, width - pad))
                lines.append(label + wrapped[0])
                lines += [" " * pad + more for more in wrapped[1:]]
                first = False
    return [line.rstrip() for line in lines]
