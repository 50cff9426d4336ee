"""Reports rendered for the terminal (tabulate), JSON, and Slack (Block Kit).

In Slack a report is a short main message (headline, facts, problems first) with
the detail in its thread and, when the detail is long, the full report attached
as a file there (`slack_report`). Every payload keeps within Slack's limits: 50
blocks, 3,000 characters a section, 10 fields, one table block of at most 100
rows and 20 cells a row, and no monospace line wider than a phone shows.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from handlers import fmt
from handlers.report import Outcome, Progress, Report, ReportFile, Section, Table

from . import diagnostics, parts, plaintext

ICON = {Outcome.OK: ":white_check_mark:", Outcome.FAILED: ":x:", Outcome.APPROVAL_REQUIRED: ":raised_hand:"}
TEXT_MARK = {Outcome.OK: "OK", Outcome.FAILED: "FAILED", Outcome.APPROVAL_REQUIRED: "APPROVAL REQUIRED"}
SECTION_LIMIT = 2900  # under Slack's 3,000, leaving room for the code fence
BLOCKS_PER_MESSAGE = 45  # under Slack's 50
MONOSPACE_WIDTH = 72  # a phone shows about this much of a code block without scrolling sideways
TABLE_ROWS, TABLE_CELLS = 100, 20  # Slack's limits for a table block (the header row counts)
TABLE_CELL_CHARS = 60  # longer values are sentences: shown as lines, not squeezed into a cell
FIELDS_PER_BLOCK = 10  # Slack's limit
FIELD_CHARS = 300  # a fact is a value, not a paragraph (Slack allows 2,000)
# The main message stays short (a phone screen or two); what does not fit goes in its thread.
MAIN_BLOCKS = 14
MAIN_TABLE_ROWS = 10
MAIN_SECTION_CHARS = 1200
# A section in the thread is cut to this much (every section shows; the attached file has them whole).
THREAD_TABLE_ROWS, THREAD_SECTION_CHARS = 30, 2500
INLINE_CHARS, INLINE_LINES = 1500, 20  # a detail this short stays in the main message: no thread for a few lines
THREAD_MESSAGES, THREAD_CHARS = 4, 12000  # more detail than this is left to the attached file
FILE_OVER_CHARS = 6000  # a thread detail longer than this gets the full text report attached too


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return fmt.when(value)  # in UTC and saying so, whatever the session's time zone was
    if isinstance(value, (Decimal, date)):
        return str(value)
    if value is None:
        return ""
    return value


def table_text(table: Table) -> str:
    from tabulate import tabulate  # imported by the reports with a table: it loads importlib.metadata

    return tabulate([[_cell(v) for v in row] for row in table.rows], headers=table.headers,
                    tablefmt="simple", disable_numparse=True)


# -- terminal ---------------------------------------------------------------
def _table_lines(table: Table, width: int) -> list[str]:
    if not table.rows:
        return ["(none)"]
    cells = [[plaintext.plain_line(str(_cell(v))) for v in row] for row in table.rows]
    from tabulate import tabulate  # see table_text

    lines = tabulate(cells, headers=table.headers, tablefmt="simple", disable_numparse=True).splitlines()
    if max(len(line) for line in lines) <= width:
        return lines
    return (plaintext.last_column_wrapped(table.headers, cells, width)
            or plaintext.columns_wrapped(table.headers, cells, width)
            or plaintext.key_value_lines(table.headers, cells, width))


def to_text(report: Report, width: int | None = None) -> str:
    """The report for a terminal `width` columns wide (default: this terminal's, or 100)."""
    width, report = width or plaintext.terminal_width(), parts.in_words(report)
    path = str(report.data.get("path") or report.data.get("file") or "UP.sql")
    mark = f": {TEXT_MARK[report.outcome]}" if report.verdict or not report.ok else ""
    lines = plaintext.fit(f"{report.title}{mark}", width)
    lines += plaintext.fit(report.summary, width)
    if report.facts:  # an aligned `Name: value` list, as `heroku pg:backups:info` prints one
        lines += [""] + plaintext.key_value_lines([name for name, _ in report.facts],
                                                  [[plaintext.plain_line(str(v)) for _, v in report.facts]], width)
    shown_findings = False
    for section in report.sections:
        if report.findings is not None and section.findings is not None:
            if not shown_findings:  # every finding, in line order, where the first finding section was
                lines += [""] + diagnostics.diagnostics_text(report.findings, path, width)
                shown_findings = True
            continue
        lines += ["", *plaintext.fit(f"== {section.title}", width)]
        if section.text:
            lines += plaintext.fit(section.text, width)
        if section.table is not None:
            lines += _table_lines(section.table, width)
    return "\n".join(lines).rstrip() + "\n"


def to_lines(report: Report) -> str:
    """`--format line`, for CI logs and grep (not wrapped): a migration's findings one `file:line:
    severity[code]: message` line each; any other report its headline, then a line per problem."""
    if report.findings is not None:
        return diagnostics.diagnostics_oneline(report.findings,
                                               str(report.data.get("path") or report.data.get("file") or "UP.sql"))
    lines = [_one_line(f"{report.title}: {TEXT_MARK[report.outcome]}: {report.summary}")]
    for section in (s for s in parts.in_words(report).sections if s.problem):
        title = _one_line(section.title)
        text = map(_one_line, plaintext.plain_text(section.text).splitlines())
        lines += [f"{title}: {line}" for line in text if line]
        for row in section.table.rows if section.table else []:
            cells = [f"{h}: {_one_line(str(_cell(v)))}" for h, v in zip(section.table.headers, row) if str(_cell(v))]
            lines.append(f"{title}: " + "; ".join(cells))
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(plaintext.plain_text(text).split())


def to_format(report: Report, fmt: str, width: int | None = None) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "line":
        return to_lines(report)
    return to_text(report, width)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)


