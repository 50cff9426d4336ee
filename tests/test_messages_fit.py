"""Reports read well where they are shown: a terminal of any width, a phone's Slack."""
from __future__ import annotations

import re

from bot.core import output, plaintext
from handlers.migrations import check_migration
from handlers.report import Outcome, Report, Section, Table
from tests.fakes.slack_api import all_texts, payload_violations

WIDE = Table(["name", "detail"], [["idx_notes_owner", "a very long explanation " * 12], ["b", "short"]])


def sample() -> Report:
    return Report(
        title="Index review", summary=":warning: *2 problems* in `asidenote`: see below " + "and more " * 20,
        outcome=Outcome.FAILED,
        sections=[Section("Details", text="• " + "wrapped words " * 20 + "\n```SELECT 1 * 2 FROM t```"),
                  Section("Wide", table=WIDE), Section("Narrow", table=Table(["a", "b"], [["1", "*x*"]]))])


def test_terminal_text_fits_the_width_and_has_no_slack_markup():
    for width in (60, 80, 100):
        text = output.to_text(sample(), width)
        assert all(len(line) <= width for line in text.splitlines()), text
        assert ":warning:" not in text and "```" not in text and "*2 problems*" not in text
        assert "warning: 2 problems in asidenote" in text
        assert "SELECT 1 * 2 FROM t" in text  # code is shown as written
        # The wide table: its detail column wrapped under itself, or (at 60 columns) a row at a time.
        assert re.search(r"^idx_notes_owner +\S", text, re.M) or "name:   idx_notes_owner" in text, text
        assert re.search(r"^b +short$", text, re.M) or "detail: short" in text, text
        assert "a    b\n---  ---\n1    x" in text  # a narrow table stays a table (its markup taken out too)


def test_terminal_bullets_hang_under_their_text():
    lines = plaintext.fit("• " + "word " * 30, 40)
    assert lines[0].startswith("• ") and all(line.startswith("  ") for line in lines[1:])


def test_times_and_identifiers_are_not_taken_for_emoji_or_bold():
    assert plaintext.plain_line("at 12:30:00 UTC, a*b*c and :x: gone") == "at 12:30:00 UTC, a*b*c and x gone"


def test_width_comes_from_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "77")
    assert plaintext.terminal_width() == 77
    monkeypatch.setenv("COLUMNS", "5")
    assert plaintext.terminal_width() == plaintext.MIN_WIDTH


def test_slack_messages_of_a_wide_table_have_no_wide_monospace_line_and_keep_every_value():
    report = sample()
    report.sections.append(Section("Code", text="```" + "x" * 200 + "```"))
    messages = output.slack_messages(report)
    for message in messages:
        assert payload_violations("chat.postMessage", message) == []
    blob = "".join(all_texts([m["blocks"] for m in messages]))
    assert "*name:* idx_notes_owner" in blob and ("a very long explanation " * 12).strip() in blob
    assert "x" * 72 + "\n" + "x" * 72 in blob  # a long code line continues on the next line


def test_slack_findings_of_a_real_check_fit_a_phone():
    report = check_migration(open("examples/migrations/drop_pinned.up.sql").read(),
                             filename="drop_pinned.up.sql").to_report()
    messages = output.slack_messages(report)
    for message in messages:
        assert payload_violations("chat.postMessage", message) == []
    blob = "".join(all_texts([m["blocks"] for m in messages]))
    assert '`drop-column` (line 2): drops "Notes"."IsPinned"' in blob and "_fix:_ Expand/contract" in blob


def test_the_fake_slack_check_catches_what_slack_or_a_phone_would_refuse():
    wide = {"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "```" + "y" * 73 + "```"}}]}
    assert "monospace line of 73" in " ".join(payload_violations("chat.postMessage", wide))
    long_section = {"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "z" * 3001}}]}
    assert payload_violations("chat.update", long_section)
    header = {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
    assert payload_violations("chat.postMessage", header)
    many = {"text": "t", "blocks": [{"type": "divider"}] * 51}
    assert "51 blocks" in " ".join(payload_violations("chat.postMessage", many))
    assert payload_violations("chat.postMessage", {"text": "x" * 40001})
    assert payload_violations("chat.postMessage", {"text": "t", "blocks": [{"type": "no-such-block"}]})
    assert payload_violations("chat.postMessage", {"text": "ok", "blocks": [{"type": "divider"}]}) == []


def test_a_long_title_is_one_header_line_within_slacks_limit():
    (message,) = output.slack_messages(Report(title="T\n" + "t" * 300, summary="s"))
    header = message["blocks"][0]["text"]["text"]
    assert len(header) <= 150 and "\n" not in header


class _Tty:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_demo_output_starts_after_the_progress_line_is_cleared(capsys):
    from bot.areas.demo import _AfterProgress
    from bot.frontends.cli import TerminalProgress
    from handlers.report import Progress

    tty = _Tty()
    progress = TerminalProgress(stream=tty)
    progress(Progress("done", 1.0, "backup"))
    _AfterProgress(progress).write("Backup b001 of prod: OK\n")
    assert tty.text.endswith("\r\033[K")  # the bar was wiped before the report was written
    assert capsys.readouterr().out == "Backup b001 of prod: OK\n"
    progress(Progress("next step"))  # and the next step draws its line again
    assert tty.text.endswith("next step (0s)")


def test_a_finding_on_a_very_long_sql_line_still_fits_the_terminal():
    sql = "ALTER TABLE \"Notes\" DROP COLUMN \"IsPinned\", " + ", ".join(f'DROP COLUMN "c{i}"' for i in range(60)) + ";"
    report = check_migration(sql, filename="wide.sql").to_report()
    report.data["path"] = "migrations/wide.sql"
    for width in (40, 80):
        text = output.to_text(report, width)
        assert all(len(line) <= width for line in text.splitlines()), text
        assert "  --> migrations/wide.sql:1" in text and "..." in text
    lines = output.to_format(report, "line").splitlines()
    assert lines and all(line.startswith("migrations/wide.sql") for line in lines)
    assert "migrations/wide.sql:1: forbidden[drop-column]: " in output.to_lines(report)
