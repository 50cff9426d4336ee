"""Reports in Slack: split across blocks and messages within Slack's limits, never cut off."""
from __future__ import annotations

import json
import logging
import time

from bot.core import output
from bot.core.logs import ScrubbingFormatter
from bot.core.notify import Notifier, ProgressMessage, make_client
from handlers.report import Progress, Report, Section, Table
from tests.fakes.slack_api import payload_violations


def big_report(rows: int) -> Report:
    table = Table(["index", "table", "suggestion"],
                  [[f"IX_Table{i}_Column{i}", f"Table{i}", f"DROP INDEX CONCURRENTLY \"IX_Table{i}_Column{i}\";"]
                   for i in range(rows)])
    return Report(title="Index review", summary="many findings", sections=[Section("Unused indexes", table=table)])


def test_a_long_table_goes_in_the_thread_within_slack_limits_and_every_row_is_in_the_file():
    slack = output.slack_report(big_report(3000))
    assert len(slack.main["blocks"]) <= output.MAIN_BLOCKS and 1 <= len(slack.thread) <= output.THREAD_MESSAGES
    for message in slack.messages:
        assert payload_violations("chat.postMessage", message) == []
    (shown,) = [b for m in slack.thread for b in m["blocks"] if b["type"] == "table"]  # the first rows only
    assert len(shown["rows"]) == output.THREAD_TABLE_ROWS + 1
    assert "IX_Table0_Column0" in json.dumps(slack.thread[0])
    assert "2970 more rows in the attached file" in json.dumps(slack.thread)  # the thread says where the rest is
    for i in (0, 1234, 2999):
        assert f"IX_Table{i}_Column{i}" in slack.file.content
    assert slack.file.filename == "index-review.txt"
    assert "index-review.txt" in json.dumps(slack.main["blocks"][-1])  # the main message names the file


def test_a_short_report_is_one_message_with_a_header_and_its_table_as_a_table_block():
    slack = output.slack_report(big_report(3))
    assert slack.thread == [] and slack.file is None
    assert slack.main["blocks"][0]["type"] == "header"
    (table,) = [b for b in slack.main["blocks"] if b["type"] == "table"]
    assert [c["text"] for c in table["rows"][0]] == ["index", "table", "suggestion"]
    assert [c["text"] for c in table["rows"][3]][:2] == ["IX_Table2_Column2", "Table2"]
    assert payload_violations("chat.postMessage", slack.main) == []


def test_progress_updates_are_throttled_to_the_interval(fake_slack):
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    progress = ProgressMessage(notifier, "C0OPS", "`backup` on `prod`", interval=0.5)
    progress.start("started")
    for i in range(20):
        progress.tick(Progress("dumping", i / 20))
    assert fake_slack.calls_to("chat.update") == []  # all within the first interval
    time.sleep(0.6)
    progress.tick(Progress("dumping", 0.9, "1.2 GB written"))
    (update,) = fake_slack.calls_to("chat.update")
    assert "90%" in update.params["text"] and "1.2 GB written" in update.params["text"]
    assert update.params["ts"] == progress.ts


def test_messages_and_log_lines_are_scrubbed_of_secrets(fake_slack):
    secret = "hunter2-password-xyz"
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[secret])
    notifier.post("C0OPS", f"connection to postgresql://ops:{secret}@db failed")
    assert secret not in json.dumps(fake_slack.calls_to("chat.postMessage")[0].params)
    formatter = ScrubbingFormatter([secret], "%(message)s")
    try:
        raise RuntimeError(f"password={secret}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed with %s", (secret,), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    assert secret not in formatter.format(record)


def test_a_table_too_wide_only_for_its_last_column_wraps_that_column_under_itself():
    detail = "throwaway local PostgreSQL in /tmp/dbops-drill-abcdefgh, PostgreSQL 18.6, started as a sandbox"
    report = Report("Drill", "ok", sections=[Section("Steps", table=Table(
        ["step", "took", "detail"], [["create instance", "1.1 s", detail], ["restore", "0.6 s", "9 tables"]]))])
    lines = output.to_text(report, width=60).splitlines()
    start = lines.index("step             took   detail")
    assert all(len(line) <= 60 for line in lines)
    assert lines[start + 2].startswith("create instance  1.1 s  throwaway local")
    continued = lines[start + 3:lines.index("restore          0.6 s  9 tables")]
    assert continued and all(line.startswith(" " * 24) for line in continued)
    assert " ".join(x.strip() for x in [lines[start + 2][24:], *continued]) == detail


def test_a_table_whose_leading_columns_are_too_wide_becomes_key_value_rows():
    report = Report("Wide", "ok", sections=[Section("Rows", table=Table(
        ["name", "where", "note"], [["a" * 30, "b" * 30, "short"]]))])
    text = output.to_text(report, width=60)
    assert "name:  " + "a" * 30 in text and "note:  short" in text