def to_json(report: Report) -> str:
    """The report as JSON; its words (title, summary, sections, facts) without Slack's markup, as
    the terminal shows them. `data` is the machine-readable part and stays as it is."""
    found = parts.in_words(report).to_json()
    if report.exact_json is None:
        found = {**found, "title": plaintext.plain_text(found["title"]),
                 "summary": plaintext.plain_text(found["summary"]),
                 "sections": [_plain_section(sec) for sec in found["sections"]]}
        if "facts" in found:
            found["facts"] = {name: plaintext.plain_text(str(value)) for name, value in found["facts"].items()}
    return json.dumps(found, indent=2, default=_json_default)


def _plain_section(section: dict) -> dict:
    table = section["table"] and {"headers": section["table"]["headers"], "rows": [
        [plaintext.plain_text(v) if isinstance(v, str) else v for v in row] for row in section["table"]["rows"]]}
    return {**section, "title": plaintext.plain_text(section["title"]), "text": plaintext.plain_text(section["text"]),
            "table": table}


def progress_line(progress: Progress, elapsed: float) -> str:
    bar = ""
    if progress.fraction is not None:
        filled = int(max(0.0, min(1.0, progress.fraction)) * 20)
        bar = f" [{'#' * filled}{'.' * (20 - filled)}] {progress.fraction:4.0%}"
    detail = f" {progress.detail}" if progress.detail else ""
    return f"{progress.phase}{bar}{detail} ({elapsed:.0f}s)"


# -- Slack ------------------------------------------------------------------
def _chunks(text: str, limit: int) -> list[str]:
    """Split on line boundaries into pieces of at most `limit` characters."""
    pieces, current = [], ""
    for line in text.splitlines():
        while len(line) > limit:  # a single overlong line: hard split
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) + 1 > limit:
            pieces.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        pieces.append(current)
    return pieces or [""]


def _mrkdwn(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,})&gt;")


def escape(text: str, mentions: bool = False) -> str:
    """Text for Slack mrkdwn that Slack reads as text: its three control characters escaped, so
    nothing in it is a mention, a `<!channel>` or a link. The one escape of the bot: every piece of
    text it did not write itself (names, echoed arguments, SQL, error text, values) passes here.
    `mentions`: a plain user mention `<@U…>` stays one (an error naming who runs a job; it is
    shown to one person only, and a mention of a user is never `<!channel>` or a link)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _USER_MENTION.sub(r"<@\1>", text) if mentions else text


def fit_code(text: str, width: int = MONOSPACE_WIDTH) -> str:
    """mrkdwn whose lines inside ``` fences are at most `width` long, broken between words (never
    inside a name or a quoted string: what is copied still runs)."""
    if "```" not in text:
        return text
    out, code = [], False
    for n, piece in enumerate(text.split("```")):
        if n:
            code = not code
        if code:
            piece = "\n".join(part for line in piece.split("\n") for part in plaintext.code_lines(line, width))
        out.append(piece)
    return "```".join(out)


