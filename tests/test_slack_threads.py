"""A result in Slack is a short main message; its detail is in the thread, the full report a file there.
Tables are table blocks only where one fits (Slack: one a message, 100 rows, 20 cells a row)."""
from __future__ import annotations

import json

import psycopg
import pytest

from bot.core import output
from bot.core.notify import Notifier, make_client
from handlers import demo_data
from handlers.drill.result import DrillResult
from handlers.indexes import review
from handlers.report import Check, Outcome, Report, Section, Table
from tests.fakes.slack_api import FakeSlack, payload_violations, table_violations
from tests.test_indexes import settings


def _tables(message: dict) -> list[dict]:
    return [b for b in message["blocks"] if b["type"] == "table"]


def _facts(message: dict) -> dict[str, str]:
    fields = [f["text"] for b in message["blocks"] for f in b.get("fields", [])]
    return dict(f.split("\n", 1) for f in fields)


def test_a_long_index_review_posts_a_short_main_message_with_its_detail_and_file_in_the_thread(fresh_db, fake_slack):
    demo_data.load(fresh_db, with_data=False)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for n in range(40):  # each: a foreign key without an index and an index that is a prefix of another
            conn.execute(f'CREATE TABLE "Extra{n}" ("Id" int PRIMARY KEY, "UserId" bigint REFERENCES "Users" ("Id"),'
                         f' "A" int, "B" int); CREATE INDEX ON "Extra{n}" ("A"); CREATE INDEX ON "Extra{n}" ("A", "B")')
        report = review(conn, settings(), None, "prod").to_report()
    assert report.outcome is Outcome.FAILED
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    ts = notifier.post_report("C0OPS", report)

    posts = fake_slack.calls_to("chat.postMessage")
    (main,) = [c.params for c in posts if not c.params.get("thread_ts")]
    replies = [c.params for c in posts if c.params.get("thread_ts")]
    blocks = main["blocks"]
    assert len(blocks) <= output.MAIN_BLOCKS and blocks[0]["type"] == "header"
    problems = sum(1 for s in report.sections if s.problem)
    assert _facts(main)["*Problems*"] == str(report.data["problems"]) and int(report.data["problems"]) >= 80
    # Right after the headline and facts: the first problem section, not the expected-index table or slow queries.
    first_problem = next(s for s in report.sections if s.problem)
    assert blocks[3]["text"]["text"].startswith(f"*{first_problem.title}*")
    assert "Slow queries" not in json.dumps(main) and problems >= 2
    assert "31 more rows in the thread" in json.dumps(main)  # 41 rows cut to the first ten
    assert len(json.dumps(main)) < 8000  # a phone screen or two, not the whole review

    assert replies and all(r["thread_ts"] == ts for r in replies)
    thread = json.dumps(replies)
    assert "Slow queries" in thread and "Extra0" in thread and "in the attached file" in thread
    (upload,) = fake_slack.uploads.values()
    assert upload["thread_ts"] == ts and upload["channel"] == "C0OPS"
    assert upload["filename"] == "index-review-prod-" + report.data["database"].lower().replace("_", "-") + ".txt"
    for n in range(40):  # the whole review is in the file, every finding
        assert f"Extra{n}" in upload["content"]
    assert upload["filename"] in json.dumps(blocks[-1])  # and the main message says where it is


def test_a_small_table_is_a_table_block_a_long_or_wide_one_never():
    def one(rows: int, columns: int, cell: str = "v") -> Report:
        table = Table([f"c{i}" for i in range(columns)], [[f"{cell}{r}"] * columns for r in range(rows)])
        return Report("T", "s", sections=[Section("Rows", table=table)])

    def table_blocks(report: Report) -> list[dict]:
        slack = output.slack_report(report)
        for message in slack.messages:
            assert payload_violations("chat.postMessage", message) == []
        return [t for m in slack.messages for t in _tables(m)]

    (small,) = table_blocks(one(3, 4))
    assert len(small["rows"]) == 4 and [c["text"] for c in small["rows"][0]] == ["c0", "c1", "c2", "c3"]
    (wide_ok,) = table_blocks(one(3, 20))
    assert {len(r) for r in wide_ok["rows"]} == {20}
    assert table_blocks(one(3, 21)) == []
    assert table_blocks(one(3, 2, cell="a sentence that goes on " * 4)) == []  # sentences are lines, not cells
    assert table_blocks(Report("T", "s", sections=[Section("Empty", table=Table(["a"], []))])) == []
    # 100 rows with the header is Slack's limit exactly; a longer table is never one block...
    assert output.table_fits_a_block(one(99, 20).sections[0].table)
    assert not output.table_fits_a_block(one(100, 2).sections[0].table)
    # ...the thread shows its first rows, and the attached file has them all.
    slack = output.slack_report(one(300, 2))
    (first_rows,) = table_blocks(one(300, 2))
    assert len(first_rows["rows"]) == output.THREAD_TABLE_ROWS + 1
    assert "270 more rows in the attached file" in json.dumps(slack.thread) and "v299" in slack.file.content


