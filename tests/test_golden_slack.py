"""What Slack shows, exactly: each kind of message the bot sends, as JSON (tests/golden/slack/).

The payloads are built in-process from fixed inputs (the fixed catalog of tests/test_golden.py,
the example migrations, a fixed approval request), without a database, so ids and times stay the
same from run to run. Each file is the payloads as sent (text and blocks), pretty-printed with
sorted keys; a change to how a message reads shows up as a diff to review. After a deliberate
change, write the files again with:

    DBOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_slack.py -q

Every payload also passes the checks the fake Slack applies to what the bot sends (valid Block Kit
by slack_sdk's models, Slack's limits, no monospace line over 72 characters).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.areas import AREAS, overview
from bot.core import output
from bot.core.approvals.book import ApprovalRequest, RequestStatus, VoteChange, migration_sha256
from bot.core.approvals.message import request_blocks
from bot.core.approvals.reactions import Approvals
from bot.core.approvals.settings import ApprovalSettings
from bot.core.config import Settings
from bot.core.notify import Notifier, ProgressMessage, make_client
from bot.core.registry import Area, Invocation, Registry, Schedule, StatusLine
from handlers.backup import backup_info
from handlers.backup.catalog import BackupRecord
from handlers.backup.manifest import BackupManifest
from handlers.backup.take import BackupResult
from handlers.indexes.checks import duplicates, foreign_keys, invalid, slow_queries
from handlers.indexes.model import IndexFinding
from handlers.indexes.review import IndexReview
from handlers.indexes.settings import IndexSettings
from handlers.migrations.check import check_migration
from handlers.report import Outcome, Progress, Report, Section, Table
from handlers.target import Target
from tests.fakes.slack_api import payload_violations
from tests.test_golden import BACKUPS, _at, _drill, _manifest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "slack"
EXAMPLES = ROOT / "examples" / "migrations"


# -- comparing -----------------------------------------------------------------------------------
def _payloads(value) -> list[dict]:
    """The chat.* payloads (dicts with a "text") anywhere in a golden document."""
    if isinstance(value, dict):
        if isinstance(value.get("text"), str) and set(value) <= {"text", "blocks"}:
            return [value]
        return [p for item in value.values() for p in _payloads(item)]
    if isinstance(value, list):
        return [p for item in value for p in _payloads(item)]
    return []


def check(kind: str, document: dict) -> None:
    """`document` (payloads, maybe an attached file) equals tests/golden/slack/<kind>.json, and every
    payload in it is one Slack takes and a phone shows."""
    payloads = _payloads(document)
    assert payloads, f"{kind}: no message in the document"
    for payload in payloads:
        assert payload_violations("chat.postMessage", payload) == [], kind
    shown = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    golden = GOLDEN / f"{kind}.json"
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(shown)
    assert shown == golden.read_text(), f"slack/{golden.name} differs; see the docstring to regenerate it"


def report_document(report: Report) -> dict:
    """A report as the bot posts it: the main message, its thread, and the file attached there."""
    slack = output.slack_report(report)
    return {"main": slack.main, "thread": slack.thread,
            "file": {"filename": slack.file.filename, "content": slack.file.content} if slack.file else None}


# -- fixed inputs --------------------------------------------------------------------------------
def _record(backup_id: str) -> BackupRecord:
    """One backup of the fixed catalog of tests/test_golden.py, as the catalog reads it."""
    _, day, size, duration, status, verified, who, error = next(b for b in BACKUPS if b[0] == backup_id)
    ok = status == "completed"
    return BackupRecord(
        id=backup_id, target="prod", database="asidenote", scheduled=who == "scheduler", requested_by=who,
        status=status, phase="done" if ok else "dump", error=error, owner=None, heartbeat_at=None,
        started_at=_at(day), finished_at=_at(day, 3, 2), duration_s=duration, format="custom",
        compression="zstd:3", encrypted=True, storage="local",
        location=f"/backups/prod/{backup_id}.dump" if ok else None, size_bytes=size,
        sha256="9" * 64 if ok else None, integrity_level="checksums" if ok else None, tables=3 if ok else None,
        total_rows=200_000 if ok else None, verify_status=verified, verified_at=_at(day, 3, 5) if ok else None,
        verify_detail="archive read in full, SHA-256 and seal match" if ok else None, deleted_at=None)


class FixedCatalog:
    """The two reads `backup_info` makes of the catalog, answered from the fixed catalog."""

    def require(self, backup_id: str) -> BackupRecord:
        return _record(backup_id)

    def manifest(self, backup_id: str) -> BackupManifest | None:
        record = _record(backup_id)
        if record.status != "completed":
            return None
        return BackupManifest.from_dict(_manifest(backup_id, record.started_at.day, record.size_bytes,
                                                  record.duration_s))


def _backup_result() -> BackupResult:
    manifest = BackupManifest.from_dict(_manifest("b005", 24, 44_800_000, 71.0))
    steps = [{"step": "dump", "seconds": 58.2, "outcome": "ok"}, {"step": "seal", "seconds": 1.3, "outcome": "ok"},
             {"step": "verify", "seconds": 11.5, "outcome": "ok"}]
    return BackupResult("b005", "prod", "dpg-prod.oregon-postgres.render.com/asidenote", manifest,
                        "/backups/prod/b005.dump", 71.0, steps, "verified", "archive read in full")


def _index_review() -> IndexReview:
    findings = [
        IndexFinding("invalid", "public", ("IX_Notes_Title",), "invalid:public.IX_Notes_Title",
                     "IX_Notes_Title on Notes is invalid",
                     ["IX_Notes_Title", "Notes", "2.3 MB", "a failed concurrent build"],
                     fix='REINDEX INDEX CONCURRENTLY "public"."IX_Notes_Title";'),
        IndexFinding("duplicate", "public", ("IX_Notes_UserId",), "duplicate:public.IX_Notes_UserId",
                     "IX_Notes_UserId is covered by IX_Notes_UserId_CreatedAt",
                     ["IX_Notes_UserId", "Notes", "IX_Notes_UserId_CreatedAt", "a leading prefix", "1.1 MB"],
                     fix='DROP INDEX CONCURRENTLY "public"."IX_Notes_UserId";'),
        IndexFinding("foreign_key", "public", ("FK_ExternalLogins_Users_UserId",),
                     "foreign_key:public.ExternalLogins.UserId", "ExternalLogins.UserId has no index",
                     ["ExternalLogins", "FK_ExternalLogins_Users_UserId", "UserId", "Users"],
                     fix='CREATE INDEX CONCURRENTLY "IX_ExternalLogins_UserId" ON "public"."ExternalLogins" '
                         '("UserId");'),
    ]
    assert [len(f.row) for f in findings] == [len(invalid.HEADERS), len(duplicates.HEADERS),
                                              len(foreign_keys.HEADERS)]
    slow = slow_queries.SlowQueries(slow_queries.NOT_INSTALLED, "pg_stat_statements is not installed in this "
                                    "database: " + slow_queries.ENABLE_HINT)
    return IndexReview(target="prod", database="asidenote", reviewed_at=_at(30, 6), settings=IndexSettings(),
                       expected=[], findings=findings, slow=slow, history_days=12, history_complete=False,
                       resets=[], stats_reset=None, unused_skipped={"primary key": 9, "unique index": 5},
                       expected_unused=[], expected_covered=[],
                       index_count=29, table_count=9, query_count=7, state_queries=2, seconds=0.8)


def _long_report() -> Report:
    """More than a phone screen: a problem table longer than the main message shows, and a log
    longer than a thread message, so it has all three parts (main, thread, file)."""
    rows = [[f"public.Table{n:02d}", f"{n * 1_000:,}", "FAILED" if n % 3 == 0 else "ok"] for n in range(1, 41)]
    log = "\n".join(f"step {n:03d}: copied {n * 1_000:,} rows of public.Table{n % 40:02d} in {n % 7 + 1} s"
                    for n in range(1, 160))
    return Report(title="Long report: prod", summary="13 of 40 tables differ.", outcome=Outcome.FAILED,
                  facts=[("Tables", "40"), ("Differ", "13"), ("Checked at", "2026-11-30 06:00 UTC")],
                  sections=[Section("Tables compared", table=Table(["table", "rows", "result"], rows), problem=True),
                            Section("Log", text=f"```{log}```")])


def _request(status: RequestStatus, detail: str | None = None) -> ApprovalRequest:
    up = (EXAMPLES / "drop_pinned.up.sql").read_text()
    down = (EXAMPLES / "drop_pinned.down.sql").read_text()
    report = check_migration(up, down, filename="drop_pinned.up.sql", down_filename="drop_pinned.down.sql").to_report()
    report.title = "Migration request: drop_pinned"
    created = datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)
    return ApprovalRequest(
        id=7, kind="migration", name="drop_pinned", target="prod", sha256=migration_sha256(up, down),
        payload={"up": up, "down": down, "apply_by": "bot", "requester_slack": "U0ALICE"},
        analysis={"report": report.to_dict()}, requires_approval=True, required_approvals=2,
        requested_by="U0ALICE", attested_by="U0ALICE", channel="C0OPS", message_ts="1700000001.000100",
        status=status, status_detail=detail, created_at=created, expires_at=created + timedelta(hours=24),
        decided_at=None, applied_at=None)


APPROVAL_STATES = {  # state -> (status, its detail line, approvers so far)
    "pending": (RequestStatus.PENDING, None, []),
    "approved": (RequestStatus.APPROVED, None, ["U0BOSS", "U0BOSS2"]),
    "applying": (RequestStatus.APPLYING, "applying on `prod` since 2026-11-30 10:02 UTC", ["U0BOSS", "U0BOSS2"]),
    "applied": (RequestStatus.APPLIED, "applied in 1.4 s; recorded in dbops.schema_migrations", ["U0BOSS", "U0BOSS2"]),
    "rejected": (RequestStatus.REJECTED, "rejected by <@U0BOSS>", []),
    "expired": (RequestStatus.EXPIRED, "expired after 24 h with 1 of 2 approvals", ["U0BOSS"]),
}


def _status_invocation() -> Invocation:
    """`status` with one target that does not answer (a socket directory that does not exist: the
    same reason every run) and fixed status lines standing in for the areas' own, which read the
    state store."""
    lines = (StatusLine(lambda inv: ("Backups", False, "newest backup of `prod`, b004 (2026-11-23 03:00 UTC), "
                                     "failed: pg_dump: error: connection to server was lost; newest verified: b003")),
             StatusLine(lambda inv: ("Restore drills", True, "last drill d004 passed on 2026-11-24 04:00 UTC "
                                     "(backup b003, 54 s)")),
             StatusLine(lambda inv: ("Approvals", False, "1 request waiting: `r007` drop_pinned (1 of 2)"),
                        per_target=False))
    schedules = (Schedule("backup", lambda bot, now: None, lambda bot: None,
                          lambda settings, now: "backup: daily at 03:00 UTC"),
                 Schedule("drill", lambda bot, now: None, lambda bot: None,
                          lambda settings, now: "drill: weekly on Sunday at 04:00 UTC"))
    registry = Registry([overview.AREA, Area("fixed", status_lines=lines, schedules=schedules)])
    settings = Settings(targets={"prod": Target("prod", "postgresql://dbops@/asidenote?host=/nonexistent-dbops")},
                        state_url=None)
    return Invocation(command=overview.status_command, args=argparse.Namespace(target=None), settings=settings,
                      actor="U0ALICE", registry=registry, front_end="slack")


# -- the golden files ----------------------------------------------------------------------------
REPORTS = {
    "report-short": lambda: Report(title="Backup verify b005", summary="Backup b005 of `prod` is intact.",
                                   facts=[("Checked", "archive read in full, SHA-256 and seal match"),
                                          ("Took", "11 s")]),
    "report-long": _long_report,
    "backup-report": lambda: _backup_result().to_report(),
    "backup-info": lambda: backup_info(FixedCatalog(), "b005"),
    "backup-info-failed": lambda: backup_info(FixedCatalog(), "b004"),
    "drill-report-passed": lambda: _drill("b003", 24, 38.5, True).to_report(),
    "drill-report-failed": lambda: _drill("b003", 23, 41.0, False).to_report(),
    "index-review-problems": lambda: _index_review().to_report(),
    "migrate-check-findings": lambda: check_migration(
        (EXAMPLES / "drop_pinned.up.sql").read_text(), (EXAMPLES / "drop_pinned.down.sql").read_text(),
        filename="drop_pinned.up.sql", down_filename="drop_pinned.down.sql").to_report(),
    "status-problems": lambda: overview.status_command.run(_status_invocation()),
}


@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_report_messages_match_golden_file(kind):
    check(kind, report_document(REPORTS[kind]()))


def test_long_report_has_a_main_message_a_thread_and_a_file():
    """The long report is the case it stands for: cut in the main message, the rest in the thread
    and the whole of it in the attached file."""
    slack = output.slack_report(_long_report())
    assert slack.thread and slack.file is not None
    assert "public.Table40" in slack.file.content
    assert "public.Table40" not in json.dumps(slack.main)


def test_status_with_problems_names_them_first():
    report = overview.status_command.run(_status_invocation())
    problems = report.sections[0]
    assert report.outcome is Outcome.FAILED and problems.problem and {n.level for n in problems.notes} == {"warning"}
    said = "\n".join(n.text for n in problems.notes)
    assert "target `prod` (local socket/asidenote) is unreachable: no such file or directory" in said
    assert "Backups: newest backup of `prod`, b004" in said


def test_help_message_matches_golden_file():
    rows = Registry(AREAS).help_rows("slack")
    check("help", {"message": {"text": "dbops commands", "blocks": output.help_blocks(rows)}})


def test_approval_request_message_in_each_state_matches_golden_file():
    settings = ApprovalSettings(required=2)
    document = {}
    for state, (status, detail, approvers) in APPROVAL_STATES.items():
        req = _request(status, detail)
        text = (f"{req.kind} request {req.code}: {req.name} ({req.status})" if status is RequestStatus.PENDING
                else f"{req.kind} request {req.code}: {req.status}")  # posted, then redrawn (chat.update)
        document[state] = {"text": text, "blocks": request_blocks(req, settings, approvers)}
    check("approval-request", document)
    assert "0 of 2 approvals" in json.dumps(document["pending"])


class _CountingBook:
    """The one read `vote_line` makes of the approval book: how many approvals a request has."""

    def __init__(self, count: int) -> None:
        self.count = count

    def approvals_count(self, request_id: int) -> int:
        return self.count


def test_vote_lines_match_golden_file():
    """Each vote is one short line in the request's thread."""
    req = _request(RequestStatus.PENDING)
    lines = {}
    for name, change, count in [("counted", VoteChange.COUNTED, 1), ("approved", VoteChange.APPROVED, 2),
                                ("withdrawn", VoteChange.WITHDRAWN, 0), ("rejected", VoteChange.REJECTED, 0),
                                ("expired", VoteChange.EXPIRED, 1)]:
        approvals = types.SimpleNamespace(book=_CountingBook(count))
        lines[name] = {"text": Approvals.vote_line(approvals, req, "U0BOSS", change)}
    check("vote-line", lines)


_ELAPSED = re.compile(r"\(\d+s\)")


def test_progress_message_matches_golden_file(fake_slack):
    """The progress message as posted, then updated in place: a bar, a phase and the elapsed time
    (masked: it is measured)."""
    notifier = Notifier(make_client("xoxb-test", fake_slack.url), secrets=[])
    progress = ProgressMessage(notifier, "C0OPS", "Backup of prod", interval=0.0)
    progress.start("starting")
    progress.started = time.monotonic() - 42  # what the elapsed time reads does not matter: it is masked
    progress.tick(Progress("dump", 0.45, "public.Notes"))
    posted = fake_slack.calls_to("chat.postMessage")[0].params
    updated = fake_slack.calls_to("chat.update")[0].params
    check("progress", {"posted": {"text": posted["text"]},
                       "updated": {"text": _ELAPSED.sub("(<elapsed>s)", updated["text"])}})
    assert updated["ts"] == progress.ts  # the same message, updated in place