def _row_lines(table: Table, findings: bool = False) -> str:
    """A table too wide for a phone: each row as short `*key:* value` lines, a blank line between rows;
    migration `findings` as `code` (line N): message, then the fix."""
    if findings:
        return "\n\n".join(
            f"`{code}`" + (f" (line {line})" if line else "") + f": {escape(str(message))}"
            + (f"\n_fix:_ {escape(str(fix))}" if fix else "") for line, code, message, fix in table.rows)
    rows = []
    for row in table.rows:
        rows.append("\n".join(f"*{escape(h)}:* {escape(str(_cell(v)))}"
                              for h, v in zip(table.headers, row) if str(_cell(v)) != ""))
    return "\n\n".join(rows)


def table_fits_a_block(table: Table) -> bool:
    """Whether Slack's `table` block can show `table` well: within its limits (100 rows with the
    header row, 20 cells a row), and short values only; sentences read better as lines."""
    return (bool(table.rows) and len(table.rows) + 1 <= TABLE_ROWS and 0 < len(table.headers) <= TABLE_CELLS
            and all(len(_cell_text(v)) <= TABLE_CELL_CHARS for row in table.rows for v in row))


def as_table_block(section: Section) -> bool:  # findings never show as one: they read as diagnostics
    return section.table is not None and section.findings is None and table_fits_a_block(section.table)


def _cell_text(value: Any) -> str:
    return " ".join(plaintext.plain_line(str(_cell(value))).split())


def table_block(table: Table) -> dict:
    """A `table` block (raw text cells: no markup is read in them); a header row first."""
    width = len(table.headers)

    def row(values: list[Any]) -> list[dict]:
        values = (list(values) + [""] * width)[:width]
        return [{"type": "raw_text", "text": _cell_text(v) or "-"} for v in values]

    return {"type": "table", "rows": [row(table.headers)] + [row(r) for r in table.rows]}


def section_blocks(section: Section, table_block_ok: bool = False) -> list[dict]:
    """A section as blocks; its table as a `table` block when `table_block_ok` and it fits one."""
    blocks = []
    head = f"*{section.title}*"
    if section.text:
        for i, piece in enumerate(_chunks(fit_code(section.text), SECTION_LIMIT - len(head) - 1)):
            blocks.append(_mrkdwn(f"{head}\n{piece}" if i == 0 else piece))
    elif section.table is None:
        blocks.append(_mrkdwn(head))
    if section.table is not None:
        if not section.table.rows:
            blocks.append(_mrkdwn((head + "\n" if not section.text else "") + "_(none)_"))
            return blocks
        if table_block_ok and as_table_block(section):
            if not section.text:
                blocks.append(_mrkdwn(head))
            blocks.append(table_block(section.table))
            return blocks
        lines = table_text(section.table).splitlines()
        if max(len(line) for line in lines) > MONOSPACE_WIDTH or section.findings is not None:
            pieces = _chunks(_row_lines(section.table, section.findings is not None), SECTION_LIMIT - len(head) - 40)
            for i, piece in enumerate(pieces):
                label = head if i == 0 and not section.text else ""
                if len(pieces) > 1:
                    label = (label + " " if label else "") + f"_(part {i + 1} of {len(pieces)})_"
                blocks.append(_mrkdwn((label + "\n" if label else "") + piece))
            return blocks
        header, rows = escape("\n".join(lines[:2])), escape("\n".join(lines[2:]))
        # Each part repeats the header so it reads on its own; room is kept for it, the label and the fences.
        room = SECTION_LIMIT - len(header) - len(head) - 60
        pieces = _chunks(rows, room)
        for i, piece in enumerate(pieces):
            label = head if i == 0 and not section.text else ""
            if len(pieces) > 1:
                label = (label + " " if label else "") + f"_(part {i + 1} of {len(pieces)})_"
            blocks.append(_mrkdwn((label + "\n" if label else "") + f"```{header}\n{piece}```"))
    return blocks


def _header_text(title: str) -> str:
    title = " ".join(title.split()) or "dbops"  # a header is one line of at most 150 characters
    return title if len(title) <= 150 else title[:149] + "…"


