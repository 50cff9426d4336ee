"""Reports in Slack: split across blocks and messages within Slack's limits, never cut off."""
from __future__ import annotations

import json
import logging
import time

from bot.core import render
from bot.core.logs import ScrubbingFormatter
from bot.core.notify import Notifier, ProgressMessage, make_client
from handlers.report import Progress, Report, Section, Table


def big_report(rows: int) -> Report:
    table = Table(["index", "table", "suggestion"],
                  [[f"IX_Table{i}_Column{i}", f"Table{i}", f"DROP INDEX CONCURRENTLY \"IX_Table{i}_Column{i}\";"]
                   for i in range(rows)])
    return Report(title="Index review", summary="many findings", sections=[Section("Unused indexes", table=table)])


def test_a_long_table_is_split_within_slack_limits_and_every_row_arrives():
    messages = render.slack_messages(big_report(3000))
    assert len(messages) > 1
    for message in messages:
        assert len(message["blocks"]) <= 50
        for block in message["blocks"]:
            text = block["text"]["text"]
            assert len(text) <= 3000
    everything = json.dumps(messages)
    for i in (0, 1234, 2999):
        assert f"IX_Table{i}_Column{i}" in everything
    assert messages[0]["text"].endswith(f"[1/{len(messages)}]")


def test_a_short_report_is_one_message_with_a_header():
    (message,) = render.slack_messages(big_report(3))
    assert message["blocks"][0]["type"] == "header"
    assert "```" in json.dumps(message["blocks"])


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
