"""Backups dumped from a Render recovery copy (the fake Render restores a real PostgreSQL copy of the
demo database): the copy is made, waited for, dumped in parallel, verified and deleted; deleted too
when the dump fails; a leftover is deleted at the next start; the manifest says where it came from."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from handlers.backup import BackupCatalog, BackupFailed, BackupSettings, backup_info
from handlers.render import BACKUP_PREFIX, backup_from_recovery_copy, cleanup_leftover_instances
from handlers.target import Target
from tests.test_backup import kill_the_backups_pg_dump
from tests.test_render_commands import dbops
from tests.test_render_drill import KEY, Clock, client, render, settings, state  # noqa: F401 -- fixtures


def backup_settings(tmp_path) -> BackupSettings:
    return BackupSettings(dir=tmp_path / "backups", min_free_mb=0, jobs=2)


def run(render, demo_db, state, tmp_path, **kw):
    prod = render.add_instance("asidenote-db", plan="basic_1gb")
    clock = Clock()
    outcome = backup_from_recovery_copy(client(render, clock), prod["id"], Target("prod", demo_db), settings(),
                                        backup_settings(tmp_path), BackupCatalog(state), "U1", sleep=clock.sleep,
                                        clock=clock, **kw)
    return prod, outcome


def test_a_backup_from_a_recovery_copy_dumps_the_copy_in_parallel_and_deletes_it(render, demo_db, state, tmp_path):
    now = datetime.now(timezone.utc)
    prod, outcome = run(render, demo_db, state, tmp_path, now=lambda: now)
    result = outcome.result
    assert result.verify_status == "verified", result.verify_detail
    [asked] = render.requests_to("POST", "/postgres/{postgresId}/recovery")
    restored_to = now - timedelta(minutes=15)
    assert asked.body["restoreTime"] == restored_to.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert asked.body["restoreName"].startswith(BACKUP_PREFIX)
    [copy_id] = [s.path.rsplit("/", 1)[-1] for s in render.requests_to("DELETE", "/postgres/{postgresId}")]
    assert copy_id not in render.instances and prod["id"] in render.instances and render.made == []
    source = result.manifest.source
    assert source["kind"] == "render-recovery" and source["recovery_time"] == asked.body["restoreTime"]
    assert source["instance"] == asked.body["restoreName"] and source["restored_from"] == prod["id"]
    assert result.manifest.archive.format == "directory"  # in parallel: nothing is held open on production
    [row] = BackupCatalog(state).list("prod")
    assert row.status == "completed" and row.target == "prod"
    assert BackupCatalog(state).manifest(row.id).source == source  # what a rebuilt catalog reads too
    assert dict(backup_info(BackupCatalog(state), row.id).facts)["Dumped from"].startswith("Render recovery copy at")
    report = outcome.to_report()
    facts = dict(report.facts)
    assert facts["Source"].startswith(f"Render recovery copy at {asked.body['restoreTime']}")
    assert "$" in facts["Cost"] and "basic_1gb" in facts["Cost"] and outcome.alarm is None
    assert "no load on production" in report.summary
    text = json.dumps(report.to_dict())
    assert KEY not in text and "postgresql://" not in text and "password" not in text


def test_the_copy_is_deleted_when_its_dump_fails(render, demo_db, state, tmp_path):
    killed: list[int] = []
    watcher = kill_the_backups_pg_dump(killed, within_s=120)
    with pytest.raises(BackupFailed) as info:
        run(render, demo_db, state, tmp_path)
    watcher.join()
    assert killed and "pg_dump was killed" in str(info.value)
    assert "the recovery copy dbops-backup-" in str(info.value) and "was deleted after" in str(info.value)
    assert len(render.requests_to("DELETE", "/postgres/{postgresId}")) == 1
    assert [i["name"] for i in render.instances.values()] == ["asidenote-db"] and render.made == []
    assert [r.status for r in BackupCatalog(state).list("prod")] == ["failed"]


def test_the_copy_is_deleted_when_render_never_makes_it_available(render, demo_db, state, tmp_path):
    render.available_after_polls = None
    with pytest.raises(Exception) as info:
        run(render, demo_db, state, tmp_path)
    assert "giving up" in str(info.value) and "was deleted after" in str(info.value)
    assert [i["name"] for i in render.instances.values()] == ["asidenote-db"]
    assert BackupCatalog(state).list("prod") == []  # no backup was started: nothing to mark


def test_a_leftover_recovery_copy_is_deleted_at_the_next_start(render):
    render.add_instance("asidenote-db")
    render.add_instance(f"{BACKUP_PREFIX}20250101-030000-abcdef")
    render.add_instance("dbops-drill-20250101-030000-123456")
    said, alarms = cleanup_leftover_instances(client(render, Clock()))
    assert alarms == [] and len(said) == 2 and any("recovery copy" in line for line in said)
    assert [i["name"] for i in render.instances.values()] == ["asidenote-db"]


def test_backup_from_render_recovery_is_for_approvers_unless_configured_and_can_be_the_daily_default():
    from bot.areas import AREAS
    from bot.core.config import Settings
    from bot.core.registry import Registry

    registry = Registry(AREAS)
    cmd, args = registry.parse("backup --from render-recovery", "slack", prog="/db")
    assert cmd.approver_only(args, Settings(targets={}, state_url=None))  # it bills a Render instance
    plain = registry.parse("backup", "slack", prog="/db")
    assert not plain[0].approver_only(plain[1]) and getattr(plain[1], "from") == "target"
    opened = Settings(targets={}, state_url=None, sections={"backup": {"recovery_copy_for": "anyone"}})
    assert not cmd.approver_only(args, opened)
    with pytest.raises(Exception, match="recovery_copy_for"):
        BackupSettings.from_dict({"recovery_copy_for": "everyone"})
    assert BackupSettings.from_dict({"scheduled_from": "render-recovery"}).scheduled_from == "render-recovery"


def test_dbops_backup_from_render_recovery_end_to_end(render, demo_db, state, tmp_path):
    prod = render.add_instance("asidenote-db", plan="basic_1gb")
    render.available_after_polls = 1
    (tmp_path / "dbops.toml").write_text("[render]\npoll_first_s = 0.1\npoll_max_s = 0.1\n")
    done = dbops("backup", "--from", "render-recovery", "--format", "json",
                 env={"DATABASE_URL": demo_db, "DBOPS_STATE_URL": state, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
                      "DBOPS_BACKUP_DIR": str(tmp_path / "b"), "RENDER_API_KEY": KEY, "RENDER_API_URL": render.url,
                      "RENDER_POSTGRES_ID": prod["id"]})
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["source"]["kind"] == "render-recovery" and data["recovery_copy"]["deleted"] is True
    assert KEY not in done.stdout + done.stderr
    assert [i["name"] for i in render.instances.values()] == ["asidenote-db"]


def test_the_daily_backup_dumps_a_recovery_copy_when_configured(state, tmp_path):
    from types import SimpleNamespace

    from bot.areas.backup import _scheduled_backup
    from bot.core.config import Settings

    asked: list[list[str]] = []
    for source in ("target", "render-recovery"):
        svc = SimpleNamespace(settings=Settings(targets={"prod": Target("prod", state)}, state_url=state,
                                                sections={"backup": {"scheduled_from": source}}),
                              store=SimpleNamespace(dsn=state), run_scheduled=asked.append)
        _scheduled_backup(svc)
    assert asked == [["backup", "--from", "target", "--target", "prod"],
                     ["backup", "--from", "render-recovery", "--target", "prod"]]
