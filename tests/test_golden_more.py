"""The terminal text of the reports the CLI cases of tests/test_golden.py do not cover, at 80 and
100 columns (tests/golden/): a new backup, backup verify, backup prune --dry-run, status with
problems, a restore that passed and one that failed its checks, render status with and without
warnings (a fixed Render instance), a migration's rehearsal that rolls back and one that does not,
and migrate status on a fixed approval book.

They are built in-process from the fixed inputs of tests/test_golden.py and
tests/test_golden_slack.py (the fixed catalog, a fixed backup result, a status with fixed
stand-in lines) and rendered with `output.to_text`, as the CLI prints them. After a deliberate
change, write the files again with:

    DBOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_more.py -q
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from bot.areas import overview
from bot.core import output
from handlers import demo_data
from handlers.backup.catalog import BackupCatalog
from handlers.backup.retention import prune
from handlers.backup.settings import BackupSettings, RetentionSettings
from handlers.backup.verify import verify_backup
from handlers.migrations.rehearsal import Rehearsal
from handlers.render.settings import RenderSettings
from handlers.render.status import RenderStatus, check_status, status_report
from handlers.report import Check, Outcome
from handlers.restore.runner import RestoreResult
from tests.test_golden import BACKUPS, _at, _new_database, catalog_dsn, check, dbops, normalise  # noqa: F401 (catalog_dsn: a fixture)
from tests.test_golden_slack import FixedCatalog, _backup_result, _status_invocation

COLUMNS = [80, 100]


class FixedCatalogWithoutManifest(FixedCatalog):
    """The fixed catalog, with the manifest of every backup gone from it (verify fails on the
    first check, before it reads any file), and the verification it records not kept."""

    def manifest(self, backup_id: str):
        return None

    def set_verification(self, backup_id: str, status: str, detail: str, at=None) -> None:
        self.recorded = (backup_id, status, detail)


def _restore_result(failed: bool = False) -> RestoreResult:
    """A restore of b005 into `staging` as it is recorded: its steps, its checks, one missing role."""
    steps = [{"step": "choose backup", "seconds": 0.1, "outcome": "ok", "detail": "b005 (newest verified)"},
             {"step": "check target", "seconds": 0.2, "outcome": "ok", "detail": "staging is empty"},
             {"step": "fetch archive", "seconds": 3.4, "outcome": "ok", "detail": "42.7 MB, SHA-256 matches"},
             {"step": "restore", "seconds": 61.8, "outcome": "ok", "detail": "pg_restore -j 2, 3 tables"},
             {"step": "verify", "seconds": 9.5, "outcome": "failed" if failed else "ok",
              "detail": "1 of 3 checks failed" if failed else "3 checks"}]
    checks = [{"name": "row counts and content checksums", "ok": not failed,
               "detail": "public.Notes: 150,000 rows expected, 149,200 restored" if failed else "3 tables match",
               "headline": "data differs: 1 of 3 tables" if failed else ""},
              {"name": "schema", "ok": True, "detail": "tables, columns, indexes, constraints, sequences match"},
              {"name": "pg_amcheck", "verdict": "not run", "detail": "not run: --no-amcheck"}]
    manifest = {"target": "prod", "created_at": "2026-11-24T03:00:00+00:00", "archive": {"size": 44_773_376},
                "tables": [{"rows": 150_000}, {"rows": 2_000}, {"rows": 48_000}]}
    return RestoreResult(into="staging", backup_id="b005", steps=steps, checks=[Check.from_dict(c) for c in checks],
                         roles=[("asidenote_app", 'CREATE ROLE "asidenote_app"; REASSIGN OWNED BY CURRENT_USER TO '
                                                 '"asidenote_app";')], manifest=manifest)


def _rehearsal(reversible: bool) -> Rehearsal:
    """The rehearsal of add_archived_flag on a copy of b005: UP and DOWN timed with their locks, and
    either a DOWN that brings everything back or one that leaves the column's index behind."""
    exclusive = [{"mode": "AccessExclusiveLock", "relation": "public.Notes"}]
    up = [{"line": 1, "statement": "SET lock_timeout = '2s'", "seconds": 0.001, "locks": [],
           "outside_transaction": False},
          {"line": 2, "statement": 'ALTER TABLE "Notes" ADD COLUMN "IsArchived" boolean NOT NULL DEFAULT false',
           "seconds": 0.014, "locks": exclusive, "outside_transaction": False},
          {"line": 3, "statement": 'CREATE INDEX CONCURRENTLY "IX_Notes_IsArchived" ON "Notes" ("IsArchived")',
           "seconds": 1.82, "locks": [], "outside_transaction": True}]
    down = [{"line": 1, "statement": 'DROP INDEX CONCURRENTLY IF EXISTS "IX_Notes_IsArchived"', "seconds": 0.02,
             "locks": [], "outside_transaction": True},
            {"line": 2, "statement": 'ALTER TABLE "Notes" DROP COLUMN "IsArchived"', "seconds": 0.004,
             "locks": exclusive, "outside_transaction": False}]
    return Rehearsal(
        source="backup", backup_id="b005", backup_age_s=5 * 3600 + 120, up_statements=up,
        down_statements=down if reversible else down[1:], down_given=True,
        schema_diff=[] if reversible else ['index "IX_Notes_IsArchived" on public.Notes: left after DOWN'],
        checked_columns=["public.Notes.IsArchived"],
        downtime=[{"relation": "public.Notes", "mode": "ACCESS EXCLUSIVE", "seconds": 0.015,
                   "blocks": "reads and writes"}],
        restore_s=14.2, up_s=1.835, down_s=0.024, total_s=19.6)


