"""The terminal text of the commands, exactly, at 80 and 100 columns (tests/golden/).

A change to how reports read in a terminal shows up here as a diff to review. After a deliberate
change, write the files again with:

    DBOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py tests/test_golden_slack.py -q

(tests/test_golden_slack.py does the same for every kind of Slack message, in tests/golden/slack/.)

The commands that read the state store run on a fixed catalog (five backups, four drills, written
below with fixed times and sizes); what still moves with the clock ("3 d 4 h ago") is masked by
`normalise` before comparing.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bot.core.state import migrate
from handlers import demo_data
from handlers.drill import DrillResult, DrillStore
from handlers.report import Check

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = "examples/migrations"

CASES = {
    "help": ["help"],
    "help-backup": ["help", "backup"],
    "migrate-check-drop-pinned": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql"],
    "migrate-check-drop-pinned-with-down": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql",
                                            "--down", f"{EXAMPLES}/drop_pinned.down.sql"],
    "migrate-check-add-archived-flag": ["migrate", "check", f"{EXAMPLES}/add_archived_flag.up.sql",
                                        "--down", f"{EXAMPLES}/add_archived_flag.down.sql"],
    "migrate-check-drop-pinned-line": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql", "--format", "line"],
    "backup-schedule": ["backup", "schedule"],
    "drill-schedule": ["drill", "schedule"],
}
# On the fixed catalog in the state store (`catalog_dsn`); "-empty" cases on a state store with nothing in it.
STATE_CASES = {
    "backup-list": ["backup", "list"],
    "backup-list-prod": ["backup", "list", "--target", "prod"],
    "backup-info": ["backup", "info", "b005"],
    "backup-info-failed": ["backup", "info", "b004"],
    "drill-history": ["drill", "history"],
    "drill-report-passed": ["drill", "report", "d004"],
    "drill-report-failed": ["drill", "report", "d003"],
}
EMPTY_CASES = {"backup-list-empty": ["backup", "list"], "drill-history-empty": ["drill", "history"],
               "migrate-status-empty": ["migrate", "status"], "readonly-list-empty": ["readonly", "list"]}

_SPAN = r"(?:\d+ (?:d|h|min|s)(?: \d+ (?:h|min|s))?|\d+\.\d s|less than 0\.1 s)"
_AGE = re.compile(rf"\b{_SPAN} ago\b")
_NEXT_RUN = re.compile(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d UTC|\bin {_SPAN}")


def normalise(text: str) -> str:
    """What moves with the clock: ages ("3 d 4 h ago"), and the next scheduled run on a line that
    says "next" (its time and "in 4 h"); every other timestamp is fixed and stays."""
    lines = [_NEXT_RUN.sub("<next run>", line) if "next" in line.lower() else line for line in text.split("\n")]
    return _AGE.sub("<age> ago", "\n".join(lines))


def dbops(args: list[str], columns: int, **env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env", "COLUMNS": str(columns), **env_extra}
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 1, 3), done.stderr  # 1: a failed backup or drill; 3: the example that needs approval
    return done.stdout


def check(name: str, shown: str, columns: int) -> None:
    golden = GOLDEN / f"{name}.{columns}.txt"
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(shown)
    assert shown == golden.read_text(), f"{golden.name} differs; see the docstring to regenerate it"
    assert all(len(line) <= columns for line in shown.splitlines()) or name.endswith("-line")


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("name", sorted(CASES))
def test_terminal_text_matches_golden_file(name, columns):
    check(name, normalise(dbops(CASES[name], columns)), columns)


# -- a fixed catalog ---------------------------------------------------------------------------
def _at(day: int, hour: int = 3, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


# id, day, size, duration, status, verify status, requested by, error
BACKUPS = [
    ("b001", 20, 41_200_000, 48.0, "completed", "verified", "scheduler", None),
    ("b002", 21, 41_900_000, 51.5, "completed", "verified", "scheduler", None),
    ("b003", 22, 43_100_000, 63.0, "completed", "verified", "U0ALICE", None),
    ("b004", 23, None, 12.2, "failed", "pending", "scheduler",
     "pg_dump: error: connection to server was lost"),
    ("b005", 24, 44_800_000, 71.0, "completed", "verified", "scheduler", None),
]
TABLES = [{"schema": "public", "name": "Notes", "rows": 150_000, "checksum": "5f0c9a1e"},
          {"schema": "public", "name": "Users", "rows": 2_000, "checksum": "a17b3c04"},
          {"schema": "public", "name": "AuditLogs", "rows": 48_000, "checksum": "0e9d44f2"}]


def _manifest(backup_id: str, day: int, size: int, duration: float) -> dict:
    return {"format_version": 1, "backup_id": backup_id, "target": "prod", "database": "asidenote",
            "created_at": _at(day).isoformat(), "snapshot": "00000003-0000002A-1", "server_version": "18.1",
            "server_version_num": 180001, "pg_dump_version": "pg_dump (PostgreSQL) 18.1",
            "archive": {"format": "custom", "compression": "zstd:3", "path": f"/backups/prod/{backup_id}.dump",
                        "size": size, "sha256": "9" * 64, "encrypted": True, "storage": "local"},
            "integrity_level": "checksums", "tables": TABLES, "requested_by": "scheduler", "duration_s": duration}


def _drill(backup_id: str, day: int, restore_s: float, passed: bool) -> DrillResult:
    start = _at(day, 4).timestamp()
    steps, at = [], start
    for step, seconds in [("create instance", 2.4), ("restore", restore_s), ("verify", restore_s / 3),
                          ("delete instance", 0.6)]:
        steps.append({"step": step, "started_at": at, "seconds": seconds, "outcome": "ok", "detail": ""})
        at += seconds
    checks = [{"name": "pg_restore errors", "ok": True, "detail": "pg_restore reported no errors"},
              {"name": "row counts and content checksums of 3 tables", "ok": passed,
               "detail": "200,000 rows, all equal" if passed else
               "table public.Notes: 150,000 rows expected, 149,200 restored",
               "headline": "" if passed else "data differs: 1 of 3 tables"}]
    return DrillResult(backup_id=backup_id, target="prod", instance_kind="local", started_at=start, finished_at=at,
                       instance="throwaway local PostgreSQL", steps=steps, checks=[Check.from_dict(c) for c in checks],
                       versions={"source server": "PostgreSQL 16.4", "drill server": "PostgreSQL 16.15"},
                       source_version="16.4", copy_version="16.15",
                       backup={"created_at": _at(day - 1).isoformat(), "format": "custom", "size": 44_800_000,
                               "integrity_level": "checksums", "tables": 3, "rows": 200_000},
                       procedure=["Created a throwaway local PostgreSQL.", "Restored the backup with pg_restore.",
                                  "Compared row counts and checksums with the manifest.", "Deleted the instance."],
                       recovery_point_age_s=3600.0 + day * 60)


def _new_database(pg_server, name: str) -> str:
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.dsn(name)
    migrate.apply(dsn)
    return dsn


@pytest.fixture(scope="module")
def catalog_dsn(pg_server):
    name = f"golden_{os.getpid()}"
    dsn = _new_database(pg_server, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for backup_id, day, size, duration, status, verified, who, error in BACKUPS:
            ok = status == "completed"
            conn.execute(
                """INSERT INTO dbops.backups (id, target, database, scheduled, requested_by, status, phase, error,
                       started_at, finished_at, duration_s, format, compression, encrypted, storage, location,
                       size_bytes, sha256, integrity_level, tables, total_rows, verify_status, verified_at,
                       verify_detail, manifest)
                   VALUES (%s, 'prod', 'asidenote', %s, %s, %s, %s, %s, %s, %s, %s, 'custom', 'zstd:3', true,
                           'local', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (backup_id, who == "scheduler", who, status, "done" if ok else "dump", error, _at(day),
                 _at(day, 3, 2), duration, f"/backups/prod/{backup_id}.dump" if ok else None, size,
                 "9" * 64 if ok else None, "checksums" if ok else None, 3 if ok else None,
                 200_000 if ok else None, verified, _at(day, 3, 5) if ok else None,
                 "archive read in full, SHA-256 and seal match" if ok else None,
                 Jsonb(_manifest(backup_id, day, size, duration)) if ok else None))
    store = DrillStore(dsn)
    for backup_id, day, restore_s, passed in [("b001", 21, 30.0, True), ("b002", 22, 34.0, True),
                                              ("b003", 23, 41.0, False), ("b003", 24, 38.5, True)]:
        store.record("prod", backup_id, _drill(backup_id, day, restore_s, passed), "scheduler")
    yield dsn
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture(scope="module")
def empty_dsn(pg_server):
    name = f"golden_empty_{os.getpid()}"
    yield _new_database(pg_server, name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("name", sorted(STATE_CASES))
def test_state_store_commands_match_golden_file(name, columns, catalog_dsn, tmp_path):
    shown = dbops(STATE_CASES[name], columns, DATABASE_URL=catalog_dsn, DBOPS_BACKUP_DIR=str(tmp_path))
    check(name, normalise(shown), columns)


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("name", sorted(EMPTY_CASES))
def test_empty_lists_match_golden_file(name, columns, empty_dsn, tmp_path):
    shown = dbops(EMPTY_CASES[name], columns, DATABASE_URL=empty_dsn, DBOPS_BACKUP_DIR=str(tmp_path))
    check(name, normalise(shown), columns)


def test_normalise_masks_ages_and_next_runs_only():
    assert normalise("newest verified: b005, 7 d 19 h ago.") == "newest verified: b005, <age> ago."
    assert normalise("b001, 45 s ago; 2.5 s ago; 3 h ago") == "b001, <age> ago; <age> ago; <age> ago"
    assert normalise("next: 2026-12-02 03:00 UTC (in 4 h 12 min).") == "next: <next run> (<next run>)."
    assert normalise("b001  2026-11-20 03:00 UTC  42.7 MB") == "b001  2026-11-20 03:00 UTC  42.7 MB"
    assert normalise("took 2 min 5 s") == "took 2 min 5 s"


@pytest.mark.parametrize("columns", [80, 100])
def test_index_review_of_the_demo_data_matches_golden_file(columns, demo_db, tmp_path):
    """The demo data is generated without randomness and a fresh copy has no statistics and no
    snapshot history, so the review reads the same every time."""
    shown = dbops(["indexes"], columns, DATABASE_URL=demo_db, DBOPS_BACKUP_DIR=str(tmp_path))
    database = psycopg.conninfo.conninfo_to_dict(demo_db)["dbname"]  # a new name each run
    check("indexes-demo", normalise(shown.replace(f"({database})", "(demo)")), columns)
