"""Reports rendered for the terminal (tabulate), JSON, and Slack (Block Kit).

Slack limits a section's text to 3,000 characters and a message to 50 blocks:
long tables are split across blocks, and what does not fit one message goes
into follow-up messages (`slack_messages` returns them all), never cut off.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tabulate import tabulate

from handlers.report import Outcome, Progress, Report, Section, Table

from . import diagnostics, plaintext

ICON = {Outcome.OK: ":white_check_mark:", Outcome.FAILED: ":x:", Outcome.APPROVAL_REQUIRED: ":raised_hand:"}
TEXT_MARK = {Outcome.OK: "OK", Outcome.FAILED: "FAILED", Outcome.APPROVAL_REQUIRED: "APPROVAL REQUIRED"}
SECTION_LIMIT = 2900  # under Slack's 3,000, leaving room for the code fence
BLOCKS_PER_MESSAGE = 45
MONOSPACE_WIDTH = 72  # a phone shows about this much of a code block without scrolling sideways


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (Decimal, date)):
        return str(value)
    if value is None:
        return ""
    return value


def table_text(table: Table) -> str:
    return tabulate([[_cell(v) for v in row] for row in table.rows], headers=table.headers,
                    tablefmt="simple", disable_numparse=True)


# -- terminal ---------------------------------------------------------------
def _table_lines(table: Table, width: int) -> list[str]:
    if not table.rows:
        return ["(none)"]
    cells = [[plaintext.plain_line(str(_cell(v))) for v in row] for row in table.rows]
    lines = tabulate(cells, headers=table.headers, tablefmt="simple", disable_numparse=True).splitlines()
    if max(len(line) for line in lines) <= width:
        return lines
    return plaintext.key_value_lines(table.headers, cells, width)


def to_text(report: Report, width: int | None = None) -> str:
    """The report for a terminal `width` columns wide (default: this terminal's, or 100)."""
    width = width or plaintext.terminal_width()
    findings = report.data.get("findings")
    findings = findings if diagnostics.is_findings(findings) else None
    path = str(report.data.get("path") or report.data.get("file") or "UP.sql")
    lines = plaintext.fit(f"{report.title}: {TEXT_MARK[report.outcome]}", width)
    lines += plaintext.fit(report.summary, width)
    shown_findings = False
    for section in report.sections:
        if findings is not None and section.table is not None and section.table.headers == diagnostics.FINDING_HEADERS:
            if not shown_findings:  # every finding, in line order, where the first finding section was
                lines += [""] + diagnostics.diagnostics_text(findings, path, width)
                shown_findings = True
            continue
        lines += ["", *plaintext.fit(f"== {section.title}", width)]
        if section.text:
            lines += plaintext.fit(section.text, width)
        if section.table is not None:
            lines += _table_lines(section.table, width)
    return "\n".join(lines).rstrip() + "\n"


def to_lines(report: Report) -> str:
    """`--format line`: one `file:line: severity[code]: message` line a finding (for CI); a report
    without findings prints as text."""
    findings = report.data.get("findings")
    if not diagnostics.is_findings(findings):
        return to_text(report)
    return diagnostics.diagnostics_oneline(findings, str(report.data.get("path") or report.data.get("file") or "UP.sql"))


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
    return json.dumps(report.to_json(), indent=2, default=_json_default)


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


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit_code(text: str, width: int = MONOSPACE_WIDTH) -> str:
    """mrkdwn whose lines inside ``` fences are at most `width` long (longer ones continue on the next line)."""
    if "```" not in text:
        return text
    out, code = [], False
    for n, piece in enumerate(text.split("```")):
        if n:
            code = not code
        if code:
            piece = "\n".join(line[i:i + width] for line in piece.split("\n")
                              for i in range(0, max(len(line), 1), width))
        out.append(piece)
    return "```".join(out)


def _row_lines(table: Table) -> str:
    """A table too wide for a phone: each row as short `*key:* value` lines, a blank line between rows;
    migration findings as `code` (line N): message, then the fix."""
    if table.headers == diagnostics.FINDING_HEADERS:
        return "\n\n".join(
            f"`{code}`" + (f" (line {line})" if line else "") + f": {_slack_escape(str(message))}"
            + (f"\n_fix:_ {_slack_escape(str(fix))}" if fix else "") for line, code, message, fix in table.rows)
    rows = []
    for row in table.rows:
        rows.append("\n".join(f"*{_slack_escape(h)}:* {_slack_escape(str(_cell(v)))}"
                              for h, v in zip(table.headers, row) if str(_cell(v)) != ""))
    return "\n\n".join(rows)


def section_blocks(section: Section) -> list[dict]:
    blocks = []
    head = f"*{section.title}*"
    if section.text:
        for i, piece in enumerate(_chunks(fit_code(section.text), SECTION_LIMIT - len(head) - 1)):
            blocks.append(_mrkdwn(f"{head}\n{piece}" if i == 0 else piece))
    elif section.table is None:
        blocks.append(_mrkdwn(head))
    if section.table is not None:
        if not section.table.rows:
            blocks.append(_mrkdwn((head + "\n" if not section.text else "") + "```(none)```"))
            return blocks
        lines = table_text(section.table).splitlines()
        if max(len(line) for line in lines) > MONOSPACE_WIDTH or section.table.headers == diagnostics.FINDING_HEADERS:
            pieces = _chunks(_row_lines(section.table), SECTION_LIMIT - len(head) - 40)
            for i, piece in enumerate(pieces):
                label = head if i == 0 and not section.text else ""
                if len(pieces) > 1:
                    label = (label + " " if label else "") + f"_(part {i + 1} of {len(pieces)})_"
                blocks.append(_mrkdwn((label + "\n" if label else "") + piece))
            return blocks
        header, rows = "\n".join(lines[:2]), "\n".join(lines[2:])
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


def report_blocks(report: Report) -> list[dict]:
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _header_text(report.title)}},
        _mrkdwn(f"{ICON[report.outcome]} {report.summary}"[:SECTION_LIMIT]),
    ]
    for section in report.sections:
        blocks += section_blocks(section)
    return blocks


def slack_messages(report: Report) -> list[dict]:
    """One or more chat.postMessage payloads (text + blocks); the first is the report's head."""
    blocks = report_blocks(report)
    messages = []
    for start in range(0, len(blocks), BLOCKS_PER_MESSAGE):
        part = blocks[start:start + BLOCKS_PER_MESSAGE]
        text = f"{report.title}: {report.summary}" if start == 0 else f"{report.title} (continued)"
        messages.append({"text": text[:3000], "blocks": part})
    if len(messages) > 1:
        for i, message in enumerate(messages):
            message["text"] += f" [{i + 1}/{len(messages)}]"
    return messages


def help_blocks(rows: list[tuple[str, str]], prefix: str = "/db") -> list[dict]:
    lines = [f"`{prefix} {usage}`  {summary}" for usage, summary in rows]
    text = "*dbops commands* (add `--target NAME` for another database)\n" + "\n".join(lines)
    return [_mrkdwn(piece) for piece in _chunks(text, SECTION_LIMIT)]