def fact_blocks(facts: list[tuple[str, str]]) -> list[dict]:
    """Facts as section fields (`*Name*` over its value), ten to a block as Slack allows."""
    fields = [{"type": "mrkdwn", "text": f"*{escape(name)}*\n{escape(_short(value, FIELD_CHARS))}"}
              for name, value in facts]
    return [{"type": "section", "fields": fields[i:i + FIELDS_PER_BLOCK]}
            for i in range(0, len(fields), FIELDS_PER_BLOCK)]


def _short(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _head_blocks(report: Report) -> list[dict]:
    return [{"type": "header", "text": {"type": "plain_text", "text": _header_text(report.title)}},
            _mrkdwn(_short(f"{ICON[report.outcome]} {report.summary}", SECTION_LIMIT)), *fact_blocks(report.facts)]


def report_blocks(report: Report) -> list[dict]:
    """Every block of a report (header, summary, facts, each section in order), without table blocks,
    for a message that shows a report inside its own (an approval request)."""
    blocks = _head_blocks(report := parts.in_words(report))
    for section in report.sections:
        blocks += section_blocks(section)
    return blocks


@dataclass
class SlackReport:
    """A report as Slack shows it: a short main message, the detail in its thread, and maybe the
    full report as a file in that thread. Messages are chat.postMessage payloads (text + blocks)."""

    main: dict
    thread: list[dict]
    file: ReportFile | None = None

    @property
    def messages(self) -> list[dict]:
        return [self.main, *self.thread]


def _preview(section: Section, rows: int, chars: int, where: str) -> tuple[Section, str]:
    """`section` cut to at most `rows` table rows and `chars` of text, and the note that says the
    rest is `where` ("" when nothing was cut)."""
    table, text, notes = section.table, section.text, []
    if len(text) > chars:
        end = text.rfind("\n", 0, chars)
        text = text[:end if end > 0 else chars].rstrip()
        if text.count("```") % 2:
            text += "```"
        notes.append(f"_…the rest {where}._")
    if table is not None and len(table.rows) > rows:
        notes.append(f"_…and {len(table.rows) - rows} more rows {where}._")
        table = Table(table.headers, table.rows[:rows])
    if not notes:
        return section, ""
    return Section(section.title, text, table, problem=section.problem, findings=section.findings), " ".join(notes)


def _note(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _shown_blocks(section: Section, note: str, table_block_ok: bool) -> list[dict]:
    """A (cut) section's blocks, the note on what was cut under them."""
    return section_blocks(section, table_block_ok) + ([_note(note)] if note else [])


def _pack(sections: list[tuple[Section, str]]) -> list[list[dict]]:
    """(Section, note) pairs as the blocks of messages: at most BLOCKS_PER_MESSAGE blocks and one
    table block each."""
    messages: list[list[dict]] = [[]]
    for section, note in sections:
        as_block = as_table_block(section)
        if as_block and _has_table(messages[-1]):
            # This message has its table: a narrow one joins it as aligned lines, a wider one starts the next.
            as_block = max(len(line) for line in table_text(section.table).splitlines()) > MONOSPACE_WIDTH
            if as_block:
                messages.append([])
        for block in _shown_blocks(section, note, table_block_ok=as_block):
            if len(messages[-1]) >= BLOCKS_PER_MESSAGE:
                messages.append([])
            messages[-1].append(block)
    return [m for m in messages if m]


def _has_table(blocks: list[dict]) -> bool:
    return any(b["type"] == "table" for b in blocks)


def _line_count(blocks: list[dict]) -> int:
    """Lines a reader scrolls through: a table block's rows, a text's lines."""
    return sum(len(b["rows"]) if b["type"] == "table" else
               sum(len(text.splitlines()) for text in _texts_of(b)) for b in blocks)


def _texts_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in ([v] if k == "text" and isinstance(v, str) else _texts_of(v))]
    if isinstance(value, list):
        return [t for v in value for t in _texts_of(v)]
    return []


def _text_size(value: Any) -> int:
    """Characters of text a reader meets in a block (every "text" string in it)."""
    return sum(len(text) for text in _texts_of(value))


def _within(messages: list[list[dict]], most: int, chars: int) -> tuple[list[list[dict]], bool]:
    """The first messages and blocks that keep within `most` messages and `chars` characters of
    text (at least one block), and whether anything was left out."""
    kept: list[list[dict]] = []
    size = 0
    for blocks in messages[:most]:
        kept.append([])
        for block in blocks:
            size += _text_size(block)
            if size > chars and (len(kept) > 1 or kept[0]):
                return [m for m in kept if m], True
            kept[-1].append(block)
    return kept, len(messages) > most


def _file_name(report: Report) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in plaintext.plain_line(report.title).lower())
    return "-".join(part for part in slug.split("-") if part)[:60] + ".txt"