def test_each_message_has_at_most_one_table_block_and_empty_cells_are_not_empty():
    narrow = [Section(f"Table {n}", table=Table(["k", "v"], [["a", None], ["b", ""]] * 20)) for n in range(3)]
    (reply,) = output.slack_report(Report("T", "s", sections=narrow)).thread
    assert len(_tables(reply)) == 1 and reply["blocks"][1]["rows"][1][1]["text"] == "-"
    assert json.dumps(reply).count("```") == 4  # the other two narrow tables as aligned lines beside it
    # Tables too wide for aligned lines on a phone each get a table block: one message each.
    wide = [Section(f"Wide {n}", table=Table(["name", "detail"], [["x" * 40, "y" * 40]] * 5)) for n in range(3)]
    slack = output.slack_report(Report("T", "s", sections=wide))
    assert [len(_tables(m)) for m in slack.thread] == [1, 1, 1]
    assert all(table_violations(t) == [] for m in slack.thread for t in _tables(m))


def test_problems_come_first_in_the_main_message_and_the_rest_in_the_thread():
    report = Report("Drill", "failed", Outcome.FAILED, facts=[("Result", "failed"), ("Checks", "9 of 10")],
                    sections=[Section("Steps", "all ran\n" * 300),
                              Section("Failed checks", "row counts differ", problem=True)])
    slack = output.slack_report(report)
    texts = [b.get("text", {}).get("text", "") for b in slack.main["blocks"]]
    assert texts[1].startswith(":x: failed") and _facts(slack.main) == {"*Result*": "failed", "*Checks*": "9 of 10"}
    assert texts[3].startswith("*Failed checks*") and "Steps" not in json.dumps(slack.main)
    (reply,) = slack.thread
    assert reply["blocks"][0]["text"]["text"].startswith("*Steps*")


def test_many_facts_are_split_ten_fields_a_block():
    facts = [(f"Fact {n}", "x" * 500) for n in range(23)]
    slack = output.slack_report(Report("T", "s", facts=facts))
    assert [len(b["fields"]) for b in slack.main["blocks"] if "fields" in b] == [10, 10, 3]
    assert payload_violations("chat.postMessage", slack.main) == []


def _drill(failed: bool) -> DrillResult:
    steps = [{"step": s, "started_at": 1700000000.0, "seconds": 2.0, "outcome": "ok"}
             for s in ("create instance", "restore", "verify", "delete instance")]
    checks = [Check.of(f"rows in table {n}", not (failed and n == 3), f"{n} rows") for n in range(8)]
    return DrillResult(backup_id="b001", target="prod", instance_kind="local", started_at=1700000000.0,
                       finished_at=1700000065.0, steps=steps, checks=checks, versions={"server": "18.0"},
                       recovery_point_age_s=3600, drill_id="d007")


def test_a_drill_report_has_facts_problems_first_and_its_markdown_as_the_file(fake_slack):
    report = _drill(failed=True).to_report()
    facts = dict(report.facts)
    assert facts["Result"] == "failed" and facts["Checks"] == "7 of 8 passed" and facts["Recovery time"] == "1 min 5 s"
    assert report.sections[0].title == "Failed checks" and report.sections[0].problem
    assert report.sections[0].table.rows == [["rows in table 3", "FAILED", "3 rows"]]
    text = output.to_text(report, 80)
    assert "\nRecovery point: backup 1 h old when restored\n" in text  # aligned Key: value lines
    assert report.to_json()["facts"]["Result"] == "failed"

    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    ts = notifier.post_report("C0OPS", report)
    (upload,) = fake_slack.uploads.values()
    assert upload["filename"] == "drill-d007.md" and upload["thread_ts"] == ts
    assert upload["content"].startswith("# Restore drill d007: FAILED")
    main = next(c.params for c in fake_slack.calls_to("chat.postMessage") if not c.params.get("thread_ts"))
    assert "rows in table 3" in json.dumps(main)  # the failure is in the main message