RENDER_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _render_status(window_days: float, exports: int) -> RenderStatus:
    """`render status` of a fixed Render instance: its recovery window `window_days` long, and
    `exports` logical exports, a day apart."""
    instance = {"name": "asidenote-db", "plan": "basic_1gb", "version": "18", "region": "oregon",
                "status": "available", "diskSizeGB": 15, "diskAutoscalingEnabled": True,
                "highAvailabilityEnabled": False, "suspended": "not_suspended"}
    starts = RENDER_NOW - timedelta(days=window_days)
    recovery = {"recoveryStatus": "AVAILABLE", "startsAt": starts.isoformat().replace("+00:00", "Z")}
    export_list = [{"id": f"exp-{n}", "createdAt": (RENDER_NOW - timedelta(days=n + 1)).isoformat()}
                   for n in range(exports)]
    client = FixedRender(instance, recovery, export_list)
    return check_status(client, "dpg-asidenote", RenderSettings(workspace_plan="professional",
                                                                exports_expected=True), now=RENDER_NOW)


class FixedRender:
    """What RenderClient returns for one database, fixed."""

    def __init__(self, instance: dict, recovery: dict, exports: list[dict]) -> None:
        self.instance, self.recovery, self.exports = instance, recovery, exports

    def get_postgres(self, postgres_id: str) -> dict:
        return self.instance

    def recovery_info(self, postgres_id: str) -> dict:
        return self.recovery

    def list_exports(self, postgres_id: str) -> list[dict]:
        return self.exports


def _status_report():
    inv = _status_invocation()
    return overview.status_command.run(dataclasses.replace(inv, front_end="cli"))


IN_PROCESS = {  # name -> the report, from fixed inputs only
    "backup-report": lambda: _backup_result().to_report(),
    "backup-verify-no-archive": lambda: verify_backup(FixedCatalog(), BackupSettings(), "b004"),
    "backup-verify-no-manifest": lambda: verify_backup(FixedCatalogWithoutManifest(), BackupSettings(), "b005"),
    "status-problems": _status_report,
    "restore-passed": lambda: _restore_result().to_report(),
    "restore-failed": lambda: _restore_result(failed=True).to_report(),
    "render-status": lambda: status_report(_render_status(7, 2), "prod"),
    "render-status-warnings": lambda: status_report(_render_status(2.5, 0), "prod"),
    "migrate-rehearsal-reversible": lambda: _rehearsal(True).to_report(),
    "migrate-rehearsal-irreversible": lambda: _rehearsal(False).to_report(),
}


@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("name", sorted(IN_PROCESS))
def test_report_text_matches_golden_file(name, columns):
    check(name, normalise(output.to_text(IN_PROCESS[name](), columns)), columns)


def test_the_in_process_reports_say_what_they_stand_for():
    """The fixed inputs give the cases they are named after (not, say, an error in building them)."""
    assert IN_PROCESS["backup-report"]().outcome is Outcome.OK
    assert IN_PROCESS["backup-verify-no-archive"]().data["verify_status"] == "none"
    catalog = FixedCatalogWithoutManifest()
    report = verify_backup(catalog, BackupSettings(), "b005")
    assert report.data["verify_status"] == "failed" and "no manifest" in report.summary
    assert catalog.recorded[:2] == ("b005", "failed")
    status = _status_report()
    assert status.outcome is Outcome.FAILED and status.sections[0].problem
    assert IN_PROCESS["restore-passed"]().outcome is Outcome.OK
    assert IN_PROCESS["restore-failed"]().outcome is Outcome.FAILED
    assert IN_PROCESS["render-status"]().outcome is Outcome.OK
    assert IN_PROCESS["migrate-rehearsal-reversible"]().outcome is Outcome.OK
    irreversible = IN_PROCESS["migrate-rehearsal-irreversible"]()
    assert irreversible.outcome is Outcome.APPROVAL_REQUIRED and "cannot be rolled back" in irreversible.summary
    warned = IN_PROCESS["render-status-warnings"]()
    assert warned.outcome is Outcome.FAILED and len(warned.data["warnings"]) == 2


