"""A backup dumped from a Render recovery copy instead of production (`backup --from render-recovery`).

Render restores production into a new instance at "now minus [render] restore_minutes_ago"
(recovery.py); once it is available the backup is taken from it exactly as from production
(take_backup: one snapshot for pg_dump and the manifest, checked, verified), in the directory
format with pg_dump -j where the disk holds it (a long parallel dump holds nothing open on
production); then the instance is deleted, always: on success, on failure, on cancel and on
Ctrl-C (a killed process leaves it for the next start, which deletes it by its dbops-backup-
name). The manifest records the copy and the moment it was restored to; the report says what the
billed instance cost.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .. import fmt
from ..backup import BackupCatalog, BackupSettings, take_backup
from ..backup.take import BackupFailed, BackupResult
from ..drill.runner import _SigintDeferred
from ..errors import DbopsError
from ..report import Progress, ProgressFn, Report, no_progress
from ..target import Target, scrub
from .client import RenderClient, _iso
from .recovery import BACKUP_PREFIX, InstanceNotDeleted, RecoveryCopy
from .settings import RenderSettings


@dataclass
class RecoveryBackupOutcome:
    result: BackupResult
    copy: dict[str, Any]  # the recovery copy: name, id, plan, restored_to, existed_s, cost
    alarm: str | None = None  # the copy could not be deleted: a billed instance is left

    def to_report(self) -> Report:
        report = self.result.to_report()
        c = self.copy
        report.facts.insert(2, ("Recovery copy", f"{c['name']}, restored to {c['restored_to']}, deleted after "
                                                 f"{fmt.duration(c['existed_s'])}" if c["deleted"] else
                                f"{c['name']}, restored to {c['restored_to']}, NOT deleted"))
        report.facts.insert(3, ("Cost", c["cost"]))
        report.summary = (f"{report.summary} Dumped from a Render recovery copy restored to {c['restored_to']} "
                          f"(no load on production); {c['cost']}.")
        report.data["recovery_copy"] = c
        return report


def backup_from_recovery_copy(client: RenderClient, postgres_id: str, target: Target, settings: RenderSettings,
                              backup_settings: BackupSettings, catalog: BackupCatalog, requested_by: str,
                              scheduled: bool = False, progress: ProgressFn = no_progress,
                              cancel: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
                              clock: Callable[[], float] = time.monotonic,
                              now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                              ) -> RecoveryBackupOutcome:
    cancel = cancel or threading.Event()
    copy = RecoveryCopy(client, postgres_id, settings, BACKUP_PREFIX, progress, cancel, sleep, clock, now)
    restored_to = None
    try:
        restored_to = copy.restore_time()
        progress(Progress("recovery copy", None, f"asking Render for a copy of `{target.name}` restored to "
                                                 f"{_iso(restored_to)}"))
        created = copy.start(restored_to)
        copy.wait_available()
        dsn = copy.connection()
        source = {"kind": "render-recovery", "recovery_time": _iso(restored_to), "instance": created.get("name"),
                  "instance_id": created.get("id"), "plan": copy.plan, "restored_from": postgres_id}
        # No snapshot is held on production however long the dump: dump in parallel where the disk holds it.
        dump_settings = dataclasses.replace(backup_settings, parallel_from_gb=0.0)
        result = take_backup(Target(target.name, dsn), dump_settings, catalog, requested_by, scheduled, progress,
                             cancel, source=source)
    except BaseException as exc:
        deleted = _delete(copy)
        text = scrub(str(exc), copy.secrets) or type(exc).__name__
        if isinstance(deleted, InstanceNotDeleted):
            raise InstanceNotDeleted(f"{scrub(str(deleted), copy.secrets)} The backup failed too: {text}") from None
        if not isinstance(exc, DbopsError):
            raise
        tail = _copy_fate(copy, deleted)
        if isinstance(exc, BackupFailed):
            raise type(exc)(f"{text}; {tail}", exc.backup_id) from None
        raise type(exc)(f"{text}; {tail}") from None
    deleted = _delete(copy)
    copy_facts = {"name": copy.created.get("name"), "id": copy.created.get("id"), "plan": copy.plan,
                  "restored_to": _iso(restored_to), "existed_s": copy.existed_s, "cost": copy.cost(),
                  "deleted": deleted is True}
    alarm = scrub(str(deleted), copy.secrets) if isinstance(deleted, InstanceNotDeleted) else None
    return RecoveryBackupOutcome(result, copy_facts, alarm)


def _delete(copy: RecoveryCopy) -> bool | DbopsError:
    """The copy deleted, Ctrl-C held off meanwhile: True, False (there was none), or why not."""
    with _SigintDeferred() as deferred:
        try:
            done: bool | DbopsError = copy.delete()
        except DbopsError as exc:
            done = exc
    if deferred.caught:
        raise KeyboardInterrupt
    return done


def _copy_fate(copy: RecoveryCopy, deleted: bool | DbopsError) -> str:
    if copy.created is None:
        return "no recovery copy was made"
    if isinstance(deleted, DbopsError):
        return str(deleted)
    return (f"the recovery copy {copy.created.get('name')} was deleted after {fmt.duration(copy.existed_s)} "
            f"({copy.cost()})")
