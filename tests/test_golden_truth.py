"""The texts of issue 23 ("tell the truth, second round"), exactly (tests/golden/): each in a terminal
at 100 columns and without a terminal (stdout a pipe, $COLUMNS unset: the progress lines on stderr
too), as Slack blocks, and as JSON without Slack's markup.

A drill (and a restore) with hundreds of failed checks, the index review without expected
indexes and with its SQL, the backup list with a long cell, status in `--format line` and JSON,
`help status`, a migration with a byte order mark and a `dbops:ignore` at the end of a statement's
line, and progress without a terminal. After a deliberate change, write the files again with:

    DBOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_truth.py -q
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from bot.core import output, plaintext
from bot.frontends.cli import TerminalProgress
from handlers.backup.views import list_backups
from handlers.drill.checks import listed, schema_checks, table_data_check
from handlers.report import Check, Progress
from tests.fakes.slack_api import payload_violations
from tests.test_golden import GOLDEN, ROOT, _at, _drill, check, dbops, normalise
from tests.test_golden_more import _restore_result, _status_report
from tests.test_golden_slack import _index_review, _record, report_document
from tests.test_golden_slack import check as check_slack
from tests.test_messages_fit import _Tty

MANY = 300  # failed objects in one drill: far more than any headline may list


# -- fixed inputs ----------------------------------------------------------------------------------
def many_failures_drill():
    """A drill of b003 whose copy lost 300 constraints, has other rows in 40 tables and an amcheck
    report of 200 lines, every detail long: what a headline must not repeat."""
    tables = [{"schema": "public", "name": f"Table{n:03d}", "rows": 1000 + n, "checksum": f"{n:08x}"}
              for n in range(40)]
    constraints = [{"table": f"public.Table{n % 40:03d}", "name": f"CK_Table{n % 40:03d}_Rule{n:03d}",
                    "type": "c", "definition": f"CHECK ((\"Value{n}\" > 0))", "validated": True} for n in range(MANY)]
    expected = {"tables": tables, "integrity_level": "checksums",
                "schema": {"tables": [{"schema": "public", "name": t["name"], "kind": "table"} for t in tables],
                           "constraints": constraints}}
    actual = {"tables": [{**t, "rows": t["rows"] - 1} for t in tables], "integrity_level": "checksums",
              "schema": {"tables": expected["schema"]["tables"], "constraints": []}}
    result = _drill("b003", 23, 41.0, False)
    amcheck = listed([f'heap table "public.Table{n % 40:03d}", block {n}: line pointer out of range'
                      for n in range(200)])
    result.checks = [Check.of("pg_restore errors", True, "pg_restore reported no errors"),
                     table_data_check(expected, actual),
                     *schema_checks(expected, actual),
                     Check.of("pg_amcheck: heap and B-tree indexes", False, f"corruption reported: {amcheck}",
                              headline="pg_amcheck reports corruption: 200 messages"),
                     Check.of("index validity", False, "invalid: public.IX_Table001_Value; public.IX_Table002_Value",
                              headline="2 invalid indexes on the copy")]
    return result


def many_failures_restore():
    result = _restore_result(failed=True)
    drill = many_failures_drill()
    result.checks = drill.checks
    return result


class ListedCatalog:
    """`backup list` of the fixed catalog with b005 checked where no key was (its cell is long)."""

    def list(self, target_name, limit=50):
        records = [_record(b) for b in ("b005", "b004", "b003", "b002", "b001")]
        records[0].verify_status = "no_key"
        return records


IN_PROCESS = {  # name -> the report, from fixed inputs only
    "drill-failed-many": lambda: many_failures_drill().to_report(),
    "restore-failed-many": lambda: many_failures_restore().to_report(),
    "index-review-no-expected": lambda: _index_review().to_report(),
    "backup-list-long-cell": lambda: list_backups(ListedCatalog(), None, now=_at(24, 6)),
    "status-problems": _status_report,
}


# -- terminal: 100 columns, and no terminal at all ------------------------------------------------
@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_text_at_100_columns_and_without_a_terminal(name, monkeypatch):
    report = IN_PROCESS[name]()
    check(f"truth-{name}", normalise(output.to_text(report, 100)), 100)
    monkeypatch.delenv("COLUMNS", raising=False)
    if not sys.__stdout__.isatty():  # no terminal: 100 columns, the same text
        assert plaintext.terminal_width() == plaintext.DEFAULT_WIDTH
        assert output.to_text(report) == output.to_text(report, 100)


@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_slack_blocks(name):
    check_slack(f"truth-{name}", report_document(IN_PROCESS[name]()))


_MARKUP = re.compile(r":[a-z_]+:|`|\*\w")


@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_json_words_carry_no_slack_markup(name):
    found = json.loads(output.to_json(IN_PROCESS[name]()))
    words = [found["title"], found["summary"], *(s["title"] + "\n" + s["text"] for s in found["sections"]),
             *(str(v) for s in found["sections"] if s["table"] for row in s["table"]["rows"] for v in row),
             *map(str, found.get("facts", {}).values())]
    assert not [w for w in words if _MARKUP.search(w)]
    shown = json.dumps({k: found[k] for k in ("title", "outcome", "summary", "sections", "facts") if k in found},
                       indent=2, ensure_ascii=False) + "\n"
    golden = GOLDEN / "json" / f"{name}.json"
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(shown)
    assert normalise(shown) == normalise(golden.read_text()), f"json/{golden.name} differs"


@pytest.mark.parametrize("name", ["status-problems", "drill-failed-many", "index-review-no-expected"])
def test_format_line_is_one_line_per_problem(name):
    report = IN_PROCESS[name]()
    shown = output.to_lines(report)
    check(f"truth-{name}-line", normalise(shown), 100)
    lines = shown.splitlines()
    assert lines[0].startswith(f"{plaintext.plain_text(report.title)}: ") and "\n" not in lines[0]
    problems = [s for s in report.sections if s.problem]
    assert len(lines) == 1 + sum(len(s.table.rows) if s.table else 0 for s in problems) + sum(
        1 for s in problems for line in plaintext.plain_text(s.text).splitlines() if line.strip()) + sum(
        len(s.notes or []) for s in problems)


# -- the headline counts what failed; the detail is below it -------------------------------------
HEADLINE_CHARS = 400  # a drill's or a restore's summary, whatever failed


@pytest.mark.parametrize("report", [lambda: many_failures_drill().to_report(),
                                    lambda: many_failures_restore().to_report()], ids=["drill", "restore"])
def test_headline_and_summary_stay_short_on_hundreds_of_failed_checks(report):
    report = report()
    assert len(report.summary) <= HEADLINE_CHARS, report.summary
    assert "schema differs: 300 constraints" in report.summary and "and 1 more" in report.summary
    assert "CK_Table" not in report.summary  # which constraints: the table and the file say
    text = output.to_text(report, 100)
    head = text.split("\n\n")[0].splitlines()
    assert len(head) <= 1 + -(-HEADLINE_CHARS // 90), head  # title, then the summary in a few lines
    slack = output.slack_report(report)
    assert len(slack.main["text"]) <= HEADLINE_CHARS + len(report.title) + 2
    summary_block = slack.main["blocks"][1]["text"]["text"]
    assert len(summary_block) <= HEADLINE_CHARS + 20
    assert payload_violations("chat.postMessage", slack.main) == []  # within Slack's limits, the detail cut to fit
    detail = json.dumps([slack.main, *slack.thread]) + (slack.file.content if slack.file else "")
    assert "CK_Table000_Rule000" in detail  # which constraints: below the headline, in the table or the file


def test_a_check_name_never_claims_its_result():
    drill = many_failures_drill()
    names = [c.name for c in drill.checks]
    assert not [n for n in names if re.search(r"\b(present|valid|matches|without errors)\b", n)], names


# -- the CLI, at 100 columns and through a pipe ----------------------------------------------------
def _pipe(args: list[str], **env_extra: str) -> tuple[str, str]:
    """`dbops ARGS` with stdout and stderr pipes and no $COLUMNS, as in CI: (stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "COLUMNS"))}
    env |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env", **env_extra}
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 1, 3), done.stderr
    return done.stdout, done.stderr