# -- prune, on the fixed catalog in a real state store -------------------------------------------
@pytest.fixture(scope="module")
def archived_catalog(catalog_dsn, tmp_path_factory):
    """The fixed catalog, each completed backup's archive a small real file (its SHA-256 in the
    catalog), so that prune's re-check of the backups it keeps passes as it would in production."""
    where = tmp_path_factory.mktemp("archives")
    with psycopg.connect(catalog_dsn, autocommit=True) as conn:
        for backup_id, *_, status, _verified, _who, _error in BACKUPS:
            if status != "completed":
                continue
            archive = where / f"{backup_id}.dump"
            archive.write_bytes(f"archive of {backup_id}".encode())
            conn.execute("UPDATE dbops.backups SET location = %s, sha256 = %s WHERE id = %s",
                         (str(archive), hashlib.sha256(archive.read_bytes()).hexdigest(), backup_id))
    return BackupCatalog(catalog_dsn), where


PRUNE_RETENTION = {  # name -> the retention; dry runs only: the catalog stays as it is
    "backup-prune-dry-run": RetentionSettings(daily=2, weekly=1, monthly=1),
    "backup-prune-nothing": RetentionSettings(),
}


@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("name", sorted(PRUNE_RETENTION))
def test_prune_dry_run_matches_golden_file(name, columns, archived_catalog):
    catalog, where = archived_catalog
    settings = BackupSettings(dir=where, retention=PRUNE_RETENTION[name])
    report = prune(catalog, settings, "prod", dry_run=True)
    assert not report.data["found_damaged"] and not report.data["deleted"]
    check(name, normalise(output.to_text(report, columns)), columns)


def test_prune_dry_run_would_delete_the_backups_beyond_a_short_retention(archived_catalog):
    catalog, where = archived_catalog
    report = prune(catalog, BackupSettings(dir=where, retention=PRUNE_RETENTION["backup-prune-dry-run"]), "prod",
                   dry_run=True)
    assert report.data["delete"] and "b005" in report.data["keep"]
    assert {r.id for r in catalog.list("prod") if r.deleted_at is None} == {b[0] for b in BACKUPS}


# -- migrate status, on a fixed approval book in a real state store ------------------------------
# id, name, status, status detail, requested by, created (day, hour), approvers. None of them waits
# for approval (pending, approved): those expire with the clock, and the list would change with it.
REQUESTS = [
    (3, "add_notes_index", "failed", "apply failed: lock timeout on public.Notes", "U0CAROL", (25, 10), ["U0BOSS"]),
    (4, "add_archived_flag", "expired", "expired after 24 h with 1 of 2 approvals", "U0ALICE", (26, 9), ["U0BOSS"]),
    (5, "drop_pinned", "rejected", "rejected by U0BOSS", "U0ALICE", (27, 14), []),
    (6, "add_archived_flag", "applied", "applied in 1.4 s; recorded in dbops.schema_migrations", "U0ALICE",
     (28, 9), ["U0BOSS", "U0BOSS2"]),
    (7, "drop_pinned", "applying", "applying on `prod` since 2026-11-30 10:02 UTC", "U0ALICE", (30, 9),
     ["U0BOSS", "U0BOSS2"]),
]


@pytest.fixture(scope="module")
def approvals_dsn(pg_server):
    name = f"golden_approvals_{os.getpid()}"
    dsn = _new_database(pg_server, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for request_id, req_name, status, detail, who, (day, hour), approvers in REQUESTS:
            created = _at(day, hour)
            conn.execute(
                """INSERT INTO dbops.approval_requests (id, kind, name, target, sha256, payload, requires_approval,
                       required_approvals, requested_by, status, status_detail, created_at, expires_at, decided_at)
                   VALUES (%s, 'migration', %s, 'prod', %s, '{}', true, 2, %s, %s, %s, %s,
                           %s + interval '24 hours', %s)""",
                (request_id, req_name, "7" * 64, who, status, detail, created, created, created))
            for minute, voter in enumerate(approvers):
                conn.execute("INSERT INTO dbops.approval_votes (request_id, voter, vote, at) VALUES (%s, %s, "
                             "'approve', %s)", (request_id, voter, _at(day, hour, 10 + minute)))
    yield dsn
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.mark.parametrize("columns", COLUMNS)
def test_migrate_status_with_requests_matches_golden_file(columns, approvals_dsn, tmp_path):
    # The table shows the times in the state store session's time zone, without naming it: pin it.
    shown = dbops(["migrate", "status"], columns, DATABASE_URL=approvals_dsn, DBOPS_BACKUP_DIR=str(tmp_path),
                  PGTZ="UTC")
    for request_id, *_ in REQUESTS:
        assert f"r{request_id:03d}" in shown
    check("migrate-status", normalise(shown), columns)