def slack_report(report: Report) -> SlackReport:
    """The main message: headline, facts, then problem sections (cut to fit, first ones first);
    the other sections, and problems in full, go in the thread; a long detail is attached as a file."""
    main = _head_blocks(report := parts.in_words(report))
    thread_sections: list[Section] = []
    table_shown = False
    left_out = 0
    for section in (s for s in report.sections if s.problem):
        preview, cut = _preview(section, MAIN_TABLE_ROWS, MAIN_SECTION_CHARS, "in the thread")
        wants_table = not table_shown and as_table_block(preview)
        blocks = _shown_blocks(preview, cut, table_block_ok=wants_table)
        if left_out or len(main) + len(blocks) > MAIN_BLOCKS - 2:  # room kept for the notes below
            left_out += 1
            thread_sections.append(section)
            continue
        main += blocks
        table_shown = table_shown or wants_table
        if cut:
            thread_sections.append(section)
    thread_sections += [s for s in report.sections if not s.problem]
    if left_out:
        main.append(_mrkdwn(f":warning: {left_out} more {'problem' if left_out == 1 else 'problems'} "
                            "in the thread."))
    rest = _pack([(s, "") for s in thread_sections])
    if (not left_out and len(rest) == 1 and len(main) + len(rest[0]) <= MAIN_BLOCKS - 1
            and _text_size(rest[0]) <= INLINE_CHARS and _line_count(rest[0]) <= INLINE_LINES
            and not (table_shown and _has_table(rest[0]))):
        main += rest[0]  # the detail is short: one message says it all, no thread
        thread_sections = []
    shown = [_preview(s, THREAD_TABLE_ROWS, THREAD_SECTION_CHARS, "in the attached file") for s in thread_sections]
    packed, left_out_of_thread = _within(_pack(shown), THREAD_MESSAGES, THREAD_CHARS)
    truncated = left_out_of_thread or any(cut for _, cut in shown)
    detail = sum(_text_size(block) for blocks in packed for block in blocks)
    file = report.file
    if file is None and (truncated or detail > FILE_OVER_CHARS):
        file = ReportFile(_file_name(report), to_text(report, plaintext.DEFAULT_WIDTH))
    if left_out_of_thread:
        note = _mrkdwn(f"_The rest does not fit here: it is in the attached file `{file.filename}`._")
        packed[-1] = packed[-1][:BLOCKS_PER_MESSAGE - 1] + [note]
    if packed or file:
        where = "Details in the thread" if packed else "In the thread"
        where += f", the full report as `{file.filename}`." if file else "."
        main.append(_note(where))
    title = escape(" ".join(report.title.split()))  # the notification's text is mrkdwn too
    thread = [{"text": _short(f"{title}: details" + (f" ({i + 1}/{len(packed)})" if len(packed) > 1 else ""), 3000),
               "blocks": blocks} for i, blocks in enumerate(packed)]
    return SlackReport({"text": _short(headline(title, report.summary), 3000), "blocks": main}, thread, file)


def headline(title: str, summary: str) -> str:
    """Title and summary in one line, without saying twice what the summary repeats of the title
    ("Migration check: a.sql" + "a.sql: 2 forbidden" -> "Migration check: a.sql: 2 forbidden")."""
    for start in [0] + [i + 2 for i in range(len(title)) if title.startswith(": ", i)]:
        if summary.startswith(title[start:]) and len(title) - start >= 4:
            return title[:start] + summary
    return f"{title}: {summary}"


def slack_messages(report: Report) -> list[dict]:
    """The payloads of `slack_report`: the main message first, then its thread's."""
    return slack_report(report).messages


def help_blocks(rows: list[tuple[str, str]], prefix: str = "/db") -> list[dict]:
    lines = [f"`{prefix} {usage}`  {summary}" for usage, summary in rows]
    text = "*dbops commands* (add `--target NAME` for another database)\n" + "\n".join(lines)
    return [_mrkdwn(piece) for piece in _chunks(text, SECTION_LIMIT)]