# Without the comments at the ends of the lines: warnings rename-column and create-index-not-concurrently.
BOM_IGNORE = ("\ufeffSET lock_timeout = '2s';\n"
              'ALTER TABLE "Notes" RENAME COLUMN "Title" TO "Heading"; -- dbops:ignore rename-column\n'
              'CREATE INDEX "IX_Notes_Rank" ON "Notes" ("Rank"); -- dbops:ignore create-index-not-concurrently\n')


@pytest.fixture
def bom_file(tmp_path):
    path = tmp_path / "add_rank.up.sql"
    path.write_text(BOM_IGNORE, encoding="utf-8")
    return path


def test_help_of_one_command(tmp_path):
    for columns in (100,):
        check("truth-help-status", normalise(dbops(["help", "status"], columns)), columns)
    out, _ = _pipe(["help", "status"])
    assert out.splitlines()[0] == "dbops help: status"  # information: no OK after it


def test_migration_with_a_byte_order_mark_and_end_of_line_ignores(bom_file):
    shown = dbops(["migrate", "check", str(bom_file)], 100).replace(str(bom_file.parent), "<dir>")
    check("truth-migrate-check-bom-ignore", normalise(shown), 100)
    assert "info[byte-order-mark]" in shown and "\ufeff" not in shown
    line, _ = _pipe(["migrate", "check", str(bom_file), "--format", "line"])
    assert [x.split(": ")[1].split("]")[0] for x in line.splitlines()] == ["info[byte-order-mark",
                                                                          "forbidden[irreversible"]