def test_a_report_file_that_cannot_be_attached_is_said_in_the_thread(fake_slack):
    fake_slack.fail_next("files.getUploadURLExternal", 400)
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    ts = notifier.post_report("C0OPS", _drill(failed=False).to_report())
    notes = [c.params["text"] for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]
    assert any("drill-d007.md" in n and "could not be attached" in n for n in notes)


def test_a_short_report_is_one_message_without_a_thread():
    report = Report("Status", "1 problem", Outcome.FAILED, sections=[Section("Backups", "no verified backup yet")])
    slack = output.slack_report(report)
    assert slack.thread == [] and slack.file is None
    assert "no verified backup yet" in json.dumps(slack.main) and "thread" not in json.dumps(slack.main)


def test_a_report_replacing_a_progress_message_keeps_its_detail_in_that_thread(fake_slack):
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    ts = notifier.post("C0OPS", "working")
    report = _drill(failed=False).to_report()
    report.sections.append(Section("Log", "a line of the restore log\n" * 200))
    notifier.replace_with_report("C0OPS", ts, report)
    (update,) = fake_slack.calls_to("chat.update")
    assert update.params["ts"] == ts and update.params["blocks"][0]["type"] == "header"
    replies = [c for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert replies and all(c.params["thread_ts"] == ts for c in replies)
    assert next(iter(fake_slack.uploads.values()))["thread_ts"] == ts


def test_a_report_answering_in_a_thread_keeps_everything_in_that_thread(fake_slack):
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    parent = notifier.post("C0OPS", "request")
    notifier.post_report("C0OPS", _drill(failed=False).to_report(), thread_ts=parent)
    assert all(c.params.get("thread_ts") == parent for c in fake_slack.calls_to("chat.postMessage")[1:])
    assert next(iter(fake_slack.uploads.values()))["thread_ts"] == parent


def test_the_fake_slack_refuses_what_slack_would_in_tables_threads_and_files():
    cell = {"type": "raw_text", "text": "x"}
    long = {"type": "table", "rows": [[cell]] * 101}
    assert "101 rows" in " ".join(payload_violations("chat.postMessage", {"text": "t", "blocks": [long]}))
    wide = {"type": "table", "rows": [[cell] * 21]}
    assert "21 cells" in " ".join(table_violations(wide))
    two = {"text": "t", "blocks": [{"type": "table", "rows": [[cell]]}] * 2}
    assert "2 table blocks" in " ".join(payload_violations("chat.postMessage", two))
    assert table_violations({"type": "table", "rows": [[cell, cell], [cell]]})
    assert table_violations({"type": "table", "rows": [[{"type": "raw_text", "text": ""}]]})
    assert table_violations({"type": "table", "rows": [[cell]]}) == []

    fake = FakeSlack().start()
    try:
        client = make_client("xoxb-test", fake.url)
        top = client.chat_postMessage(channel="C0OPS", text="top")["ts"]
        reply = client.chat_postMessage(channel="C0OPS", text="reply", thread_ts=top)["ts"]
        assert fake.thread_violations("chat.postMessage", {"thread_ts": top}) == []
        assert "do not nest" in " ".join(fake.thread_violations("chat.postMessage", {"thread_ts": reply}))
        issued = client.files_getUploadURLExternal(filename="a.txt", length=1)["file_id"]
        early = fake.thread_violations("files.completeUploadExternal", {"files": [{"id": issued}]})
        assert "before its bytes" in " ".join(early)
        unknown = fake.thread_violations("files.completeUploadExternal", {"files": [{"id": "F9999"}]})
        assert "never given an upload URL" in " ".join(unknown)
    finally:
        fake.stop()


@pytest.mark.parametrize("rows", [5, 30])
def test_every_message_of_a_migration_check_with_many_findings_fits(rows):
    from handlers.migrations import check_migration

    sql = "\n".join(f'ALTER TABLE "Notes" DROP COLUMN "c{i}";' for i in range(rows))
    slack = output.slack_report(check_migration(sql, filename="many.sql").to_report())
    for message in slack.messages:
        assert payload_violations("chat.postMessage", message) == []
    assert len(slack.main["blocks"]) <= output.MAIN_BLOCKS
    assert "needs manual approval" in json.dumps(slack.main["blocks"][:2])
    assert _facts(slack.main)["*SHA-256*"] == check_migration(sql, filename="many.sql").sha256
