"""A report's typed parts in words: the one place a note's level becomes its mark (":warning:",
":x:"), the way `Verdict.word` gives a check's. Slack's mrkdwn, which the terminal and JSON read plain
(bot/core/plaintext.py)."""
from __future__ import annotations

import dataclasses

from handlers.report import Level, Note, Report, Section

MARK = {Level.INFO: "", Level.WARNING: ":warning: ", Level.FAILED: ":x: "}


def note_line(note: Note) -> str:
    return MARK[note.level] + note.text


def _in_words(section: Section) -> Section:
    if not section.notes:
        return section
    text = "\n".join(([section.text] if section.text else []) + [note_line(n) for n in section.notes])
    return dataclasses.replace(section, text=text, notes=None)


def in_words(report: Report) -> Report:
    """`report` with its notes written above its summary and its sections' into their text (a copy: the
    report keeps its parts)."""
    if not report.notes and not any(s.notes for s in report.sections):
        return report
    summary = "\n".join([note_line(n) for n in report.notes] + [report.summary])
    return dataclasses.replace(report, summary=summary, notes=[], sections=[_in_words(s) for s in report.sections])