def test_index_review_without_a_dbops_toml(demo_db, tmp_path):
    empty = tmp_path / "dbops.toml"
    empty.write_text("")
    env = {"DATABASE_URL": demo_db, "DBOPS_BACKUP_DIR": str(tmp_path), "DBOPS_CONFIG": str(empty)}
    database = demo_db.split("/")[-1].split("?")[0]
    shown = dbops(["indexes"], 100, **env).replace(f"({database})", "(demo)")
    check("truth-indexes-no-config", normalise(shown), 100)
    assert "No expected indexes are configured" in shown and "[[indexes.expected]]" in shown
    out, err = _pipe(["indexes"], **env)
    assert out.replace(f"({database})", "(demo)") == shown  # no terminal: 100 columns
    assert "[" not in err and "%" not in err and "done" not in err  # one plain line per step, no bar
    assert all(len(line) <= 100 for line in (out + err).splitlines())


def test_sql_in_the_index_review_is_never_cut_inside_a_name(demo_db, tmp_path):
    shown = dbops(["indexes"], 80, DATABASE_URL=demo_db, DBOPS_BACKUP_DIR=str(tmp_path))
    block = shown.split("== Suggested SQL")[1].split("\n== ")[0]
    statements = " ".join(line.strip() for line in block.splitlines()[1:] if not line.startswith("--"))
    assert 'CREATE INDEX CONCURRENTLY "IX_ExternalLogins_UserId" ON "public"."ExternalLogins" ("UserId");' in statements
    assert all(line.count('"') % 2 == 0 for line in block.splitlines()), block


# -- progress without a terminal -------------------------------------------------------------------
class _Pipe(_Tty):
    def isatty(self) -> bool:
        return False


def test_progress_without_a_terminal_is_one_plain_line_per_step(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    pipe = _Pipe()
    progress = TerminalProgress(stream=pipe)
    progress.started -= 0  # elapsed seconds are masked below
    summary = many_failures_drill().summary
    for tick in [Progress("choose backup"), Progress("check target"), Progress("fetch archive", 0.3, "b005"),
                 Progress("fetch archive", 0.9, "b005"), Progress("restore", 0.5, "public.Notes"),
                 Progress("restore", 1.0, "restore: ok in 1 min 2 s"),
                 Progress("verifying", None, "b001: SHA-256 of " + "b001_prod_20261207T155526Z.dump" * 4),
                 Progress("done", 1.0, summary)]:
        progress(tick)
    shown = re.sub(r"\(\d+s\)", "(<s>s)", pipe.text)
    check("truth-progress-pipe", shown, 100)
    assert "[" not in shown and "%" not in shown and summary not in shown
    assert [line.split(":")[0].split(" (")[0] for line in shown.splitlines() if not line.startswith(" ")] == [
        "choose backup", "check target", "fetch archive", "restore", "verifying"]


def test_the_drill_history_trend_is_a_line_of_its_own():
    """A sparkline's blocks are 3 bytes each and some terminals draw them wide: the trend never ends
    a line that is already full."""
    shown = (GOLDEN / "drill-history.100.txt").read_text().splitlines()
    trend = [line for line in shown if "oldest to newest" in line]
    assert len(trend) == 1 and trend[0].startswith("Recovery time") and len(trend[0].encode("utf-8")) <= 100
